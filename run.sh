#!/usr/bin/env bash
# One entry point for a fresh machine. Every command first installs what it needs (idempotent):
#   ./run.sh demo [pol demo flags]   the local PoL network on digits-cnn
#   ./run.sh test                    the whole test suite (forge + gas snapshot + mypy + pytest)
#   ./run.sh setup                   only the install step
set -euo pipefail
cd "$(dirname "$0")"

PY=.venv/bin/python

# Quiet pip, without the warnings some machines' pip configuration prints for every package.
pip_install() {
  $PY -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
}

setup() {
  local want have
  want=$(cat pyproject.toml setup.py package.json package-lock.json protos/pol/v1/*.proto contracts/src/*.sol | sha256sum | cut -c1-16)
  have=$(cat .setup-stamp 2>/dev/null || true)
  if [[ "$want" == "$have" && -x $PY && -d node_modules/@foundry-rs ]]; then return 0; fi
  echo "==> setting up (venv, npm packages, gRPC code, contracts)" >&2
  [[ -x $PY ]] || python3 -m venv .venv
  pip_install --upgrade pip
  # torch and torchvision first, pinned: pip takes them from this machine's local files when present.
  pip_install torch==2.14.1 torchvision==0.29.1
  npm ci --no-audit --no-fund --loglevel=error
  node_modules/.bin/forge build --quiet
  # compat mode puts the repo root on sys.path, so new packages need no reinstall. (A wheel built
  # from here generates pol.v1 and copies the contract artifact itself; see setup.py.)
  pip_install -e '.[dev]' --config-settings editable_mode=compat
  $PY scripts/codegen.py
  echo "$want" > .setup-stamp
}

cmd=${1:-demo}
shift || true
case "$cmd" in
  setup) setup ;;
  demo) setup; exec .venv/bin/pol demo "$@" ;;
  test)
    setup
    node_modules/.bin/forge test --isolate   # each call its own transaction: snapshot gas is per-tx gas
    node_modules/.bin/forge snapshot --isolate --snap contracts/.gas-snapshot --check
    .venv/bin/mypy   # files and strictness: [tool.mypy] in pyproject.toml
    exec $PY -m pytest "$@"
    ;;
  *) echo "usage: ./run.sh {demo|test|setup} [args]" >&2; exit 2 ;;
esac

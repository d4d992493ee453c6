#!/usr/bin/env bash
# Set up everything mclip-explorer needs on a fresh Debian/Ubuntu machine (idempotent):
# Debian packages (chromium for the browser tests), a virtual environment in .venv, torch pinned
# first (never let pip pick an unpinned multi-GB torch), then the package with its test extras.
# The widget's TypeScript is bundled by `npm` during the pip install (hatch-jupyter-builder).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${MCLIP_SETUP_DONE:-0}" = 1 ] && exit 0  # .ci/run already set up in this process tree

TORCH_PIN="torch==2.14.1 torchvision==0.29.1"

if command -v apt-get >/dev/null 2>&1 && [ "${MCLIP_SKIP_APT:-0}" != 1 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  need=""
  for pkg in chromium fonts-dejavu-core; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    echo "== apt-get install$need"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null
  fi
fi

command -v npm >/dev/null 2>&1 || { echo "setup: npm (Node.js >= 18) is required to build the widget" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "== pip install $TORCH_PIN"
  python -m pip install -q $TORCH_PIN
fi
# hnswlib ships no wheel for most Pythons and its sdist compiles with -march=native: a venv built
# on one CPU then dies with "illegal instruction" on an older one (Ray workers, a shared image).
# HNSWLIB_NO_NATIVE=1 makes the build portable; --no-binary/--no-cache-dir keep pip from reusing
# a wheel it compiled natively before. The marker makes the rebuild happen once per venv.
export HNSWLIB_NO_NATIVE=1
if [ ! -f .venv/.hnswlib-portable ]; then
  echo "== pip install hnswlib==0.8.0 (portable build, HNSWLIB_NO_NATIVE=1)"
  python -m pip install -q --force-reinstall --no-deps --no-binary hnswlib --no-cache-dir \
    "hnswlib==0.8.0"
  touch .venv/.hnswlib-portable
fi
echo "== pip install -e .[test] (builds the widget bundle with npm)"
python -m pip install -q -e ".[test]"
echo "== setup done: $(python -c 'import mclip_explorer, torch; print("mclip_explorer", mclip_explorer.__version__, "torch", torch.__version__)')"

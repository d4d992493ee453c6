#!/usr/bin/env bash
# Set up everything mclip-explorer needs on a fresh Debian/Ubuntu machine (idempotent):
# Debian packages (chromium for the browser tests), a virtual environment in .venv, torch pinned
# first (never let pip pick an unpinned multi-GB torch; the CPU build when there is no NVIDIA GPU,
# see scripts/torch-build.sh), the widget bundle (npm, in js/), then the package with its test
# extras. Every step says what it does, and pip and npm show their own progress.
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
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends $need
  fi
fi

command -v npm >/dev/null 2>&1 || { echo "setup: npm (Node.js >= 18) is required to build the widget" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
# shellcheck source=scripts/torch-build.sh
. scripts/torch-build.sh
echo "== pip install --upgrade pip"
python -m pip install --upgrade pip
if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  install_torch $TORCH_PIN
else
  echo "== torch already installed: $(python -c 'import torch; print(torch.__version__, "(CUDA build)" if torch.version.cuda else "(CPU build)")')"
fi
# Built here, where its progress shows; pip's build hook then finds the bundle up to date.
echo "== widget bundle: npm install and build in js/"
npm --prefix js install --no-audit --no-fund
npm --prefix js run build
echo "== pip install -e .[test] (hnswlib compiles from source: about 35 s)"
python -m pip install -e ".[test]"
echo "== setup done: $(python -c 'import mclip_explorer, torch; print("mclip_explorer", mclip_explorer.__version__, "torch", torch.__version__)')"

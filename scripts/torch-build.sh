#!/usr/bin/env bash
# Which torch build fits this machine, and where to get it (sourced by setup.sh; tested by
# tests/test_scripts.py). Functions only: sourcing it runs nothing.
#
#   MCLIP_TORCH=cpu|cuda          force a build instead of detecting an NVIDIA GPU
#   MCLIP_TORCH_CPU_INDEX=URL     where the CPU build comes from (default PyTorch's own index;
#                                 PyPI only has the CUDA build of torch for Linux)
# Under CI (CI set, no MCLIP_TORCH_CPU_INDEX) the CPU index is not probed at all: CI machines
# reach only the package registries, so they take PyPI's build without a network probe.

MCLIP_NVIDIA_PROC="${MCLIP_NVIDIA_PROC:-/proc/driver/nvidia/version}"
TORCH_CPU_INDEX="${MCLIP_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

# Prints "cuda" when an NVIDIA GPU (driver) is present, else "cpu".
torch_build() {
  case "${MCLIP_TORCH:-}" in
    cpu|cuda) echo "$MCLIP_TORCH"; return ;;
    "") ;;
    *) echo "setup: MCLIP_TORCH must be cpu or cuda, got '$MCLIP_TORCH'" >&2; return 2 ;;
  esac
  if [ -e "$MCLIP_NVIDIA_PROC" ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
    echo cuda
  else
    echo cpu
  fi
}

# Succeeds when URL answers within 10 s (pip itself would retry for minutes).
index_reachable() {
  python - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10)
PY
}

# Installs the torch pin ($@) for this machine and says which build it picked, and why.
install_torch() {
  local build
  build="$(torch_build)" || return 2
  if [ "$build" = cuda ]; then
    echo "== NVIDIA GPU found: installing the CUDA build of torch ($*, about 5.5 GB with its CUDA libraries)"
    python -m pip install "$@"
  elif [ -n "${CI:-}" ] && [ -z "${MCLIP_TORCH_CPU_INDEX:-}" ]; then
    echo "== no NVIDIA GPU found (CI): installing PyPI's torch ($*), the CUDA build, which runs on the CPU too"
    python -m pip install "$@"
  elif index_reachable "$TORCH_CPU_INDEX"; then
    echo "== no NVIDIA GPU found: installing the CPU build of torch ($* from $TORCH_CPU_INDEX, about 1 GB)"
    python -m pip install --index-url "$TORCH_CPU_INDEX" "$@"
  else
    echo "== no NVIDIA GPU found, but $TORCH_CPU_INDEX (the only source of torch's CPU build) cannot be reached:"
    echo "   installing PyPI's torch instead: the CUDA build ($*, about 5.5 GB), which runs on the CPU too"
    python -m pip install "$@"
  fi
}

#!/usr/bin/env bash
# A side virtualenv with embedding-atlas 0.26.0's command line, for
# tests/test_interop_atlas_cli.py. The package pulls torch (CUDA, several GB) and
# sentence-transformers for its own embedding step, which an export with precomputed
# coordinates and neighbours never runs; this installs what the CLI imports instead, with the
# CPU torch its PageRank needs. Usage: scripts/embedding_atlas_venv.sh [DIR]
set -euo pipefail
dir="${1:-/tmp/embedding-atlas-venv}"
python3 -m venv "$dir"
"$dir/bin/pip" install -q --no-deps embedding-atlas==0.26.0
"$dir/bin/pip" install -q click inquirer "pandas>=3" "pyarrow>=24" uvicorn uvloop fastapi duckdb \
  narwhals platformdirs tqdm websockets cryptography umap-learn==0.5.12 torch==2.13.0
echo "export MCLIP_EMBEDDING_ATLAS=$dir/bin/embedding-atlas"

#!/usr/bin/env bash
# A side virtualenv with clip-retrieval 2.45.0 for tests/test_interop_clip_retrieval.py.
# clip-retrieval pins numpy<2 / pyarrow<16 / pandas<3, so it cannot share the project's venv;
# only its writer, index builder (autofaiss) and metadata reader are needed, hence --no-deps.
# Usage: scripts/clip_retrieval_venv.sh [DIR]; then export MCLIP_CLIP_RETRIEVAL_PYTHON=DIR/bin/python
set -euo pipefail
dir="${1:-/tmp/clip-retrieval-venv}"
python3 -m venv "$dir"
"$dir/bin/pip" install -q --no-deps clip-retrieval==2.45.0
"$dir/bin/pip" install -q autofaiss==2.18.0 fire "numpy<2" "pyarrow<16" "pandas<2.3"
echo "export MCLIP_CLIP_RETRIEVAL_PYTHON=$dir/bin/python"

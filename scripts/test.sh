#!/usr/bin/env bash
# Run the whole test suite (sets the machine up first if needed). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "== ruff"
ruff check mclip_explorer tests bench
echo "== TypeScript: strict typecheck and unit tests"
npm --prefix js run --silent typecheck
npm --prefix js test --silent
echo "== pytest"
python -m pytest "$@"

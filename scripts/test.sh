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
echo "== mypy (strict, [tool.mypy] in pyproject.toml)"
mypy mclip_explorer
echo "== TypeScript: strict typecheck and unit tests"
npm --prefix js run --silent typecheck
npm --prefix js test --silent
echo "== pytest (random order: pytest-randomly prints the seed; rerun with -p randomly --randomly-seed=N)"
python -m pytest "$@"

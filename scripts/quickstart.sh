#!/usr/bin/env bash
# The main job: set up, build the bundled sample collection (308 public-domain clip-art images),
# and open the explorer in JupyterLab (notebooks/01-quickstart.ipynb).
#
#   MCLIP_EXPLORER_MODEL=NAME   model to use (default clip-ViT-B-32-multilingual-v1; see
#                               `mclip-explorer models`). Its weights come from the Hugging Face
#                               Hub or $MCLIP_EXPLORER_WEIGHTS. Only if the default model's
#                               weights are missing and cannot be downloaded (offline) is the
#                               built-in "toy" model used instead, and a banner says so; any other
#                               failure (a damaged file, a broken install) stops with its error.
#   QUICKSTART_NO_LAB=1         build and run a few searches, but do not start JupyterLab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

model="${MCLIP_EXPLORER_MODEL:-clip-ViT-B-32-multilingual-v1}"
echo "== building the sample collection with $model (encoding 308 images, then the map)"
status=0
mclip-explorer build --sample --map umap --model "$model" --out "notebooks/collections/sample-$model" || status=$?
if [ "$status" != 0 ]; then
  # 3: the weights are missing and cannot be downloaded. Anything else is a real error (its
  # message above names the file and the cause), and so is a model the user chose.
  if [ "$status" != 3 ] || [ -n "${MCLIP_EXPLORER_MODEL:-}" ]; then
    exit "$status"
  fi
  cat >&2 <<MSG

  ============================================================================================
  The weights of $model could not be loaded (no network access to the Hugging Face Hub,
  and nothing under \$MCLIP_EXPLORER_WEIGHTS). Continuing with the built-in "toy" model, which
  only knows colours (colour words in 14 languages, colour histograms of images): the explorer
  works, but its results are about colour alone. To use the real model, run this script once
  with network access, or see README "Where the weights come from".
  ============================================================================================

MSG
  model="toy"
  echo "== building the sample collection with the toy model"
  mclip-explorer build --sample --map umap --model "$model" --out "notebooks/collections/sample-$model"
fi
out="notebooks/collections/sample-$model"

echo "== a few searches in $out:"
for query in "a red apple" "красный" "赤" "ein blaues Auto"; do
  echo "-- $query"
  mclip-explorer search "$out" "$query" -k 3
done

if [ "${QUICKSTART_NO_LAB:-0}" = 1 ]; then
  exit 0
fi
# The notebook picks the same model by itself (mclip_explorer.models.pick_model); the variables
# only make it reuse the collection built above.
export MCLIP_EXPLORER_MODEL="$model" MCLIP_EXPLORER_OUT="collections"
allow_root=""
[ "$(id -u)" = 0 ] && allow_root="--allow-root"
echo "== starting JupyterLab on notebooks/01-quickstart.ipynb (Ctrl-C to stop)"
exec jupyter lab $allow_root notebooks/01-quickstart.ipynb

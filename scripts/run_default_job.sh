#!/usr/bin/env bash
# The main job on the embedded default data, on a 2-core CPU in about 14 minutes at 500 training positions/s:
# records -> shards -> train -> SavedModel -> a move sampled from the start position -> held-out accuracy.
#
#   bash scripts/run_default_job.sh [OUT_DIR]                  (default runs/default)
#   RECIPE=long bash scripts/run_default_job.sh runs/long      the long CPU recipe: 6,000 steps with --mirror,
#                                                              about 50 minutes at 500 positions/s
#
# Rerunning reuses the shards and resumes training from the last checkpoint in OUT_DIR/model.
# Every step is a console command of the package; the training settings are the named recipe
# (shogi_policy/training/recipes/$RECIPE.flags, docs/config.md), the best of the measured experiments
# (scripts/experiments/experiment.py).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/default}
# The main job in bfloat16 where the CPU computes it natively (AMX or AVX512_BF16: more steps in the same time),
# else in float32 (shogi_policy/runtime/precision.py, docs/results.md).
RECIPE=${RECIPE:-$(if [ "$(python -m shogi_policy.runtime.precision)" = bfloat16 ]; then echo main_bfloat16; else echo main; fi)}
FLOODGATE_TSV=${FLOODGATE_TSV:-../shared/data/floodgate_positions/train_val_2000.tsv}
INPUTS=data/floodgate_games.usi.gz,data/engine_games.usi.gz
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
if [ ! -f "shogi_policy/training/recipes/$RECIPE.flags" ]; then
  echo "RECIPE must name a file of shogi_policy/training/recipes (main, main_bfloat16, long, tpu), not '$RECIPE'" >&2
  exit 2
fi

if [ ! -f "$OUT/shards/manifest.json" ]; then
  shogi-policy-convert --inputs="$INPUTS" --output_dir="$OUT/shards" --seed=1
fi

# With the floodgate val rows beside the checkout, measure them after every epoch too (history.jsonl, for
# scripts/experiments/plot_learning_curve.py); they never train.
EVAL_TSV=()
if [ -f "$FLOODGATE_TSV" ]; then EVAL_TSV=(--eval_tsv="$FLOODGATE_TSV"); fi

shogi-policy-train --recipe="$RECIPE" --data_dir="$OUT/shards" --model_dir="$OUT/model" \
  ${EVAL_TSV[@]+"${EVAL_TSV[@]}"}

shogi-policy-export --model_dir="$OUT/model" --export_dir="$OUT/export" --overwrite

echo "== a move sampled from the start position at temperature 1.0"
shogi-policy-sample --model="$OUT/export" --position=startpos --temperature=1.0 --seed=1 --top_k=5

echo "== held-out accuracy (test split: games never trained on)"
shogi-policy-evaluate --model="$OUT/export" --data_dir="$OUT/shards" --split=test \
  --json_out="$OUT/test_accuracy.json"

if [ -f "$FLOODGATE_TSV" ]; then
  echo "== move-match accuracy on real floodgate positions (val rows)"
  shogi-policy-evaluate --model="$OUT/export" --tsv="$FLOODGATE_TSV" --split=val \
    --json_out="$OUT/floodgate_val_accuracy.json"
fi

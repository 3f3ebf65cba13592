#!/usr/bin/env bash
# The main job on the embedded default data, on a 2-core CPU in about 14 minutes at 500 training positions/s:
# records -> shards -> train -> SavedModel -> a move sampled from the start position -> held-out accuracy.
#
#   bash scripts/run_default_job.sh [OUT_DIR]                  (default runs/default)
#   RECIPE=long bash scripts/run_default_job.sh runs/long      the long CPU recipe: 6,000 steps with --mirror,
#                                                              about 50 minutes at 500 positions/s
#
# Rerunning reuses the shards and resumes training from the last checkpoint in OUT_DIR/model.
# Every step is a console command of the package; the flags here are the ones to change for real data.
# The recipe is the best of the measured experiments in the README's "Results" (scripts/experiments/experiment.py).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/default}
FLOODGATE_TSV=../shared/data/floodgate_positions/train_val_2000.tsv
INPUTS=data/floodgate_games.usi.gz,data/engine_games.usi.gz
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# The long recipe sees each position about 12 times: the exact mirror (--mirror) doubles the positions it learns from.
case ${RECIPE:-main} in
  main) RECIPE_FLAGS=(--steps=1300 --steps_per_epoch=100 --checkpoint_every=200) ;;
  long) RECIPE_FLAGS=(--steps=6000 --steps_per_epoch=250 --checkpoint_every=500 --mirror) ;;
  *) echo "RECIPE must be main or long, not '$RECIPE'" >&2; exit 2 ;;
esac

if [ ! -f "$OUT/shards/manifest.json" ]; then
  shogi-policy-convert --inputs="$INPUTS" --output_dir="$OUT/shards" --seed=1
fi

# With the floodgate val rows beside the checkout, measure them after every epoch too (history.jsonl, for
# scripts/experiments/plot_learning_curve.py); they never train.
EVAL_TSV=()
if [ -f "$FLOODGATE_TSV" ]; then EVAL_TSV=(--eval_tsv="$FLOODGATE_TSV"); fi

# The 'cpu' preset (3 blocks x 64 filters); AdamW with warm-up and cosine decay learns fastest in a short run.
shogi-policy-train --data_dir="$OUT/shards" --model_dir="$OUT/model" --preset=cpu \
  --batch_size=256 --eval_steps=10 --optimizer=adamw --learning_rate=0.002 --warmup_steps=20 --seed=1 \
  "${RECIPE_FLAGS[@]}" ${EVAL_TSV[@]+"${EVAL_TSV[@]}"}

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

#!/usr/bin/env bash
# The main job until a trained demo exists: statistics of real benchmark annotation folders and an
# evaluation of real reference predictions with the one evaluator. DATA defaults to ../shared/data.
set -euo pipefail
BIN=${1:-.venv/bin}
DATA=${DATA:-../shared/data}
hg="$BIN/higround"

echo "== ActivityNet-Captions val_2 =="
"$hg" data stats activitynet_captions --root "$DATA/activitynet_captions" --split val_2
echo "== TACoS test (2D-TAN json) =="
"$hg" data stats tacos --root "$DATA/tacos" --split test
echo "== Charades-STA test =="
"$hg" data stats charades_sta --root "$DATA/charades_sta" --split test
echo "== Moment-DETR's sample predictions on QVHighlights val, scored by higround =="
"$hg" evaluate --predictions "$DATA/eval_reference/moment_detr/sample_val_preds.jsonl" \
  --annotations "$DATA/qvhighlights/highlight_val_release.jsonl"

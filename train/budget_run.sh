#!/usr/bin/env bash
# Train a model for a set number of minutes on one device, export it and judge it, and leave what
# is worth keeping in one folder: the exported weights, their golden tensors, the loss log, the last
# preview grid and the judge's figures. For a machine lent for a short while (a GPU), where nothing
# but that folder outlives the run; the checkpoint stays behind.
#
#   train/budget_run.sh NAME MINUTES DEVICE OUT [train.train options ...]
#   train/budget_run.sh emoji 7 cuda "$OUT" --base 48 --attn-res 16 8 --lr-schedule cosine
#
# Needs train/data/NAME.npz (python -m train.data NAME). PYTHON picks the interpreter (python3).
# The files in OUT: NAME.safetensors and NAME-golden.safetensors (copy them to models/ and
# tests/golden/NAME.safetensors), NAME-loss.csv, NAME-preview.png, NAME-evaluate.log and
# NAME-quality.json (its last line: the figures).
set -euo pipefail
[[ $# -ge 4 ]] || { sed -n 2,13p "$0" >&2; exit 2; }
name=$1 minutes=$2 device=$3 out=$(realpath -m "$4")
shift 4
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."
run=$(mktemp -d)
mkdir -p "$out"
PYTHONUNBUFFERED=1 "$py" -m train.train "$name" --device "$device" --minutes "$minutes" --run-dir "$run" "$@"
"$py" -m train.export "$name" --run-dir "$run" --out "$out"
cp "$run/loss.csv" "$out/$name-loss.csv"
previews=("$run"/preview_*.png)  # in step order; none for toy2d
if [[ -e "${previews[-1]}" ]]; then cp "${previews[-1]}" "$out/$name-preview.png"; fi
# The judge's figures for the run: class accuracy and Frechet distance at guidance 1, 900 samples
# with DDPM's variance (the protocol of the README's quality table).
if [[ "$name" != toy2d ]]; then
    PYTHONUNBUFFERED=1 "$py" -m train.evaluate "$name" --device "$device" --run-dir "$run" --eta 1 --guidance 1 \
        | tee "$out/$name-evaluate.log"
    tail -n 1 "$out/$name-evaluate.log" > "$out/$name-quality.json"
fi
echo "$out: $(ls "$out" | tr '\n' ' ')"

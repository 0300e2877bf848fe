#!/usr/bin/env bash
# The README's main command: synthetic videos -> tiny CrossVideoMAE pretraining (CPU) -> readout table
# (pretrained vs random init: kNN retrieval and linear probe) -> pictures. Everything lands in runs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh .venv
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
run=runs/demo
crossvideomae synth --config tiny --output-dir data/synth
rm -rf "$run"  # each demo starts afresh: a run folder with checkpoints refuses a new run without --resume
crossvideomae pretrain --config tiny --output-dir "$run" "$@"
crossvideomae readout --config tiny --output-dir "$run/readout" eval.checkpoint="$run/checkpoint-last.pth"
crossvideomae visualize --config tiny --output-dir "$run/pictures" --checkpoint "$run/checkpoint-last.pth" \
  --video "$(head -n 1 data/synth/val.txt | cut -d' ' -f1 | sed 's|^|data/synth/|')"
crossvideomae report "$run"
echo "done: results in $run (report: $run/report.md)"

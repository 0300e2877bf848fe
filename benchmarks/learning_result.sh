#!/usr/bin/env bash
# The learning result of docs/RESULTS.md: synthetic videos -> ViT-S CrossVideoMAE pretraining on one GPU ->
# readout (pretrained vs random init: kNN retrieval and linear probe, motion label and object kind).
#
# One device call may run 10 minutes, so >= 10 minutes of pretraining takes two calls on the same (warm)
# machine, joined by --resume:
#   bash benchmarks/learning_result.sh start    # synth, calibrate, pretrain FIRST_S s, SIGTERM -> checkpoint,
#                                               # readout of that intermediate checkpoint
#   bash benchmarks/learning_result.sh finish   # --resume to the planned end, readout of the final encoder
# The epoch count is chosen once, in `start`, from a short calibration run (seconds per epoch, start-up
# excluded), so that the cosine schedule ends after about BUDGET_S seconds of pretraining in total.
# Everything is written under runs/learning* (git-ignored, so a warm machine keeps it between calls); logs and
# results are bundled into $OUT.
# Environment: OUT (default runs/learning_out), BUDGET_S (690), FIRST_S (420), CALIB_EPOCHS (5),
#   EXTRA (more key=value overrides, e.g. smaller sizes for a CPU dry run).
set -euo pipefail
OUT=${OUT:-runs/learning_out}
BUDGET_S=${BUDGET_S:-690}
FIRST_S=${FIRST_S:-420}
CALIB_EPOCHS=${CALIB_EPOCHS:-5}
EXTRA=${EXTRA:-}
DATA=runs/learning_data
RUN=runs/learning
CVM="python3 -m crossvideomae"
mkdir -p "$OUT"
# shellcheck disable=SC2206
common=(data.train_list=$DATA/train.txt data.val_list=$DATA/val.txt train.ckpt_every=5 train.keep_checkpoints=1 $EXTRA)
# shellcheck disable=SC2206
probe=(eval.epochs=100 eval.warmup_epochs=10 eval.batch_size=128 $EXTRA)

quiet() { tr '\r' '\n' | grep -v -E 'it/s|s/it|^ *$' || true; }  # drop progress-bar updates from the terminal
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done; }

bundle() {  # at most a few files come back from $OUT: logs in one archive
  tar -czf "$OUT/$1.tar.gz" --ignore-failed-read "$RUN/results.json" "$RUN/results_start.json" "$RUN/config.yaml" "$RUN/metrics.jsonl" \
    "$RUN/pictures/losses.png" "$RUN/epochs.txt" "$RUN/calib.log" "$RUN/$1.log" "$OUT/readout_$1" 2>/dev/null || true
}

case "${1:-}" in
start)
  (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU") | tee "$OUT/card.txt"
  rm -rf "$RUN" "$RUN-calib"
  mkdir -p "$RUN"
  t0=$(date +%s)
  $CVM synth --config vits_synth --output-dir $DATA $EXTRA
  echo "synth: $(( $(date +%s) - t0 )) s"
  # calibration: seconds per epoch between the first and the last epoch line (start-up excluded)
  $CVM pretrain --config vits_synth --output-dir "$RUN-calib" "${common[@]}" train.epochs="$CALIB_EPOCHS" \
    train.ckpt_every=1000 2>"$RUN/calib.err" | stamp | tee "$RUN/calib.log" || { tail -n 30 "$RUN/calib.err"; exit 1; }
  epochs=$(python3 - "$RUN/calib.log" "$BUDGET_S" <<'EOF'
import sys
times = [float(line.split()[0]) for line in open(sys.argv[1]) if line.split()[1:2] == ["epoch"]]
per_epoch = (times[-1] - times[0]) / (len(times) - 1)
print(max(4, int(float(sys.argv[2]) / per_epoch)))
print(f"calibration: {per_epoch:.2f} s per epoch", file=sys.stderr)
EOF
)
  echo "$epochs" > "$RUN/epochs.txt"
  rm -rf "$RUN-calib"
  warmup=$(( epochs / 20 > 1 ? epochs / 20 : 1 ))
  echo "planned: $epochs epochs (warm-up $warmup) for ~$BUDGET_S s; this call stops after $FIRST_S s"
  t1=$(date +%s)
  # SIGTERM to the main process only (--foreground): the loop finishes its step and writes checkpoint-last.pth
  timeout --foreground -k 120 -s TERM "$FIRST_S" $CVM pretrain --config vits_synth --output-dir "$RUN" \
    "${common[@]}" train.epochs="$epochs" optim.warmup_epochs="$warmup" 2>&1 | tee "$RUN/start.log" | quiet \
    || [ "${PIPESTATUS[0]}" -eq 124 ]  # 124 = stopped by the timeout, as planned
  echo "pretraining (first part): $(( $(date +%s) - t1 )) s wall"
  cp "$RUN/results.json" "$RUN/results_start.json"  # the finishing run rewrites results.json
  $CVM readout --config vits_synth --output-dir "$OUT/readout_start" "${common[@]}" "${probe[@]}" \
    eval.checkpoint=$RUN/checkpoint-last.pth
  bundle start
  ;;
finish)
  if [ ! -f "$RUN/checkpoint-last.pth" ]; then
    echo "no $RUN/checkpoint-last.pth: the machine is not the one 'start' ran on" | tee "$OUT/cold.txt"
    exit 3
  fi
  epochs=$(cat "$RUN/epochs.txt")
  warmup=$(( epochs / 20 > 1 ? epochs / 20 : 1 ))
  t1=$(date +%s)
  $CVM pretrain --config vits_synth --output-dir "$RUN" --resume "${common[@]}" train.epochs="$epochs" \
    optim.warmup_epochs="$warmup" 2>&1 | tee "$RUN/finish.log" | quiet
  echo "pretraining (second part): $(( $(date +%s) - t1 )) s wall"
  $CVM readout --config vits_synth --output-dir "$OUT/readout_finish" "${common[@]}" "${probe[@]}" \
    eval.checkpoint=$RUN/video_encoder.safetensors
  bundle finish
  ;;
*)
  echo "usage: $0 start|finish" >&2
  exit 2
  ;;
esac

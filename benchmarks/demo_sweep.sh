#!/usr/bin/env bash
# Which settings make the tiny CPU demo learn? Runs the `tiny` preset's pretrain + readout for several
# variants on one GPU (fp32, as on the CPU) and prints each readout table. Usage: OUT=dir bash benchmarks/demo_sweep.sh
set -uo pipefail
OUT=${OUT:-runs/sweep}; mkdir -p "$OUT"; W=runs/sweep_work; mkdir -p $W
crossvideomae synth --config tiny -o $W/unique > /dev/null
crossvideomae synth --config tiny -o $W/pool8 synth.backgrounds=8 > /dev/null
variant() {  # name data extra-overrides...
  local name=$1 data=$2; shift 2
  local common="train.device=cuda train.precision=fp32 data.num_workers=3 data.train_list=$W/$data/train.txt data.val_list=$W/$data/val.txt"
  local t0=$(date +%s)
  crossvideomae pretrain --config tiny -o $W/$name $common "$@" > $W/$name.log 2>&1
  crossvideomae readout --config tiny -o $W/$name/readout $common eval.checkpoint=$W/$name/checkpoint-last.pth > $W/$name.readout 2>&1
  { echo "== $name ($data) $* : $(( $(date +%s) - t0 )) s"; grep -A6 "^label" $W/$name.readout; tail -n 2 $W/$name.log | cut -c 1-300; } > "$OUT/$name.txt"
}
variant base unique &
variant lr unique optim.lr=1e-3 &
variant pool pool8 optim.lr=1e-3 &
wait
variant pool_e30 pool8 optim.lr=1e-3 train.epochs=30 &
variant pool_mae pool8 optim.lr=1e-3 loss.intra=false loss.cross=false &
variant pool_con pool8 optim.lr=1e-3 loss.rl=false loss.mse=false &
wait
variant unique_mae unique optim.lr=1e-3 loss.intra=false loss.cross=false &
variant pool_e30_mae pool8 optim.lr=1e-3 train.epochs=30 loss.intra=false loss.cross=false &
variant pool_lr3 pool8 optim.lr=3e-3 &
wait
cat "$OUT"/*.txt

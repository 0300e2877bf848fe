#!/bin/bash
# One call on a 2-GPU machine (docs/PERFORMANCE.md ("Several GPUs")): the one-GPU baseline and 2-GPU DDP with
# benchmarks/multigpu_bench.py (per-GPU throughput at 32 clips per GPU, first-step loss of one fixed global
# batch of 64); torchrun end to end on generated videos (tiny pretraining with DDP, resumed with FSDP on a
# larger batch, extraction); last the 2-GPU FSDP bench.
#   usage (after `source benchmarks/device_env.sh`):  bash benchmarks/multigpu_device.sh OUT_DIR
# NCCL's NVLink multicast (NCCL_NVLS_ENABLE) is left as the machine sets it.
OUT=$1
mkdir -p "$OUT"
LOG=$OUT/log.txt
{
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  env | grep -E '^(NCCL_NVLS_ENABLE|TORCH_SYMM_MEM_DISABLE_MULTICAST|NVSHMEM_DISABLE_NVLS)='
  python3 -c 'import torch; print("torch", torch.__version__, "nccl", torch.cuda.nccl.version())'
} >>"$LOG" 2>&1
run() { echo "== $*" >>"$LOG"; "$@" >>"$LOG" 2>&1; echo "== exit $?" >>"$LOG"; }
TR="python3 -m torch.distributed.run --standalone --nproc_per_node 2"  # torchrun
export GLOBAL_BATCH=64

run env CUDA_VISIBLE_DEVICES=0 timeout 80 python3 benchmarks/multigpu_bench.py "$OUT/one"
run timeout 90 $TR benchmarks/multigpu_bench.py "$OUT/ddp"

S=/tmp/mg_synth E=/tmp/mg_e2e
DATA="data.train_list=$S/train.txt data.val_list=$S/val.txt train.device=cuda train.precision=bf16 data.num_workers=3"
run timeout 40 python3 -m crossvideomae synth -o $S --workers 12 synth.num_train=64 synth.num_val=10
run timeout 55 $TR -m crossvideomae pretrain -c tiny -o $E $DATA train.epochs=2 data.batch_size=8
cp $E/results.json "$OUT/e2e_pretrain_ddp.json" 2>/dev/null
run timeout 55 $TR -m crossvideomae pretrain -c tiny -o $E --resume $DATA train.epochs=3 data.batch_size=16 dist.fsdp=true
run timeout 45 $TR -m crossvideomae extract -c tiny -o $E/x $DATA eval.checkpoint=$E/video_encoder.safetensors
cp $E/results.json "$OUT/e2e_pretrain_fsdp_resumed.json" 2>/dev/null
cp $E/metrics.jsonl "$OUT/e2e_metrics.jsonl" 2>/dev/null
cp $E/x/results.json "$OUT/e2e_extract.json" 2>/dev/null
run timeout 90 $TR benchmarks/multigpu_bench.py "$OUT/fsdp" dist.fsdp=true
grep -h -E 'x[12] fsdp|first-step|resumed from|epoch [0-9]+:|extract:|Error|error' "$LOG" | cut -c1-400

#!/usr/bin/env bash
# Stage ablations of docs/PERFORMANCE.md ("Loader throughput") on the lent GPU machine (16 cores), results under $OUT:
#   run(command="source benchmarks/device_env.sh && bash benchmarks/loader_device2.sh", carry=[".whl"])
set -o pipefail
nvidia-smi --query-gpu=name --format=csv,noheader; nproc; lscpu | grep -E "^(Model name|Thread|Core|Socket)"
B="python3 benchmarks/loader_bench.py --seconds 10 --videos 64 --videos-dir /tmp/v250"
$B --out "$OUT/full" --workers 16 --repeat 1 --profile-items 12 data.batch_size=4 2>&1 | tee "$OUT/full.log" | tail -3
$B --out "$OUT/uint8" --variant uint8 --workers 16 --repeat 1 2 --profile-items 12 data.batch_size=4 2>&1 | tee "$OUT/uint8.log" | tail -12
$B --out "$OUT/decode" --variant decode --workers 8 16 --repeat 1 --profile-items 12 data.batch_size=4 2>&1 | tee "$OUT/decode.log" | tail -12

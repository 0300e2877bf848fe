#!/usr/bin/env bash
# The loader measurements of docs/PERFORMANCE.md ("Loader throughput") on the lent GPU machine (16 cores), results under $OUT:
#   run(command="source benchmarks/device_env.sh && bash benchmarks/loader_device.sh", carry=[".whl"])
set -o pipefail
nvidia-smi --query-gpu=name --format=csv,noheader; nproc
python3 -c "import torch, torchvision, av; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'av', av.__version__)"
# smoke: the data path under this PyAV before spending time on files
python3 - <<'PY' || exit 1
from crossvideomae.config import SynthConfig, load_config
from crossvideomae.data import build_pretrain_dataset
from crossvideomae.data.synth import write_synthetic_dataset
write_synthetic_dataset("/tmp/smoke", SynthConfig(num_train=12, num_val=12), workers=2)
ds = build_pretrain_dataset(load_config("tiny", ["data.train_list=/tmp/smoke/train.txt", "aug.temporal_downsample=1"]))
ds.set_epoch(0)
print("smoke", {k: tuple(v.shape) for k, v in ds[3].items() if hasattr(v, "shape")})
PY
B="python3 benchmarks/loader_bench.py --seconds 10 --videos 64"
# x264 defaults (key frame every 250 frames): workers x repeated sampling
$B --out "$OUT/gop250" --videos-dir /tmp/v250 --workers 8 16 --repeat 1 2 4 --profile-items 12 data.batch_size=4 \
  2>&1 | tee "$OUT/gop250.log" | tail -12
# the pre-resized recipe's key-frame interval (32)
$B --out "$OUT/gop32" --videos-dir /tmp/v32 --gop 32 --workers 16 --repeat 1 --profile-items 12 data.batch_size=4 \
  2>&1 | tee "$OUT/gop32.log" | tail -12

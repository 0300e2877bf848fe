#!/usr/bin/env bash
# `crossvideomae pretrain` of ViT-B at 16x224x224, batch 8, 20 steps, bf16, on one GPU, fed by the real loader
# from generated H.264 files (320x320, 64 frames, so the vitb_k400 preset's 16 frames at stride 4 fit). Prints the
# card, whether every logged loss is finite, s/step after the first step (checkpoint writes included), the median
# step interval (without them) and peak memory (results.json).
#   usage:  OUT=runs/vitb_smoke [EXTRA="key=value ..."] bash benchmarks/vitb_smoke.sh
# A CPU dry run of the script itself: VIDEOS=8 SIZE=64 EXTRA="train.device=cpu train.precision=fp32 model.size=tiny
#   model.depth=2 model.img_size=32 model.num_frames=4 model.embed_dim=48 model.decoder_depth=1 model.decoder_heads=3
#   data.short_side=32" bash benchmarks/vitb_smoke.sh
set -euo pipefail
OUT=${OUT:-runs/vitb_smoke}; mkdir -p "$OUT"
VIDEOS=${VIDEOS:-160}; SIZE=${SIZE:-320}; EXTRA=${EXTRA:-}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi"; } | tee "$OUT/card.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/card.txt"
python3 -c "from crossvideomae.config import SynthConfig; from crossvideomae.data.synth import write_synthetic_dataset as w; \
w('/tmp/smoke$SIZE', SynthConfig(num_train=$VIDEOS, num_val=1, num_frames=64, size=$SIZE), workers=$(( $(nproc) - 1 )))"
rm -rf "$OUT/run"
python3 -m crossvideomae pretrain --config vitb_k400 --output-dir "$OUT/run" data.train_list=/tmp/smoke$SIZE/train.txt \
    data.batch_size=8 train.epochs=1 train.steps_per_epoch=20 train.log_every=1 train.precision=bf16 \
    train.device=cuda data.num_workers=$(( $(nproc) - 1 )) $EXTRA 2>&1 | tail -n 5
python3 - "$OUT/run" <<'PY'
import json, math, sys
from pathlib import Path
run = Path(sys.argv[1])
rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
finite = all(math.isfinite(v) for r in rows for k, v in r.items() if isinstance(v, float))
res = json.loads((run / "results.json").read_text())
print(json.dumps({"steps": res["steps"], "all_logged_values_finite": finite, "bad_steps": res["bad_steps"],
                  "s_per_step": res["s_per_step"],
                  "step_time_median_s": res["step_time_median_s"], "peak_memory_gib": res["peak_memory_gib"],
                  "first_total": rows[0]["total"], "last_total": rows[-1]["total"]}, indent=1))
PY

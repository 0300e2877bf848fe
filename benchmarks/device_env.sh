# Source this at the start of a command on the lent GPU machine (its image has torch, timm, transformers but
# no PyAV / OmegaConf / safetensors): installs the wheels carried in .whl/ and puts src/ on the path.
#   usage:  source benchmarks/device_env.sh   (with `.whl` named in the device call's carry list)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH} && export PYTHONUNBUFFERED=1

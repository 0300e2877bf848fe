# FlashAttention-4 (flash-attn-4, CuTe DSL) on the lent GPU machine, whose image lacks it and whose calls carry at
# most 64 MiB: the DSL's compiler library alone is 92 MB as a wheel, so it travels in two calls on the same warm
# machine. Here, once: download the wheels (docs/PERFORMANCE.md "Run 8" has the commands) into .fa4b/ and the
# unpacked nvidia-cutlass-dsl-libs-cu13 wheel as .fa4a/cu13.tar.xz (xz -9e: 61 MB).
#   call 1: run(command="bash benchmarks/fa4_device.sh unpack", carry=[".fa4a"])   -> /tmp/fa4site, which outlives
#           the call on that machine (a folder made in the repo's copy there did not)
#   call 2 (within the machine's 30 s warm window):
#           run(command="source benchmarks/device_env.sh && source benchmarks/fa4_device.sh && ...", carry=[".fa4b", ".whl"])
if [ "$1" = unpack ]; then
  mkdir -p /tmp/fa4site && python3 -c "import tarfile; tarfile.open('.fa4a/cu13.tar.xz').extractall('/tmp/fa4site')" \
    && du -sh /tmp/fa4site && echo unpacked
else
  test -d /tmp/fa4site/nvidia_cutlass_dsl || { echo "no /tmp/fa4site: call 1 ran on another machine" >&2; return 3 2>/dev/null || exit 3; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fa4 .fa4b/*.whl \
    && cp -r /tmp/fa4site/. /tmp/fa4/ \
    && export PYTHONPATH=/tmp/fa4:/tmp/fa4/nvidia_cutlass_dsl/dsl_packages:$PYTHONPATH \
    && python3 -c "import flash_attn.cute, cutlass; print('flash-attn-4 ready')"
fi

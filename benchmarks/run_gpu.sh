#!/usr/bin/env bash
# All GPU checks and benchmarks in one go, for a one-GPU machine with no internet (at most
# 9.5 minutes, about 6 on an H100 with 16 cores). Run from the repository root:
#
#     OUT=/some/folder bash benchmarks/run_gpu.sh
#
# Wheels in .whl/ (ignored by git; carry it to the machine) are unpacked into a temporary
# folder put first on PYTHONPATH, e.g. simplejpeg for the machine's Python, which has no
# internet:  pip download simplejpeg --only-binary=:all: --no-deps --python-version 3.12 \
#                --platform manylinux2014_x86_64 -d .whl
#
# Writes at most 8 flat files into $OUT:
#   env.txt                GPU, driver, torch/timm versions, cores
#   cuda_graphs.json       bench_cuda_graphs, resnet18 224 px at batch 32, graphs on and off
#   fit_resnet18.json      bench_fit, resnet18 224 px, batch 32 and 256
#   fit_resnet152.json     bench_fit, resnet152 224 px, batch 32 and 128
#   predict.json           bench_predict, resnet18 224 px
#   gpu_check.json         gpu_check, resnet18 + resnet152, 3 epochs, CUDA vs CPU gap
#   profile_resnet18.txt   torch.profiler summary of the first epoch (top ops by CUDA time)
#   log.txt                everything printed (tables and the GPU tests' report included; the
#                          decode tables are only here)
# Every step has its own timeout and a failed step does not stop the next one; the timeouts
# add up to 570 s, so the whole script stays under a 10-minute command limit. The steps run
# in order of importance, so a cut-short run still returns the main figures.
set -x
set -u

OUT="${OUT:-./gpu-results}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
export HF_HUB_OFFLINE=1
export WJS_BENCH_DATA="${WJS_BENCH_DATA:-/tmp/wjs-bench-data}"
PY="${PYTHON:-$(command -v python || command -v python3)}"
LOG="$OUT/log.txt"
if compgen -G ".whl/*.whl" >/dev/null; then
    WHEELS="$(mktemp -d)"
    for wheel in .whl/*.whl; do
        "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
            "$wheel" "$WHEELS"
    done
    export PYTHONPATH="$WHEELS:$PYTHONPATH"
fi

step() {  # step SECONDS NAME COMMAND...: run with a timeout, log, keep going on failure
    local limit="$1" name="$2"
    shift 2
    echo "=== $name (limit ${limit}s) $(date -Is)" >>"$LOG"
    local start=$SECONDS
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start)) s" >>"$LOG"
    return 0
}

{
    date -Is
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    nproc
    "$PY" -c "import torch, timm, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__, 'torchvision', torchvision.__version__, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" 2>&1
    "$PY" -c "import simplejpeg; print('simplejpeg', simplejpeg.__version__)" 2>&1
} >"$OUT/env.txt"

# The CUDA-only tests first: they say whether the numbers below come from working code.
step 60 "CUDA tests" "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_batches.py

# Generate the images once (later steps reuse them).
step 30 "make images" "$PY" benchmarks/flickr_like.py --n-images 4096

step 120 "fit resnet18" "$PY" benchmarks/bench_fit.py --backbone resnet18 --size 224 \
    --n-images 4096 --epochs 10 --batch-size 32 256 --json "$OUT/fit_resnet18.json"

step 40 "cuda graphs" "$PY" benchmarks/bench_cuda_graphs.py --backbones resnet18 --size 224 \
    --n-images 2048 --epochs 3 --batch-size 32 --json "$OUT/cuda_graphs.json"

step 40 "predict resnet18" "$PY" benchmarks/bench_predict.py --backbone resnet18 --size 224 \
    --n-images 4096 --batch-size 32 --json "$OUT/predict.json"

step 130 "fit resnet152" "$PY" benchmarks/bench_fit.py --backbone resnet152 --size 224 \
    --n-images 1024 --epochs 10 --batch-size 32 128 --json "$OUT/fit_resnet152.json"

step 40 "profile resnet18" "$PY" benchmarks/profile_fit.py --backbone resnet18 --size 224 \
    --n-images 1024 --batch-size 32 --out "$OUT/profile_resnet18.txt"

step 60 "gpu_check" "$PY" benchmarks/gpu_check.py --backbones resnet18 resnet152 --size 224 \
    --n-images 2048 --epochs 3 --batch-size 64 --json "$OUT/gpu_check.json"

# Decoding on this host's cores, each host decoder against today's (threads and processes at
# one worker per core), then nvJPEG against the host on the 4,096 images (tables in log.txt
# only: the 8 files are taken).
step 30 "decode host" "$PY" benchmarks/bench_decode.py --tables decoders --n-images 1024 \
    --size 224 --repeats 2
step 20 "decode gpu" "$PY" benchmarks/bench_decode.py --tables device --n-images 4096 \
    --size 224 --repeats 2

ls -la "$OUT" >>"$LOG" 2>&1
exit 0

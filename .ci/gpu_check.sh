#!/usr/bin/env bash
# The GPU checks, in one short run on a machine with a CUDA GPU (not part of CI: CI has none):
# the GPU tests on CUDA, then `python -m nsfw_desk.bench_gpu` (about 2 minutes on an H100),
# then the CPU precision paths on two of its cores (a few minutes).
# A machine with torch, torchvision, timm, Pillow and numpy but without the rest of our needs
# gets them as wheels in .whl/, fetched beforehand where pip reaches an index:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       sqlite-utils sqlite-fts4 click-default-group click platformdirs
# Usage: [PARTS="tests bench cpu"] bash .ci/gpu_check.sh [bench_gpu arguments]; logs and
# figures go to $OUT (or /tmp). All three took 3 min 11 s on an H100 machine (2026-11-26:
# tests 22 s, bench 2 min, CPU paths 45 s), well inside a device call's 10 minutes; tests and
# `--repeat 3 --batch-sizes --thread-counts 4` took 2 min 8 s.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
lscpu | grep -E "^Model name|^CPU\(s\)"
python3 - <<'PY'
import torch, torchvision, timm
print("torch", torch.__version__, "torchvision", torchvision.__version__, "timm", timm.__version__)
from torchvision.io import decode_jpeg, encode_jpeg
x = torch.randint(0, 255, (3, 64, 48), dtype=torch.uint8)
data = encode_jpeg(x)
print("nvJPEG decode:", decode_jpeg([data], device="cuda")[0].shape,
      "encode:", encode_jpeg([x.cuda()])[0].device)
PY
PARTS=${PARTS:-tests bench cpu}
if [[ " $PARTS " == *" tests "* ]]; then
echo "== tests on CUDA"
timeout 240 python3 -m pytest -q -p no:cacheprovider -o filterwarnings=default \
    tests/test_gpu_prepare.py tests/test_gpu_decode.py >"$OUT/pytest.log" 2>&1
grep -E "^E  |passed|failed" "$OUT/pytest.log" | head -30
fi
if [[ " $PARTS " == *" bench "* ]]; then
echo "== bench"
timeout 420 python3 -m nsfw_desk.bench_gpu --json "$OUT/bench_gpu.json" "$@" 2>&1 \
    | grep -v Warning | tee "$OUT/bench_gpu.log"
fi
# The CPU goal (issue 14) on a CPU with an int8 dot product, which the 2-core AVX2 EPYC of the
# development machines lacks: two of this machine's cores, native bf16 treated as absent,
# fp32 eager against torch's dynamic int8 (fbgemm uses VNNI/AMX where the CPU has them).
if [[ " $PARTS " == *" cpu "* ]]; then
echo "== CPU paths on 2 cores (NSFW_DESK_NO_BF16=1)"
grep -o -w -E 'avx512_vnni|avx_vnni|amx_int8|amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '
echo
NSFW_DESK_NO_BF16=1 timeout 300 taskset -c 0,1 python3 -m nsfw_desk bench --device cpu \
    --cpu-paths --precisions int8 --json "$OUT/cpu_paths.json" 2>&1 \
    | grep -v Warning | tee "$OUT/cpu_paths.log"
fi

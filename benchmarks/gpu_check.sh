#!/usr/bin/env bash
# One-shot GPU check for a fresh CUDA machine (no internet; torch with CUDA, torch_geometric,
# scikit-build-core, cmake and ninja already installed): builds fpcore with its CUDA kernels, runs
# the device matrix first (`-m cuda`: every test whose `device` parameter, from tests/conftest.py
# DEVICES or OTHER_DEVICES, is cuda: the reference, gradcheck, opcheck and bad-input tests on the
# GPU, and the GPU-against-CPU comparisons), then the rest of the suite, then the CUDA benchmarks.
# Everything goes to $OUT (default ./gpu_check_out). The steps are ordered by what a GPU alone can
# confirm, so a run cut short still reports the matrix.
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
status=0
step() {  # step NAME TIMEOUT_S COMMAND...: runs one step, logs it, keeps going on failure
  local name="$1" limit="$2"
  shift 2
  echo "=== $name: $*" | tee -a "$OUT/summary.txt"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: rc=$rc in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

{ nvidia-smi; python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"; } \
  > "$OUT/environment.txt" 2>&1

# Build for the GPU that is here only (the install would otherwise compile every arch torch knows).
arch="$(python -c 'import torch; print("%d%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo 90)"
export FPCORE_CUDA=on CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_CUDA_ARCHITECTURES=$arch"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-16}"
step build 270 python -m pip install --no-build-isolation --no-deps -v . || { echo "build failed"; exit 1; }

# The source tree keeps the package under python/, so tests and benchmarks import the installed one.
step cuda_info 60 python -c "import fpcore, fpcore._library as l; print(fpcore.__file__, 'cuda:', l.cuda_available())"
step tests_cuda 180 python -m pytest -q -rs -p no:cacheprovider -m cuda tests
step tests 150 python -m pytest -x -q -rs -p no:cacheprovider -m "not cuda" tests
step bench_neighbors 90 python benchmarks/bench_neighbors.py --device cuda --out "$OUT"
if [ -f benchmarks/bench_descriptors.py ]; then
  step bench_descriptors 90 python benchmarks/bench_descriptors.py --device cuda --out "$OUT"
else
  echo "benchmarks/bench_descriptors.py not present: skipped" | tee -a "$OUT/summary.txt"
fi
exit "$status"

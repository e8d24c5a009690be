#!/usr/bin/env bash
# Compiles every kernel, CUDA included, against a CUDA build of torch without touching the
# developer build in python/fpcore. Needs nvcc and a Python whose torch is a CUDA build
# (default: /work/venv-cuda/bin/python, or $CUDA_PYTHON). Nothing is run: this machine has no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${CUDA_PYTHON:-/work/venv-cuda/bin/python}"
# Prefer that environment's cmake: older system cmakes (3.25) reject CUDA20 with nvcc 13.
if [ -x "$(dirname "$python")/cmake" ]; then export PATH="$(dirname "$python"):$PATH"; fi
mkdir -p build
cmake -S . -B build/cuda-check -G Ninja -DCMAKE_BUILD_TYPE=Release -DFPCORE_CUDA=on -DFPCORE_DEV_COPY=OFF \
      -DPython_EXECUTABLE="$python" ${CUDA_ARCHS:+-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS}
cmake --build build/cuda-check -j "${JOBS:-2}"

#!/usr/bin/env bash
# Compiles every kernel, CUDA included, against a CUDA build of torch without touching the
# developer build in python/fpcore. Needs nvcc and a Python whose torch is a CUDA build
# (default: /work/venv-cuda/bin/python, or $CUDA_PYTHON). Nothing is run: this machine has no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${CUDA_PYTHON:-/work/venv-cuda/bin/python}"
# CUDA as C++20 with nvcc 13 needs a newer CMake than some systems ship (3.25 refuses the dialect):
# prefer the cmake installed beside that Python (pip install cmake).
cmake_bin="$(dirname "$python")/cmake"
[ -x "$cmake_bin" ] || cmake_bin=cmake
mkdir -p build
"$cmake_bin" -S . -B build/cuda-check -G Ninja -DCMAKE_BUILD_TYPE=Release -DFPCORE_CUDA=on -DFPCORE_DEV_COPY=OFF \
      -DPython_EXECUTABLE="$python" ${CUDA_ARCHS:+-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS}
"$cmake_bin" --build build/cuda-check -j "${JOBS:-2}"

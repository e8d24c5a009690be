#!/usr/bin/env bash
# Incremental developer build: compiles csrc/ into build/dev and copies libfpcore_ops.so and
# _build_info.py into python/fpcore/, so `PYTHONPATH=python pytest` runs the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DFPCORE_CUDA="${FPCORE_CUDA:-off}" \
      -DPython_EXECUTABLE="$(command -v python3)" > build/dev-configure.log 2>&1 || { mkdir -p build; cat build/dev-configure.log; exit 1; }
cmake --build build/dev -j "${JOBS:-2}"

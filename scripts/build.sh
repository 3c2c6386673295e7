#!/usr/bin/env bash
# Configures and builds muongpt into build/ (the binary is build/muongpt).
# On a machine with an NVIDIA GPU the CUDA architecture is taken from the GPU;
# elsewhere CMake's default (one architecture, sm_90) keeps the build short.
# Extra arguments go to CMake, e.g. scripts/build.sh -DMUONGPT_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release)
if command -v nvidia-smi >/dev/null 2>&1; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.' || true)
  [ -n "$cap" ] && args+=("-DCMAKE_CUDA_ARCHITECTURES=$cap")
fi
cmake "${args[@]}" "$@" >/dev/null
cmake --build build -j "$(nproc)"

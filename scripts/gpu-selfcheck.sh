#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds fastgan for the visible GPU, runs the
# whole test-suite (CPU and CUDA, Triton compiled for real), then the
# benchmarks on the GPU, ending with one comparison table.
set -euo pipefail
cd "$(dirname "$0")/.."

FASTGAN_FORCE_CUDA=1 FASTGAN_CMAKE=1 bash scripts/setup-env.sh
.venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
FASTGAN_CMAKE_LIBRARY="$PWD/build-cmake/libfastgan.so" .venv/bin/pytest tests -q -ra
.venv/bin/pytest bench -q -p no:cacheprovider --bench-device cuda --benchmark-columns=median,min,rounds

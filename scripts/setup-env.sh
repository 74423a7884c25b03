#!/usr/bin/env bash
# Creates .venv (if needed) with torch and fastgan's build and test tools, then
# builds and installs fastgan into it. Safe to run again.
#
#   FASTGAN_TORCH        torch requirement (default: torch==2.14.1, a CUDA 13 build)
#   FASTGAN_EDITABLE=1   install with `pip install -e` instead of a regular install
#   FASTGAN_CMAKE=1      also build the LibTorch library with CMake into build-cmake/
#   CUDA_HOME, TORCH_CUDA_ARCH_LIST, FASTGAN_CPU_ONLY, FASTGAN_FORCE_CUDA: see README
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

pip install -q --upgrade pip "setuptools>=64" wheel
# POT, SciPy and GeomLoss at the versions the conformance tests are written
# against (pyproject.toml's test extra; tests/conftest.py's PEERS).
pip install -q "${FASTGAN_TORCH:-torch==2.14.1}" numpy ninja cmake \
  pytest pytest-benchmark hypothesis scipy==1.17.1 pot==0.9.7.post1 geomloss==0.3.1 \
  expecttest scikit-learn matplotlib tqdm mlxtend

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  # No GPU to run them on: compile the CUDA kernels for one architecture so
  # that they are still compiled and linked (and the build stays short).
  export TORCH_CUDA_ARCH_LIST=9.0
fi

editable=()
[ "${FASTGAN_EDITABLE:-0}" = 1 ] && editable=(-e)
pip install -q --no-build-isolation --no-deps "${editable[@]}" .

if [ "${FASTGAN_CMAKE:-0}" = 1 ]; then
  cuda_args=()
  if [ -n "${CUDA_HOME:-}" ]; then
    cuda_args=(-DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME" -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc")
  fi
  cmake -S . -B build-cmake -G Ninja -Wno-dev \
    -DCMAKE_PREFIX_PATH="$(python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
    "${cuda_args[@]}" > build-cmake.log 2>&1 || { cat build-cmake.log; exit 1; }
  cmake --build build-cmake >> build-cmake.log 2>&1 || { tail -50 build-cmake.log; exit 1; }
fi

# Run from outside the source tree so the installed package is the one reported.
(cd /tmp && python -m fastgan.info)

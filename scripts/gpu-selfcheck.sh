#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds fastgan for the visible GPU, runs the
# test-suite (CPU and CUDA, Triton compiled for real), then the benchmarks on
# the GPU, ending with one comparison table.
#
#   bash scripts/gpu-selfcheck.sh                  # .venv with torch 2.14.1 (scripts/setup-env.sh)
#   FASTGAN_PYTHON=python3 bash scripts/gpu-selfcheck.sh
#       # an interpreter that already has a CUDA build of torch (2.6 or newer),
#       # triton, pytest and pytest-benchmark: fastgan is built in place for it
#   FASTGAN_SELFCHECK_TESTS="-m cuda"              # pytest selection (default: all tests)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ -z "${FASTGAN_PYTHON:-}" ]; then
  FASTGAN_FORCE_CUDA=1 FASTGAN_CMAKE=1 bash scripts/setup-env.sh
  python=$repo/.venv/bin/python
  export FASTGAN_CMAKE_LIBRARY="$repo/build-cmake/libfastgan.so"
else
  python=$(command -v "$FASTGAN_PYTHON")
  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} PATH="$(dirname "$python"):$PATH"
  FASTGAN_FORCE_CUDA=1 "$python" setup.py -q build_ext --inplace
  # The Triton kernels live in kernels/ and are installed as fastgan.kernels.
  [ -e fastgan/kernels ] || ln -s ../kernels fastgan/kernels
  export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
fi
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"

# A toolchain that links libstdc++ statically into the extension gives it a
# second copy of the C++ runtime, and formatting an error message (any bad
# input) then crashes the process. Build with the system compiler instead
# (CXX=/usr/bin/g++ LDSHARED="/usr/bin/g++ -shared").
library=$(cd /tmp && "$python" -c "import fastgan._library as l; print(l.LIBRARY_PATH or '')" 2>/dev/null || true)
if [ -n "$library" ] && command -v readelf >/dev/null && ! readelf -d "$library" | grep -q "libstdc++"; then
  echo "gpu-selfcheck: $library links libstdc++ statically; rebuild with the system compiler" >&2
  exit 1
fi

# Run from outside the source tree: the package under test is the one built above.
cd /tmp
# shellcheck disable=SC2086
"$python" -m pytest "$repo/tests" -q -ra -p no:cacheprovider ${FASTGAN_SELFCHECK_TESTS:-}
"$python" -m pytest "$repo/bench" -q -p no:cacheprovider --bench-device cuda --benchmark-columns=median,min,rounds

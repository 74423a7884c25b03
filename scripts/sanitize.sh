#!/usr/bin/env bash
# Builds fastgan's C++ CPU kernels with AddressSanitizer and
# UndefinedBehaviorSanitizer into build-sanitize/ (the regular build and the
# .venv install are left alone) and runs the tests of the compiled kernels
# under them, the sanitizer runtimes preloaded into python. Any report is
# fatal, so the step fails on the first one.
#
# The tests cover every kernel source: test_op_safety (every registered op,
# called directly with tensors the wrappers never pass), test_spectral_norm
# (cpu/spectral_norm.cpp, autograd.cpp), test_penalty (cpu/penalty.cpp,
# mlp_critic.cpp), test_bias_act (cpu/bias_act.cpp, autograd.cpp),
# test_clip (cpu/clip.cpp), test_ot_1d (cpu/wasserstein_1d.cpp,
# cpu/assignment.cpp), test_ot_emd (cpu/emd.cpp), test_sinkhorn
# (cpu/sinkhorn.cpp). Left out, to keep the step within CI's time: tests
# that run no C++ kernel (Triton interpreter, torch.compile, opcheck,
# distributed), multi-step training runs, comparisons with GeomLoss,
# gradchecks and the one large assignment problem; the kernels they use are
# covered by the tests that remain. Extra arguments go to pytest instead
# of that selection.
#
#   PYTHON             the python with torch and the test tools (default .venv/bin/python)
#   FASTGAN_SANITIZE   the sanitizers (default address,undefined,float-cast-overflow)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
[[ "$python" = /* ]] || python="$PWD/$python"
# The venv's tools (ninja) for the build.
export PATH="$(dirname "$python"):$PATH"
out=build-sanitize
export FASTGAN_SANITIZE=${FASTGAN_SANITIZE:-address,undefined,float-cast-overflow}

# `setup.py build` puts the whole package (Python files, fastgan.kernels and
# the instrumented fastgan._C) under $out/lib; CPU only, whatever CI exports.
start=$SECONDS
mkdir -p "$out"
if ! env -u FASTGAN_FORCE_CUDA FASTGAN_CPU_ONLY=1 "$python" setup.py build \
    --build-base "$out" --build-lib "$out/lib" > "$out/build.log" 2>&1; then
  tail -50 "$out/build.log"
  exit 1
fi
echo "sanitize: built in $((SECONDS - start)) s ($FASTGAN_SANITIZE)"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(tests/test_op_safety.py tests/test_spectral_norm.py tests/test_penalty.py
         tests/test_bias_act.py tests/test_clip.py tests/test_ot_1d.py tests/test_ot_emd.py
         tests/test_sinkhorn.py
         -k "not triton and not compile and not opcheck and not distributed and not training and not geomloss and not gradcheck and not (large_problem and points)")
fi

preload=()
case ",$FASTGAN_SANITIZE," in *,address,*) preload+=("$(gcc -print-file-name=libasan.so)") ;; esac
case ",$FASTGAN_SANITIZE," in *,undefined,*|*,float-cast-overflow,*) preload+=("$(gcc -print-file-name=libubsan.so)") ;; esac
for lib in "${preload[@]}"; do
  [ -f "$lib" ] || { echo "sanitize: sanitizer runtime $lib not found" >&2; exit 1; }
done

# torch is not instrumented: leaks (python's own) are not looked for, and
# only fastgan's code reports; allocation stacks are kept short (the access
# itself is reported in full), which makes the run faster. The instrumented
# package comes first on the path.
run=(env -u FASTGAN_REQUIRE_CUDA_KERNELS
  PYTHONPATH="$PWD/$out/lib"
  LD_PRELOAD="$(IFS=:; echo "${preload[*]}")"
  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:verify_asan_link_order=0:detect_odr_violation=0:malloc_context_size=5
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
(cd /tmp && "${run[@]}" "$python" -c "
from fastgan import _library
assert _library.LOADED, _library.LOAD_ERROR
assert _library.build_config().get('sanitize'), f'{_library.LIBRARY_PATH} is not the instrumented build'
print('sanitize: testing', _library.LIBRARY_PATH)
")
start=$SECONDS
set +e
"${run[@]}" "$(dirname "$python")/pytest" -p no:cacheprovider -q -ra --durations=10 "${tests[@]}" 2>&1 | tee "$out/test.log"
status=${PIPESTATUS[0]}
set -e
echo "sanitize: tests ran in $((SECONDS - start)) s"
if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$out/test.log"; then
  echo "sanitize: a sanitizer reported an error (see above)" >&2
  exit 1
fi
exit "$status"

"""fastgan's Triton kernels compile for a GPU (sm_90) even where none is visible.

The interpreter tests check what the kernels compute; this checks that the
GPU compiler accepts them (constexpr globals, loop-carried types, barriers),
which the interpreter does not. The compiler runs in a fresh interpreter,
since this session may have switched the Triton interpreter on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

_COMPILE = """
import json, sys, importlib
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
module, kernel, signature, constexprs = json.loads(sys.argv[1])
fn = getattr(importlib.import_module(module), kernel)
signature.update({name: "constexpr" for name in constexprs})
compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                          target=GPUTarget("cuda", 90, 32))
print(json.dumps({"ptx": compiled.asm["ptx"]}))
"""


def compile_for_sm90(module: str, kernel: str, signature: dict[str, str], constexprs: dict[str, object]) -> str:
    """The PTX of ``module.kernel`` compiled for sm_90 (raises with the compiler's error)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE, json.dumps([module, kernel, signature, constexprs])],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["ptx"]


@pytest.mark.parametrize("cost_type", ["*fp32", "*fp64"])
def test_assignment_kernel_compiles_for_sm90(cost_type):
    from fastgan.kernels import assignment

    signature = {
        "cost_ptr": cost_type, "col4row_ptr": "*i64", "u_ptr": "*fp64", "v_ptr": "*fp64",
        "owner_ws": "*i32", "short_ws": "*fp64", "pred_ws": "*i32", "reached_ws": "*i8",
        "status_ptr": "*i32", "n": "i32", "m": "i32",
    }
    ptx = compile_for_sm90("fastgan.kernels.assignment", "_assignment_kernel", signature, {"BLOCK": assignment.BLOCK})
    assert "bar.sync" in ptx  # the barriers between the per-column state's writes and reads

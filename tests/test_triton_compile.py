"""fastgan's Triton kernels compile for a GPU (sm_90) even where none is visible.

The interpreter tests check what the kernels compute; this checks that the
GPU compiler accepts them (constexpr globals, loop-carried types, barriers),
which the interpreter does not. One fresh interpreter compiles every kernel
(this session may have switched the Triton interpreter on).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

_COMPILE = """
import importlib, json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
results = {}
for name, module, kernel, signature, constexprs in json.loads(sys.stdin.read()):
    try:
        fn = getattr(importlib.import_module(module), kernel)
        signature.update({k: "constexpr" for k in constexprs})
        compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                                  target=GPUTarget("cuda", 90, 32))
        results[name] = {"ptx": compiled.asm["ptx"]}
    except Exception as err:  # reported per kernel by the tests
        results[name] = {"error": f"{type(err).__name__}: {err}"[-3000:]}
print(json.dumps(results))
"""


def _specs() -> list[tuple[str, str, str, dict[str, str], dict[str, object]]]:
    specs = []
    for cost in ("fp32", "fp64"):
        specs.append((
            f"assignment-{cost}", "fastgan.kernels.assignment", "_assignment_kernel",
            {"cost_ptr": f"*{cost}", "col4row_ptr": "*i64", "u_ptr": "*fp64", "v_ptr": "*fp64",
             "owner_ws": "*i32", "short_ws": "*fp64", "pred_ws": "*i32", "reached_ws": "*i8",
             "status_ptr": "*i32", "n": "i32", "m": "i32"},
            {"BLOCK": 128},
        ))
    for dt in ("fp32", "fp64", "bf16"):
        acc = "fp64" if dt == "fp64" else "fp32"
        specs += [
            (f"clip-{dt}", "fastgan.kernels.clip", "_clip_kernel",
             {"x_ptr": f"*{dt}", "bounds_ptr": f"*{dt}", "count_ptr": "*i64", "n": "i32"}, {"BLOCK": 4096}),
            (f"interpolate-{dt}", "fastgan.kernels.penalty", "_interpolate_kernel",
             {"real_ptr": f"*{dt}", "fake_ptr": f"*{dt}", "eps_ptr": f"*{dt}", "out_ptr": f"*{dt}", "dim": "i32"},
             {"BLOCK": 1024}),
            (f"sum_squares-{dt}", "fastgan.kernels.penalty", "_sum_squares_kernel",
             {"g_ptr": f"*{dt}", "norms_ptr": f"*{acc}", "dim": "i32"}, {"BLOCK": 1024, "ACC64": dt == "fp64"}),
            (f"scale_rows-{dt}", "fastgan.kernels.penalty", "_scale_rows_kernel",
             {"g_ptr": f"*{dt}", "factors_ptr": f"*{acc}", "out_ptr": f"*{dt}", "dim": "i32"}, {"BLOCK": 1024}),
        ]
    for dt in ("fp32", "fp64"):
        for p in (1, 2):
            common = {"P": p, "BLOCK_N": 32, "BLOCK_M": 64, "ACC64": dt == "fp64"}
            specs += [
                (f"sinkhorn_softmin-{dt}-{p}", "fastgan.kernels.sinkhorn", "_softmin_kernel",
                 {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "h_ptr": f"*{dt}", "out_ptr": f"*{dt}",
                  "n": "i32", "m": "i32", "d": "i32", "inv_eps_hi": "fp32", "inv_eps_lo": "fp32",
                  "eps_hi": "fp32", "eps_lo": "fp32"}, dict(common)),
                (f"sinkhorn_envelope-{dt}-{p}", "fastgan.kernels.sinkhorn", "_envelope_kernel",
                 {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "h_ptr": f"*{dt}", "f_ptr": f"*{dt}",
                  "scale_ptr": f"*{dt}", "grad_ptr": f"*{dt}", "n": "i32", "m": "i32", "d": "i32",
                  "inv_eps_hi": "fp32", "inv_eps_lo": "fp32", "sign": "fp32"}, dict(common, BLOCK_D=4, CHUNKED=False)),
                (f"sinkhorn_envelope_chunked-{dt}-{p}", "fastgan.kernels.sinkhorn", "_envelope_kernel",
                 {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "h_ptr": f"*{dt}", "f_ptr": f"*{dt}",
                  "scale_ptr": f"*{dt}", "grad_ptr": f"*{dt}", "n": "i32", "m": "i32", "d": "i32",
                  "inv_eps_hi": "fp32", "inv_eps_lo": "fp32", "sign": "fp32"},
                 dict(common, BLOCK_D=16, CHUNKED=True)),
            ]
            if p == 1:
                blocks = {"BLOCK_N": 32, "BLOCK_M": 64, "ACC64": dt == "fp64"}
                lse = {"M_ptr": f"*{dt}", "h_ptr": f"*{dt}", "base_ptr": f"*{dt}", "out_ptr": f"*{dt}",
                       "active_ptr": "*i32", "n": "i32", "m": "i32", "inv_reg_hi": "fp32", "inv_reg_lo": "fp32"}
                specs += [
                    (f"sinkhorn_lse_rows-{dt}", "fastgan.kernels.sinkhorn", "_lse_kernel", dict(lse),
                     {"COLUMNS": False, "BLOCK_OUT": 32, "BLOCK_RED": 64, "ACC64": dt == "fp64"}),
                    (f"sinkhorn_lse_cols-{dt}", "fastgan.kernels.sinkhorn", "_lse_kernel", dict(lse),
                     {"COLUMNS": True, "BLOCK_OUT": 64, "BLOCK_RED": 32, "ACC64": dt == "fp64"}),
                    (f"sinkhorn_transport_cost-{dt}", "fastgan.kernels.sinkhorn", "_transport_cost_kernel",
                     {"M_ptr": f"*{dt}", "u_ptr": f"*{dt}", "v_ptr": f"*{dt}", "out_ptr": "*fp64", "n": "i32",
                      "m": "i32", "inv_reg_hi": "fp32", "inv_reg_lo": "fp32"}, dict(blocks)),
                ]
            packed = {"P": p, "ROWS": 4, "PACK": 8, "BLOCK_M": 64, "ACC64": dt == "fp64"}
            specs += [
                (f"sinkhorn_softmin_packed-{dt}-{p}", "fastgan.kernels.sinkhorn", "_softmin_packed_kernel",
                 {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "h_ptr": f"*{dt}", "out_ptr": f"*{dt}", "batch": "i32",
                  "n": "i32", "m": "i32", "d": "i32", "inv_eps_hi": "fp32", "inv_eps_lo": "fp32",
                  "eps_hi": "fp32", "eps_lo": "fp32"}, dict(packed)),
                (f"sinkhorn_envelope_packed-{dt}-{p}", "fastgan.kernels.sinkhorn", "_envelope_packed_kernel",
                 {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "h_ptr": f"*{dt}", "f_ptr": f"*{dt}",
                  "scale_ptr": f"*{dt}", "grad_ptr": f"*{dt}", "batch": "i32", "n": "i32", "m": "i32", "d": "i32",
                  "inv_eps_hi": "fp32", "inv_eps_lo": "fp32", "sign": "fp32"}, dict(packed, BLOCK_D=16)),
            ]
    from fastgan.kernels import bias_act

    for act, code in bias_act.ACT_CODES.items():
        for order in (0, 1, 2, 3):
            specs.append((
                f"bias_act-{act}-{order}", "fastgan.kernels.bias_act", "_bias_act_kernel",
                {"x_ptr": "*fp32", "grad_ptr": "*fp32", "bias_ptr": "*fp32", "params_ptr": "*fp32",
                 "out_ptr": "*fp32", "n": "i32", "channels": "i32", "inner": "i32"},
                {"ACT": code, "ORDER": order, "HAS_BIAS": True, "ACC64": False, "BLOCK": bias_act.BLOCK},
            ))
    return specs


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    import fastgan

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # The fastgan under test, not the source tree's (run from a temporary directory).
    env["PYTHONPATH"] = str(Path(fastgan.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE], input=json.dumps(_specs()),
        capture_output=True, text=True, env=env, cwd=tmp_path_factory.mktemp("triton"), timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "prefix",
    ["assignment", "clip", "interpolate", "sum_squares", "scale_rows", "bias_act", "sinkhorn_softmin", "sinkhorn_envelope"],
)
def test_kernels_compile_for_sm90(compiled, prefix):
    results = {name: r for name, r in compiled.items() if name.startswith(prefix + "-")}
    assert results, f"no {prefix} kernel was compiled"
    failures = {name: r["error"] for name, r in results.items() if "error" in r}
    assert not failures, failures
    if prefix == "assignment":
        # The barriers between the per-column state's writes and its reads.
        assert all("bar.sync" in r["ptx"] for r in results.values())

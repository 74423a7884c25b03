"""What this fastgan installation was built with and can run.

    python -m fastgan.info

Prints the torch and CUDA versions, where the compiled library is, which ops
have compiled CPU and CUDA kernels, whether Triton is importable and whether a
GPU is visible. Exits non-zero when the compiled library is missing.
"""

from __future__ import annotations

import importlib.util
import sys

import torch

import fastgan
from fastgan import _library


#: Ops whose public function does not call the op's CUDA kernel by default:
#: what backend="auto" runs on CUDA instead.
CUDA_DEFAULT_ELSEWHERE = {
    "bias_act": "torch's activations (the Triton kernel with backend='fused')",
    "bias_act_grad": "torch's autograd of its activations (the Triton kernel with backend='fused')",
}


def _ops_with_default_paths() -> dict[str, list[str]]:
    ops = _library.compiled_ops()
    for op, devices in ops.items():
        if op in CUDA_DEFAULT_ELSEWHERE:
            ops[op] = [
                f"{d}, but by default {CUDA_DEFAULT_ELSEWHERE[op]}" if d.startswith("cuda") else d for d in devices
            ]
    return ops


def report() -> dict[str, object]:
    """The facts :func:`main` prints, as a dict."""
    triton_spec = importlib.util.find_spec("triton")
    triton_version = None
    if triton_spec is not None:
        import triton

        triton_version = triton.__version__
    return {
        "fastgan": fastgan.__version__,
        "torch": torch.__version__,
        "torch CUDA": torch.version.cuda,
        "compiled library": str(_library.LIBRARY_PATH) if _library.LOADED else f"MISSING ({_library.LOAD_ERROR})",
        "built with": _library.build_config(),
        "ops (kernels)": _ops_with_default_paths(),
        "triton": triton_version,
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main() -> int:
    info = report()
    width = max(map(len, info))
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        print(f"{key:>{width}}  {value if value is not None else '-'}")
    return 0 if _library.LOADED else 1


if __name__ == "__main__":
    sys.exit(main())

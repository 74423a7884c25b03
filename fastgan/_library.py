"""The single place where fastgan's compiled library is loaded.

``fastgan._C`` holds every op's schema and its CPU (and, when built, CUDA)
kernels. If it is missing or fails to load, importing fastgan warns once and
every call that needs a compiled kernel raises an error saying how to build
it: nothing silently runs the pure-PyTorch reference instead.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

BUILD_HINT = (
    "Build it from the fastgan source tree with `pip install --no-build-isolation .` "
    "(or `-e .`) against the installed torch; see README.md."
)

LIBRARY_PATH: Path | None = None
LOAD_ERROR: str | None = None


def _load() -> None:
    global LIBRARY_PATH, LOAD_ERROR
    spec = importlib.util.find_spec("fastgan._C")
    if spec is None or spec.origin is None:
        LOAD_ERROR = "fastgan._C was not built"
    else:
        try:
            torch.ops.load_library(spec.origin)
            LIBRARY_PATH = Path(spec.origin)
        except OSError as err:
            LOAD_ERROR = f"{spec.origin} failed to load ({err})"
    if LOAD_ERROR is not None:
        warnings.warn(
            f"fastgan's compiled library is not available: {LOAD_ERROR}. Only "
            f"backend='reference' works until it is built. {BUILD_HINT}",
            RuntimeWarning,
            stacklevel=3,
        )


_load()
LOADED = LOAD_ERROR is None

_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}
_kernel_cache: dict[tuple[str, str], bool] = {}


def has_kernel(op: str, device_type: str) -> bool:
    """Whether the compiled op ``fastgan::<op>`` has a kernel for ``device_type``."""
    key = (op, device_type)
    found = _kernel_cache.get(key)
    if found is None:
        dispatch_key = _DISPATCH_KEYS.get(device_type)
        found = (
            LOADED
            and dispatch_key is not None
            and torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgan::{op}", dispatch_key)
        )
        _kernel_cache[key] = found
    return found


def require_kernel(op: str, device: torch.device) -> None:
    """Raises a clear RuntimeError unless ``fastgan::<op>`` can run on ``device``."""
    if has_kernel(op, device.type):
        return
    if not LOADED:
        raise RuntimeError(f"fastgan's compiled library is not available: {LOAD_ERROR}. {BUILD_HINT}")
    built_for_cuda = any("cuda" in devices for devices in compiled_ops().values())
    if device.type == "cuda" and not built_for_cuda:
        raise RuntimeError(
            f"fastgan was built without CUDA kernels, so fastgan::{op} cannot run on {device}. "
            "Rebuild with a CUDA build of torch and a CUDA toolkit present (set CUDA_HOME, or "
            "FASTGAN_FORCE_CUDA=1): `pip install --no-build-isolation .`"
        )
    raise RuntimeError(
        f"fastgan::{op} has no kernel for {device.type} tensors yet; use backend='reference'."
    )


def compiled_ops() -> dict[str, list[str]]:
    """Every ``fastgan::`` op and the device types it has kernels for.

    ``"cuda"`` means a compiled CUDA kernel; ``"cuda (triton)"`` a Triton
    kernel registered as the op's CUDA implementation; ``"cuda (torch ops)"``
    an implementation composed of torch's own CUDA kernels; ``"cuda (host)"``
    the CPU kernel run on the host for CUDA tensors.
    """
    if not LOADED:
        return {}
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastgan::"))
    ops = {}
    for name in names:
        op = name.split("::", 1)[1]
        ops[op] = [
            "cuda (triton)" if d == "cuda" and op in TRITON_OPS
            else "cuda (torch ops)" if d == "cuda" and op in TORCH_OPS_CUDA
            else "cuda (host)" if d == "cuda" and op in HOST_OPS_CUDA
            else d
            for d in _DISPATCH_KEYS
            if has_kernel(op, d)
        ]
    return ops


#: Ops whose CUDA kernel is a Triton kernel from fastgan.kernels.
TRITON_OPS: set[str] = set()
#: Ops whose CUDA implementation is composed of torch's CUDA kernels: these
#: three compiled in C++ from ATen ops, others registered from Python.
TORCH_OPS_CUDA: set[str] = {"mlp_critic_penalty", "mlp_critic_scores", "spectral_norm_linear"}
#: Ops whose CUDA implementation runs the CPU kernel on the host.
HOST_OPS_CUDA: set[str] = set()
_python_impls: torch.library.Library | None = None


def _register_cuda(op: str, fn: Callable[..., object], kind: set[str]) -> None:
    """``fn`` as the CUDA implementation of ``fastgan::<op>``, unless the compiled library has one."""
    global _python_impls
    if not LOADED or torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgan::{op}", "CUDA"):
        return
    if _python_impls is None:
        _python_impls = torch.library.Library("fastgan", "IMPL")
    _python_impls.impl(op, fn, "CUDA")
    kind.add(op)
    _kernel_cache.pop((op, "cuda"), None)


def register_triton(op: str, module: str, function: str) -> None:
    """Registers ``fastgan.kernels.<module>.<function>`` as the CUDA kernel of ``fastgan::<op>``.

    Only where the compiled library has no CUDA kernel for the op. The Triton
    module is imported on the first CUDA call, so importing fastgan never
    needs triton; without it that call raises an ImportError saying so.
    """

    def kernel(*args):
        try:
            impl = getattr(importlib.import_module(f"fastgan.kernels.{module}"), function)
        except ImportError as err:
            raise ImportError(
                f"fastgan::{op} runs a Triton kernel on CUDA tensors, and triton cannot be "
                f"imported ({err}); install triton"
            ) from err
        return impl(*args)

    _register_cuda(op, kernel, TRITON_OPS)


def register_torch_ops_cuda(op: str, fn: Callable[..., object]) -> None:
    """Registers ``fn`` (written with torch ops) as the CUDA implementation of ``fastgan::<op>``.

    Only where the compiled library has no CUDA kernel for the op.
    """
    _register_cuda(op, fn, TORCH_OPS_CUDA)


def on_host(op: str, *args):
    """``fastgan::<op>`` on CUDA arguments run by its CPU kernel on the host.

    The tensor arguments are copied to the host and the tensor results back to
    the arguments' GPU.
    """
    devices = {a.device for a in args if isinstance(a, torch.Tensor)}
    if len(devices) != 1:
        # The CPU kernel would check the copies, which all are on the host.
        raise ValueError(
            f"fastgan::{op}: the tensor arguments must be on one device, got {sorted(map(str, devices))}"
        )
    device = next(iter(devices))
    out = getattr(torch.ops.fastgan, op).default(*(a.cpu() if isinstance(a, torch.Tensor) else a for a in args))
    if isinstance(out, (tuple, list)):
        return tuple(t.to(device) for t in out)
    return out.to(device)


def register_host_cuda(op: str) -> None:
    """The CPU kernel of ``fastgan::<op>`` as its CUDA implementation (:func:`on_host`).

    For solvers that are sequential by nature (an exact network simplex walks
    one pivot after another). Only where the compiled library has no CUDA
    kernel for the op.
    """
    _register_cuda(op, functools.partial(on_host, op), HOST_OPS_CUDA)


@contextlib.contextmanager
def autograd_inside_op() -> Iterator[None]:
    """Autograd switched back on inside an op's implementation.

    Below the Autograd dispatch key (where an op's device implementation
    runs) the dispatcher excludes the autograd keys, so torch ops record no
    graph even under ``torch.enable_grad()``. Implementations composed of
    torch ops that differentiate an inner computation with
    ``torch.autograd.grad`` run it inside this context.
    """
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for name in _AUTOGRAD_KEYS:
        exclude = exclude.remove(getattr(torch._C.DispatchKey, name))
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude), torch.enable_grad():
        yield


_AUTOGRAD_KEYS = [
    name for name in ("AutogradFunctionality", "AutogradOther", "AutogradNestedTensor", "ADInplaceOrView")
    if hasattr(torch._C.DispatchKey, name)
]


def build_config() -> dict[str, object]:
    """What the compiled library was built with, as recorded by setup.py."""
    try:
        from fastgan import _build_config
    except ImportError:
        return {}
    return {k.lower(): v for k, v in vars(_build_config).items() if k.isupper()}

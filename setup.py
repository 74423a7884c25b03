"""Builds fastgan's compiled library, ``fastgan._C``.

The C++ CPU kernels are always built. The CUDA kernels are built when torch
is a CUDA build and a CUDA toolkit is found (no visible GPU needed), or when
``FASTGAN_FORCE_CUDA=1``; ``FASTGAN_CPU_ONLY=1`` turns them off.
``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures; without it, the visible
GPUs' architectures are used, or, with no GPU visible, every architecture the
installed torch was built for.

``FASTGAN_SANITIZE=address,undefined`` (any of address, undefined,
float-cast-overflow, comma-separated) builds the C++ kernels instrumented by
those sanitizers, at -O1 with frame pointers, every report fatal; it needs
``FASTGAN_CPU_ONLY=1``. The library then needs the sanitizer runtimes
preloaded into python (scripts/sanitize.sh does that).

Install against the torch already in the environment:

    pip install --no-build-isolation .       # or -e . for development
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from setuptools import setup

import torch
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parent


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _want_cuda() -> bool:
    if _env_flag("FASTGAN_CPU_ONLY"):
        if _env_flag("FASTGAN_FORCE_CUDA"):
            raise SystemExit("fastgan: FASTGAN_CPU_ONLY and FASTGAN_FORCE_CUDA are both set")
        return False
    if _env_flag("FASTGAN_FORCE_CUDA"):
        return True
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def _default_cuda_archs() -> None:
    """With no arch list and no visible GPU, build for the archs torch targets."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST") or torch.cuda.device_count() > 0:
        return
    archs = sorted(
        {f"{m.group(1)[:-1]}.{m.group(1)[-1]}" for a in torch.cuda.get_arch_list()
         if (m := re.fullmatch(r"sm_(\d+)", a))},
        key=lambda a: tuple(map(int, a.split("."))),
    )
    if not archs:
        raise SystemExit("fastgan: no GPU visible and TORCH_CUDA_ARCH_LIST is not set")
    archs[-1] += "+PTX"
    os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(archs)
    print(f"fastgan: no GPU visible; building for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")


_SANITIZERS = ("address", "undefined", "float-cast-overflow")


def _sanitize_flags() -> list[str]:
    """Compiler and linker flags for FASTGAN_SANITIZE, [] when it is not set.

    They go after the optimisation flags (-O3 from Python's and fastgan's
    own), so -O1 is the level used. -fno-wrapv undoes Python's -fwrapv, under
    which signed overflow is defined and UBSan would not look for it.
    """
    names = [n.strip() for n in os.environ.get("FASTGAN_SANITIZE", "").split(",") if n.strip()]
    if not names:
        return []
    unknown = sorted(set(names) - set(_SANITIZERS))
    if unknown:
        raise SystemExit(f"fastgan: FASTGAN_SANITIZE: unknown sanitizer(s) {unknown}; expected {list(_SANITIZERS)}")
    if not _env_flag("FASTGAN_CPU_ONLY"):
        raise SystemExit("fastgan: FASTGAN_SANITIZE instruments the CPU kernels only; set FASTGAN_CPU_ONLY=1 too")
    sanitize = ",".join(names)
    return [
        "-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv",
        f"-fsanitize={sanitize}", f"-fno-sanitize-recover={sanitize}",
    ]


def _sources(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern))


def _extension(with_cuda: bool):
    sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    # -fno-trapping-math lets the compiler turn branches on floating-point
    # comparisons into vector selects (same IEEE results, no FP exceptions
    # are observed anyway): leaky relu ran 20x faster with it.
    # No -std: each torch version compiles extensions in the standard it was
    # built with (C++17 up to 2.13, C++20 from 2.14); the sources are C++17.
    sanitize = _sanitize_flags()
    cxx = ["-O3", "-fopenmp", "-fno-trapping-math", *sanitize]
    if not with_cuda:
        return cpp_extension.CppExtension(
            "fastgan._C", sources, extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp", *(f for f in sanitize if f.startswith("-fsanitize="))],
        )
    _default_cuda_archs()
    return cpp_extension.CUDAExtension(
        "fastgan._C",
        sources + _sources("csrc/cuda/*.cu"),
        define_macros=[("FASTGAN_WITH_CUDA", "1")],
        extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-lineinfo"]},
        extra_link_args=["-fopenmp"],
    )


class BuildExtension(cpp_extension.BuildExtension):
    """Also records what was built in ``fastgan/_build_config.py``."""

    def run(self) -> None:
        super().run()
        out_dir = Path(self.get_ext_fullpath("fastgan._C")).parent
        out_dir.mkdir(parents=True, exist_ok=True)
        with_cuda = any(s.endswith(".cu") for ext in self.extensions for s in ext.sources)
        config = {
            "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda if with_cuda else None,
            "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if with_cuda else None,
            "sanitize": ",".join(f[len("-fsanitize="):] for f in _sanitize_flags() if f.startswith("-fsanitize=")) or None,
        }
        lines = ['"""What fastgan\'s compiled library was built with (written by setup.py)."""', ""]
        lines += [f"{key.upper()} = {value!r}" for key, value in config.items()]
        (out_dir / "_build_config.py").write_text("\n".join(lines) + "\n")


setup(
    ext_modules=[_extension(_want_cuda())],
    cmdclass={"build_ext": BuildExtension},
)

"""The compiled library: loaded here, reported clearly when missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import fastgan
from fastgan import _library


def test_compiled_cpu_library_is_loaded():
    assert _library.LOADED, _library.LOAD_ERROR
    assert _library.LIBRARY_PATH is not None and _library.LIBRARY_PATH.is_file()
    assert _library.has_kernel("clip_", "cpu")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::clip_", "CPU")


def test_info_command_reports_ops(tmp_path):
    # From an empty folder: `-m` puts the working directory on sys.path.
    out = subprocess.run(
        [sys.executable, "-m", "fastgan.info"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "clip_" in out.stdout and torch.__version__ in out.stdout


def test_missing_library_warns_once_and_never_falls_back(tmp_path):
    package = Path(fastgan.__file__).parent
    shutil.copytree(
        package, tmp_path / "fastgan", ignore=shutil.ignore_patterns("_C*", "__pycache__")
    )
    script = textwrap.dedent(
        """
        import sys
        import warnings
        import torch
        # Only the copy without the library may be found (an editable install
        # adds a finder that maps fastgan's modules to the source tree).
        sys.meta_path[:] = [
            f for f in sys.meta_path if "Editable" not in getattr(f, "__name__", type(f).__name__)
        ]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import fastgan
            import fastgan.clip
        hits = [w for w in caught if "compiled library is not available" in str(w.message)]
        print("warnings", len(hits))
        try:
            fastgan.clip_parameters_(torch.ones(3), 0.5)
            print("ran")
        except RuntimeError as err:
            print("raised", "pip install --no-build-isolation" in str(err))
        count = fastgan.clip_parameters_(torch.ones(3), 0.5, backend="reference")
        print("reference", int(count))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["warnings 1", "raised True", "reference 3"], out.stdout


def test_cuda_kernels_built_when_required():
    # CI builds the CUDA sources on every run (no GPU needed) and sets this.
    if os.environ.get("FASTGAN_REQUIRE_CUDA_KERNELS") != "1":
        pytest.skip("set FASTGAN_REQUIRE_CUDA_KERNELS=1 to require compiled CUDA kernels")
    cuda_sources = (Path(__file__).parents[1] / "csrc" / "cuda").glob("*.cu")
    registered = {op for src in cuda_sources for op in re.findall(r'm\.impl\("(\w+)"', src.read_text())}
    compiled = _library.compiled_ops()
    missing = sorted(op for op in registered if "cuda" not in compiled.get(op, []))
    assert registered and not missing, f"CUDA kernels in csrc/cuda/ but not in the build: {missing}"
    assert _library.build_config().get("cuda_version") == torch.version.cuda


def test_import_fastgan_loads_no_training_code():
    """``import fastgan`` (in a fresh interpreter) neither imports fastgan.train nor tries tqdm;
    the first use of fastgan.train / fastgan.Trainer loads them."""
    script = textwrap.dedent(
        """
        import sys
        import torch  # torch itself may import tqdm (torch.hub): only what fastgan asks counts

        asked = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tqdm" or name.startswith("fastgan.train"):
                    asked.append(name)
                return None

        for name in [m for m in sys.modules if m.split(".")[0] == "tqdm"]:
            del sys.modules[name]
        sys.meta_path.insert(0, Watch())
        import fastgan

        print("asked", sorted(asked))
        print("loaded", sorted(m for m in sys.modules if m.startswith("fastgan.train") or m.split(".")[0] == "tqdm"))
        print("trainer", fastgan.Trainer is fastgan.train.Trainer, callable(fastgan.train))
        print("after", "fastgan.train.trainer" in sys.modules, "train" in dir(fastgan))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == ["asked []", "loaded []", "trainer True True", "after True True"], out.stdout


def test_an_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        fastgan.nonexistent  # noqa: B018
    assert fastgan.train.Trainer is fastgan.Trainer

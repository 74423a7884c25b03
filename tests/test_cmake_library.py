"""The CMake build of csrc/ (for LibTorch users) registers working ops.

CI builds it and points FASTGAN_CMAKE_LIBRARY at libfastgan.so; elsewhere the
test is skipped unless that variable is set. It runs in a fresh interpreter:
one process can hold only one library that defines the `fastgan` namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LIBRARY = os.environ.get("FASTGAN_CMAKE_LIBRARY")

pytestmark = pytest.mark.skipif(
    not LIBRARY, reason="set FASTGAN_CMAKE_LIBRARY to a CMake-built libfastgan.so"
)


def test_cmake_library_runs_clip():
    assert Path(LIBRARY).is_file(), f"FASTGAN_CMAKE_LIBRARY={LIBRARY} does not exist"
    script = textwrap.dedent(
        """
        import sys
        import torch
        torch.ops.load_library(sys.argv[1])
        g = torch.Generator().manual_seed(int.from_bytes(__import__("os").urandom(4), "little"))
        xs = [torch.randn(n, generator=g) for n in (3, 70000, 1)]
        want = [x.clamp(-0.5, 0.5) for x in xs]
        changed = sum(int((x.abs() > 0.5).sum()) for x in xs)
        count = torch.ops.fastgan.clip_(xs, 0.5)
        assert int(count) == changed, (int(count), changed)
        for x, w in zip(xs, want):
            torch.testing.assert_close(x, w, rtol=0, atol=0)
        has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::clip_", "CUDA")
        print("ok", "cuda" if has_cuda else "cpu-only")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, LIBRARY], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")

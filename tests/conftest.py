"""Test configuration: the compiled library must be loaded, devices, Triton.

Every test that takes the ``device`` fixture runs on the CPU and, when a GPU
is visible, again on CUDA (marker ``cuda``; ``pytest -m cuda`` runs only
those). Without a GPU, Triton kernels run on CPU tensors through the Triton
interpreter, which must be switched on before any kernel module is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from fastgan import _library  # noqa: E402

HAS_CUDA = torch.cuda.is_available()

#: The peer libraries the conformance tests run next to fastgan, at the
#: versions whose defaults and messages they are written against (pinned in
#: pyproject.toml's ``test`` extra and scripts/setup-env.sh).
PEERS = {"ot": "0.9.7.post1", "scipy": "1.17.1", "geomloss": "0.3.1"}
#: FASTGAN_REQUIRE_PEERS=1 (set by CI): a test or module that skips because a
#: module cannot be imported fails instead, and so does a peer at another version.
REQUIRE_PEERS = os.environ.get("FASTGAN_REQUIRE_PEERS") == "1"
HAS_TRITON = importlib.util.find_spec("triton") is not None
TRITON_ON_CPU = os.environ.get("TRITON_INTERPRET") == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    # A broken build must never pass as "the reference works".
    if not _library.LOADED:
        pytest.exit(
            f"fastgan's compiled library is not loaded: {_library.LOAD_ERROR}. "
            f"The tests exercise the compiled kernels. {_library.BUILD_HINT}",
            returncode=1,
        )
    missing = [op for op, devices in _library.compiled_ops().items() if "cpu" not in devices]
    if missing:
        pytest.exit(f"fastgan ops without a compiled CPU kernel: {missing}", returncode=1)
    if REQUIRE_PEERS:
        wrong = []
        for module, version in PEERS.items():
            try:
                found = importlib.import_module(module).__version__
            except ImportError as err:
                found = f"not importable ({err})"
            if found != version:
                wrong.append(f"{module}: {found}, expected {version}")
        if wrong:
            pytest.exit(f"FASTGAN_REQUIRE_PEERS=1 and the conformance peers differ: {wrong}", returncode=1)


def _import_skip(report) -> str | None:
    """The reason of a skip that pytest.importorskip raised, else None."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    reason = str(report.longrepr[2])
    return reason if "could not import" in reason else None


def _fail_import_skip(report, where: str) -> None:
    reason = _import_skip(report) if REQUIRE_PEERS else None
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"{where} skipped ({reason}), and FASTGAN_REQUIRE_PEERS=1 requires it to run"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_import_skip(outcome.get_result(), collector.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_import_skip(outcome.get_result(), item.nodeid)


@pytest.fixture(
    params=[
        pytest.param("cpu"),
        pytest.param(
            "cuda",
            marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")],
        ),
    ]
)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def triton_device(device: torch.device) -> torch.device:
    """A device whose tensors Triton kernels can run on here, else skip."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    if device.type == "cpu" and not TRITON_ON_CPU:
        pytest.skip("Triton runs on CPU tensors only under TRITON_INTERPRET=1")
    return device


def seeded(generator: torch.Generator) -> int:
    """Seeds torch's default generator from ``generator`` (ops that draw from it, such as
    dropout or a penalty's interpolation weights, then repeat per test seed); returns the seed."""
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    torch.manual_seed(seed)
    return seed


@pytest.fixture
def generator() -> torch.Generator:
    """A freshly seeded generator: new random inputs per test, reproducible per run
    (``FASTGAN_TEST_SEED=<the printed seed> pytest tests/...::test_x`` replays a failure)."""
    seed = int(os.environ.get("FASTGAN_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def rng(generator: torch.Generator):
    """A numpy Generator seeded from ``generator`` (fresh inputs per test, reproducible from the printed seed)."""
    import numpy as np

    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


@pytest.fixture
def one_thread():
    """One torch thread for the test (the caller's count restored after): small models
    train faster on one, and the results do not depend on the machine's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""POT's own tests with POT's functions swapped for fastgan.ot's.

Copies POT's test files (test/test_ot.py, test/test_bregman.py,
test/test_1d_solver.py, test/sliced/test_sliced_distances.py) out of a POT
source tree into a scratch folder, selects the tests whose bodies call one of
the swapped functions (``emd``, ``emd2``, ``sinkhorn``, ``sinkhorn2``,
``sinkhorn_log``, ``wasserstein_1d``, ``sliced_wasserstein_distance``), runs
them once with POT itself (the tests that fail there are dropped: they test
POT, not the swap) and once with the functions replaced, and prints the pass
counts per file. Nothing in the tests is edited: the swap is a conftest that
sets ``ot.<name>`` (and ``ot.bregman.<name>``, ``ot.lp.<name>``,
``ot.sliced.<name>`` where POT exports it there) to fastgan's function
before the test modules import ``ot``. The conftest also provides POT's
``nx`` fixture and ``pytest.skip_backend`` (POT's own conftest is not in
its sdist).

    .venv/bin/pip download pot==0.9.7.post1 --no-deps --no-binary :all: -d /tmp/potsrc
    tar xzf /tmp/potsrc/pot-0.9.7.post1.tar.gz -C /tmp/potsrc
    .venv/bin/python scripts/pot_own_tests.py --pot-src /tmp/potsrc/pot-0.9.7.post1

The sdist lacks test/sliced/; put POT 0.9.7's test/sliced/test_sliced_distances.py
(from a checkout of the release) there, or the file is reported missing.
``--failures`` lists every test that fails with fastgan and its error line.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

FILES = (
    "test/test_ot.py",
    "test/test_bregman.py",
    "test/test_1d_solver.py",
    "test/sliced/test_sliced_distances.py",
)
SWAPPED = ("emd", "emd2", "sinkhorn", "sinkhorn2", "sinkhorn_log", "wasserstein_1d", "sliced_wasserstein_distance")

CONFTEST = '''
import functools
import os

import pytest

import ot
from ot.backend import get_backend_list

if os.environ.get("POT_OWN_TESTS_SWAP") == "1":
    import fastgan.ot

    SWAPPED = {swapped!r}
    for module in (ot, ot.bregman, ot.lp, ot.sliced):
        for name in SWAPPED:
            if hasattr(module, name):
                setattr(module, name, getattr(fastgan.ot, name))

backend_list = get_backend_list()


@pytest.fixture(params=backend_list)
def nx(request):
    yield request.param


def skip_arg(arg, value, reason=None, getter=lambda x: x):
    if isinstance(arg, (tuple, list)):
        n = len(arg)
    else:
        arg = (arg,)
        n = 1
    if not (n != 1 and isinstance(value, (tuple, list))):
        value = (value,)
    if not isinstance(getter, (tuple, list)):
        getter = [getter] * n
    if reason is None:
        reason = f"Param {{arg}} should be skipped for value {{value}}"

    def wrapper(function):
        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            if all(arg[i] in kwargs and getter[i](kwargs[arg[i]]) == value[i] for i in range(n)):
                pytest.skip(reason)
            return function(*args, **kwargs)

        return wrapped

    return wrapper


def pytest_configure(config):
    pytest.skip_arg = skip_arg
    pytest.skip_backend = functools.partial(skip_arg, "nx", getter=str)
'''


def calls_swapped(node: ast.AST) -> bool:
    """Whether a function body uses ``ot.<name>`` / ``ot.<module>.<name>`` for a swapped
    name (called, or passed as in ``assert_raises(AssertionError, ot.emd, ...)``),
    or calls a swapped name imported from ``ot``."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr in SWAPPED:
            base = sub.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id == "ot":
                return True
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in SWAPPED:
            return True
    return False


def selected_functions(path: Path) -> set[str]:
    """``name`` or ``Class::name`` of the test functions in ``path`` that call a swapped function."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and calls_swapped(node):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test") and calls_swapped(item):
                    out.add(f"{node.name}::{item.name}")
    return out


def run_pytest(work: Path, ids: list[str], swap: bool, report: Path) -> dict[str, tuple[str, str]]:
    """Runs ``ids`` in ``work``; returns {node id: (outcome, first line of the message)}."""
    env = dict(os.environ, POT_OWN_TESTS_SWAP="1" if swap else "0")
    args_file = work / "ids.txt"
    args_file.write_text("\n".join(ids))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"--junitxml={report}", "--rootdir", str(work), f"@{args_file}"]
    subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    for case in ET.parse(report).iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        parts = classname.split(".")
        # classname: test.test_ot or test.sliced.test_sliced_distances.TestClass
        module_parts = [p for p in parts if not p[:1].isupper()]
        cls = [p for p in parts if p[:1].isupper()]
        node = "/".join(module_parts) + ".py" + "".join(f"::{c}" for c in cls) + f"::{name}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (child.get("message") or "").splitlines()[0][:200] if child.get("message") else ""
                break
        results[node] = (outcome, message)
    return results


def print_failures(baseline: list[str], results: dict[str, tuple[str, str]]) -> None:
    """One line per test of ``baseline`` that did not pass: outcome, node id, message."""
    for node in baseline:
        outcome, message = results.get(node, ("missing", ""))
        if outcome != "passed":
            print(f"  {outcome}: {node}: {message}")


def collect(work: Path, files: list[str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "-o", "addopts=",
         "--rootdir", str(work), *files],
        cwd=work, capture_output=True, text=True, env=dict(os.environ, POT_OWN_TESTS_SWAP="0"),
    )
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("test/") and "::" in line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pot-src", required=True, type=Path, help="a POT source tree (sdist or checkout)")
    parser.add_argument("--failures", action="store_true", help="list the tests that fail with fastgan")
    parser.add_argument("--json", type=Path, help="write the per-test outcomes here")
    args = parser.parse_args(argv)

    import ot

    work = Path(tempfile.mkdtemp(prefix="pot_own_tests_"))
    present = []
    for rel in FILES:
        src = args.pot_src / rel
        if not src.exists():
            print(f"{rel}: missing from {args.pot_src}")
            continue
        dst = work / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        present.append(rel)
    (work / "test" / "conftest.py").write_text(CONFTEST.format(swapped=SWAPPED))

    selected = []
    for node in collect(work, present):
        path, _, rest = node.partition("::")
        function = rest.split("[")[0]
        if function in selected_functions(work / path):
            selected.append(node)
    print(f"POT {ot.__version__}: {len(selected)} tests call {', '.join(SWAPPED)}")

    with_pot = run_pytest(work, selected, swap=False, report=work / "pot.xml")
    baseline = [node for node in selected if with_pot.get(node, ("missing",))[0] == "passed"]
    with_fastgan = run_pytest(work, baseline, swap=True, report=work / "fastgan.xml")

    total_pass = 0
    for rel in present:
        in_file = [node for node in baseline if node.startswith(rel + "::")]
        passed = [node for node in in_file if with_fastgan.get(node, ("missing",))[0] == "passed"]
        total_pass += len(passed)
        print(f"{rel}: {len(passed)} of {len(in_file)} pass with fastgan.ot (POT passes {len(in_file)})")
    print(f"total: {total_pass} of {len(baseline)}")
    if args.failures:
        print_failures(baseline, with_fastgan)
    if args.json:
        args.json.write_text(json.dumps({"pot": with_pot, "fastgan": with_fastgan}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

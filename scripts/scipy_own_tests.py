"""SciPy's own ``linear_sum_assignment`` tests with the function swapped for fastgan's.

Copies the installed SciPy's scipy/optimize/tests/test_linear_assignment.py
into a scratch folder, with a conftest that sets
``scipy.optimize.linear_sum_assignment`` to
:func:`fastgan.ot.linear_sum_assignment` before the test module imports it
(nothing in the test file is edited), runs it once with SciPy itself and
once swapped, and prints the pass counts.

    .venv/bin/python scripts/scipy_own_tests.py [--failures]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pot_own_tests import print_failures, run_pytest  # noqa: E402

CONFTEST = '''
import os

if os.environ.get("POT_OWN_TESTS_SWAP") == "1":
    import scipy.optimize

    import fastgan.ot

    scipy.optimize.linear_sum_assignment = fastgan.ot.linear_sum_assignment
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failures", action="store_true", help="list the tests that fail with fastgan")
    args = parser.parse_args(argv)
    import scipy
    import scipy.optimize

    src = Path(scipy.optimize.__file__).parent / "tests" / "test_linear_assignment.py"
    work = Path(tempfile.mkdtemp(prefix="scipy_own_tests_"))
    (work / "test").mkdir()
    shutil.copy(src, work / "test" / "test_linear_assignment.py")
    (work / "test" / "conftest.py").write_text(CONFTEST)
    ids = ["test/test_linear_assignment.py"]
    with_scipy = run_pytest(work, ids, swap=False, report=work / "scipy.xml")
    baseline = sorted(node for node, (outcome, _) in with_scipy.items() if outcome == "passed")
    with_fastgan = run_pytest(work, baseline, swap=True, report=work / "fastgan.xml")
    passed = [node for node in baseline if with_fastgan.get(node, ("missing",))[0] == "passed"]
    print(f"SciPy {scipy.__version__}: test_linear_assignment.py: {len(passed)} of {len(baseline)} pass with fastgan.ot")
    if args.failures:
        print_failures(baseline, with_fastgan)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

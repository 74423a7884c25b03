"""Benchmark harness: devices, and one comparison table per benchmark group.

    pytest bench                       # CPU
    pytest bench --bench-device cuda   # GPU

Each benchmark records its ``contender`` in ``extra_info``; after the run a
table per group gives every contender's median time, its ratio to the group's
``floor`` (the least work that could do the job, when the group has one) and
fastgan's speed-up over it. Compare ratios within one run: absolute times on
shared machines are noisy.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fastgan import _library  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-device", default="cpu", help="device to benchmark on (cpu, cuda)")


def pytest_sessionstart(session: pytest.Session) -> None:
    if not _library.LOADED:
        pytest.exit(f"fastgan's compiled library is not loaded: {_library.LOAD_ERROR}", returncode=1)


@pytest.fixture(scope="session")
def bench_device(request: pytest.FixtureRequest) -> torch.device:
    device = torch.device(request.config.getoption("--bench-device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return device


def timed(fn, device: torch.device, repeat: int = 1):
    """``fn`` run ``repeat`` times, then a GPU synchronised once."""
    sync = device.type == "cuda"

    def run():
        for _ in range(repeat):
            fn()
        if sync:
            torch.cuda.synchronize(device)

    return run


def _format_time(seconds: float) -> str:
    """A duration in s, ms, us or ns; differences may be negative (noise)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:8.2f} {unit}"
    return f"{seconds / 1e-9:8.2f} ns"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, dict[str, float]] = {}
    notes: dict[str, list[str]] = {}
    for bench in session.benchmarks:
        contender = bench.extra_info.get("contender", bench.name)
        groups.setdefault(bench.group or "", {})[contender] = bench.stats.median
        if "note" in bench.extra_info:
            notes.setdefault(bench.group or "", []).append(f"{contender}: {bench.extra_info['note']}")
    write = terminalreporter.write_line
    write("")
    write("fastgan comparison (median per call; ratios measured in this run)")
    for group, times in groups.items():
        floor = times.get("floor")
        ours = times.get("fastgan")
        write("")
        write(f"  {group}")
        write(f"    {'contender':<24}{'median':>12}{'x floor':>10}{'fastgan speed-up':>18}")
        for contender, median in sorted(times.items(), key=lambda kv: kv[1]):
            vs_floor = f"{median / floor:.2f}x" if floor else "-"
            speedup = f"{median / ours:.2f}x" if ours and contender != "fastgan" else "-"
            write(f"    {contender:<24}{_format_time(median):>12}{vs_floor:>10}{speedup:>18}")
        for note in notes.get(group, []):
            write(f"    {note}")
        overheads = [
            f"{c} {times[c] / times[f'{c} (no penalty)']:.2f}x"
            for c in times
            if f"{c} (no penalty)" in times
        ]
        if overheads:
            write(f"    penalty overhead (step with / without): {', '.join(overheads)}")
        baseline = times.get("no_sn")
        if baseline is not None:
            extra = {c: t - baseline for c, t in times.items() if c != "no_sn"}
            parts = [f"{c} {_format_time(d).strip()} ({d / baseline:.0%})" for c, d in extra.items()]
            line = f"    spectral-norm overhead (step minus no_sn): {', '.join(parts)}"
            if extra.get("fastgan", 0) > 0 and "torch" in extra:
                line += f"; torch / fastgan {extra['torch'] / extra['fastgan']:.1f}x"
            write(line)

"""Atomic checkpoints that load with ``torch.load(weights_only=True)`` and RNG state capture."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["save_atomic", "load", "capture_rng", "restore_rng"]


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Writes ``obj`` with ``torch.save`` to a temporary file beside ``path``, then renames it over ``path``.

    The rename is atomic on POSIX file systems: a crash or kill during the write
    leaves the previous checkpoint at ``path`` intact (and at worst a stray temporary
    file, removed here when the failure is an exception).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


#: What every checkpoint of a fastgan run holds (Trainer.state_dict).
REQUIRED_KEYS = (
    "config", "G", "D", "opt_G", "opt_D", "data", "latent_gen", "penalty_gen", "rng", "history", "w1_history", "step",
)


def load(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` (tensors and primitive containers only).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: naming the file, when it is empty, damaged, not a torch
            file, or not a fastgan checkpoint (keys missing).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # every way a damaged file fails to unpickle
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if Path(path).stat().st_size == 0:
            reason = "the file is empty"
        raise ValueError(f"{path} is not a fastgan checkpoint or is damaged ({reason[:200]})") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a fastgan checkpoint: it holds a {type(state).__name__}, not a dict")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path} is not a fastgan checkpoint: it lacks {', '.join(missing)}")
    return state


def capture_rng() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states, as tensors and ints."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python_version": int(version),
        "python_state": torch.tensor(state, dtype=torch.int64),
        "python_gauss": [] if gauss is None else [float(gauss)],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    """Restores what :func:`capture_rng` captured."""
    torch.set_rng_state(state["torch"])
    gauss = state["python_gauss"][0] if state["python_gauss"] else None
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_state"].tolist()), gauss))
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

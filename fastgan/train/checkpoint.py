"""Checkpoints: atomic files that load with ``torch.load(weights_only=True)``, RNG state capture,
and :class:`Checkpointing`, the :class:`~fastgan.train.trainer.Trainer` methods that save and
restore a run (models, optimizers, every random stream, the history)."""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

__all__ = ["save_atomic", "load", "capture_rng", "restore_rng", "Checkpointing"]


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


class Checkpointing:
    """``state_dict`` / ``load_state_dict`` / ``save_checkpoint`` / ``resume`` of a trainer.

    Reads and restores the trainer's ``G``, ``D``, ``G_ema``, ``opt_G``, ``opt_D``,
    ``data``, ``latent_gen``, ``penalty_gen``, ``history``, ``w1_history``, ``elapsed``,
    ``step``, ``cfg`` and its log window; a resumed run continues bit for bit on the CPU.
    """

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and primitive containers."""
        state: dict[str, Any] = {
            "step": self.step,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "data": self.data.state_dict(),
            "latent_gen": self.latent_gen.get_state(),
            "penalty_gen": self.penalty_gen.get_state(),
            "rng": capture_rng(),
            "history": self.history,
            "w1_history": self.w1_history,
            "elapsed": self.elapsed,
            "config": self.cfg.to_dict(),
            "log_window": {"sums": self._loss_sums, "count": self._loss_count, "g_loss": self._last_g_loss},
        }
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (models, optimizers, every RNG, history)."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.data.load_state_dict(state["data"])
        self.latent_gen.set_state(state["latent_gen"])
        self.penalty_gen.set_state(state["penalty_gen"])
        restore_rng(state["rng"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.w1_history = {k: list(v) for k, v in state["w1_history"].items()}
        self.elapsed = float(state.get("elapsed", 0.0))
        if self.G_ema is not None and "G_ema" in state:
            self.G_ema.load_state_dict(state["G_ema"])
        self.step = int(state["step"])
        window = state.get("log_window")
        if window is not None:  # losses since the last log record, so the next record matches an unbroken run
            self._loss_sums = list(window["sums"]) if window["sums"] is not None else None
            self._loss_count = int(window["count"])
            self._last_g_loss = window["g_loss"]
        # The optimizers' hyper-parameters are the configuration's, not the checkpoint's: a
        # resumed run with another --lr or --betas runs with them (and says so).
        old = state.get("config", {})
        changed = [f"{k} {old[k]!r} -> {getattr(self.cfg, k)!r}" for k in ("lr", "lr_g", "betas", "lr_decay")
                   if k in old and old[k] != (list(self.cfg.betas) if k == "betas" else getattr(self.cfg, k))]
        if self.cfg.optimizer == "adam":
            for opt in (self.opt_D, self.opt_G):
                for group in opt.param_groups:
                    group["betas"] = tuple(float(b) for b in self.cfg.betas)
        old_steps = old.get("steps", self.cfg.steps)
        if self.cfg.lr_decay == "linear" and old.get("lr_decay") == "linear" and old_steps != self.cfg.steps:
            # The schedule is a function of (step, steps): a new end moves the rates. Say by how much.
            changed.append(f"steps {old_steps} -> {self.cfg.steps}: the linear decay now ends at step {self.cfg.steps}, so at step "
                           f"{self.step} the rates go from {self._lr_scale(old_steps):.3g} to {self._lr_scale():.3g} of `lr`")
        self._set_learning_rates()
        if changed and self.rank == 0:
            warnings.warn(f"resumed at step {self.step} with the new optimizer settings: {', '.join(changed)}", stacklevel=2)

    @property
    def checkpoint_path(self) -> Optional[Path]:
        """``out/checkpoint.pt`` (None without a run directory)."""
        return self.out / "checkpoint.pt" if self.out is not None else None

    def save_checkpoint(self, path: Optional[str | os.PathLike] = None) -> Optional[Path]:
        """Writes :meth:`state_dict` atomically (rank 0 only); returns the path."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or self.rank != 0:
            return None
        save_atomic(self.state_dict(), path)
        return path

    def resume(self, path: Optional[str | os.PathLike] = None) -> bool:
        """Loads ``path`` (default ``out/checkpoint.pt``) if it exists; returns whether it did."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or not path.exists():
            return False
        self.load_state_dict(load(path, map_location=self.device))
        return True

"""The training loops: presets, checkpoints and resume, NaN stop, DDP, the command line, data."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import fastgan
from fastgan.train import Config, Trainer, TrainingDiverged, preset
from fastgan.train import checkpoint as ckpt
from fastgan.train.data import TensorData, grid25, make_data, ring8, swiss_roll
from fastgan.train.models import build_models

TINY = dict(width=16, depth=2, batch_size=16, log_every=1, checkpoint_every=1, eval_samples=200, w1_batch=32, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(algo: str, **kw) -> Config:
    return preset(algo, **{**TINY, **kw})


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"G.{k}": v.detach().clone() for k, v in trainer.G.state_dict().items()}
    out.update({f"D.{k}": v.detach().clone() for k, v in trainer.D.state_dict().items()})
    return out


@pytest.mark.parametrize("algo", ["gan", "wgan", "wgan-gp", "sngan", "lsgan", "fgan-kl", "fgan-js"])
def test_preset_runs_and_writes(algo, tmp_path):
    trainer = Trainer(_tiny(algo, steps=3), out=tmp_path)
    metrics = trainer.fit()
    for key in ("d_loss", "g_loss", "wasserstein"):
        assert len(trainer.history[key]) == 3
        assert all(math.isfinite(v) for v in trainer.history[key]), (key, trainer.history[key])
    for name in ("checkpoint.pt", "metrics.json", "samples.png", "losses.png", "critic_vs_w1.png", "latent_traversal.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["modes_total"] == 25 and 0 <= on_disk["modes_covered"] <= 25
    assert 0 <= on_disk["high_quality_pct"] <= 100
    assert on_disk["w1_to_data"] > 0 and metrics["steps"] == 3


def test_preset_defaults_match_the_papers():
    wgan = preset("wgan")
    assert (wgan.optimizer, wgan.lr, wgan.clip, wgan.batch_size, wgan.n_critic, wgan.sigmoid) == ("rmsprop", 5e-5, 0.01, 64, 5, False)
    for data in ("digits32", "grid25", "mnist"):  # the papers' settings on other images, and one flag away on recipe data
        gp = preset("wgan-gp", data=data, paper_defaults=data != "digits32")
        assert (gp.optimizer, gp.lr, gp.betas, gp.gp_weight, gp.n_critic, gp.ema, gp.lr_decay, gp.normalize) == (
            "adam", 1e-4, (0.0, 0.9), 10.0, 5, 0.0, "none", False)
        sn = preset("sngan", data=data, paper_defaults=data != "digits32")
        assert (sn.spectral_norm, sn.loss, sn.lr, sn.betas, sn.n_critic, sn.ema, sn.normalize) == (
            True, "hinge", 2e-4, (0.0, 0.9), 5, 0.0, False)
    gan = preset("gan")
    assert (gan.loss, gan.g_loss) == ("minimax", "ns")
    assert preset("gan", g_loss="minimax").g_loss == "minimax"
    assert preset("fgan-reverse-kl").loss == "fgan_reverse_kl"
    with pytest.raises(ValueError, match="algo"):
        preset("wgan-xx")
    with pytest.raises(ValueError, match="unknown config option"):
        preset("wgan", learning_rate=1.0)
    with pytest.raises(ValueError, match="backend"):
        Trainer(_tiny("wgan", backend="fast"))
    with pytest.raises(ValueError, match="n_critic"):
        Trainer(_tiny("wgan", n_critic=0))
    with pytest.raises(ValueError, match="sample_every"):
        Trainer(_tiny("wgan", sample_every=-1))


def test_sngan_normalises_every_critic_layer():
    trainer = Trainer(_tiny("sngan"))
    linears = [m for m in trainer.D.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in linears)
    trainer.fit(steps=2)
    for m in linears:  # W / sigma(W): largest singular value ~1 (one power iteration per step)
        assert torch.linalg.matrix_norm(m.weight.detach(), ord=2) < 1.2


def test_wgan_clips_after_each_critic_step():
    trainer = Trainer(_tiny("wgan", clip=0.01))
    before = [p.detach().abs().max() for p in trainer.D.parameters()]
    assert max(before) > 0.01  # the initial weights do exceed c: clipping has work to do
    trainer._critic_step()
    for p in trainer.D.parameters():
        assert p.abs().max() <= 0.01
    assert any(bool((p.abs() == 0.01).any()) for p in trainer.D.parameters())


@pytest.mark.parametrize("algo", ["wgan-gp", "sngan", "wgan", "gan"])
def test_reference_backend_runs_the_same_loop(algo):
    # float64: in float32, Adam turns rounding noise in near-zero gradients into whole steps.
    fast = Trainer(_tiny(algo, steps=3, dtype="float64"))
    ref = Trainer(_tiny(algo, steps=3, backend="reference", dtype="float64"))
    assert fast._mlp_critic is not None and ref._mlp_critic is None  # fastgan.mlp_critic_penalty vs autograd
    fast.fit(progress=False)
    ref.fit(progress=False)
    a, b = _params(fast), _params(ref)
    for k in a:
        # Spectral norm's power-iteration vectors u, v carry rounding amplified by 1 / (sigma_1 - sigma_2)
        # of a 16-unit layer (measured: 1.4e-8 on this machine's CPU after 3 steps, weights within 3e-10).
        tol = dict(rtol=0, atol=1e-6) if k.endswith(("._u", "._v")) else dict(rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(a[k], b[k], msg=k, **tol)


@pytest.mark.parametrize("algo", ["wgan-gp", "sngan", "wgan"])
def test_resume_is_bit_exact(algo, tmp_path):
    full = Trainer(_tiny(algo, steps=6, ema=0.9))
    full.fit()
    first = Trainer(_tiny(algo, steps=6, ema=0.9), out=tmp_path)
    first.fit(steps=3)
    resumed = Trainer(_tiny(algo, steps=6, ema=0.9), out=tmp_path)
    resumed.fit(resume=True)
    assert resumed.step == 6
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for p, q in zip(full.G_ema.parameters(), resumed.G_ema.parameters()):
        assert torch.equal(p, q)
    assert full.history["d_loss"] == resumed.history["d_loss"]


def test_same_seed_same_run_other_seed_other_run():
    a, b, c = (Trainer(_tiny("wgan-gp", seed=s)) for s in (3, 3, 4))
    for t in (a, b, c):
        t.fit(steps=2)
    pa, pb, pc = _params(a), _params(b), _params(c)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)


def test_checkpoint_loads_weights_only(tmp_path):
    trainer = Trainer(_tiny("sngan", steps=2), out=tmp_path)
    trainer.fit()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert "exp_avg" in next(iter(state["opt_D"]["state"].values()))


def test_atomic_checkpoint_survives_a_failed_save(tmp_path, monkeypatch):
    trainer = Trainer(_tiny("wgan-gp"), out=tmp_path)
    trainer.fit(steps=2)
    good = ckpt.load(tmp_path / "checkpoint.pt")

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    trainer.step = 99
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    again = ckpt.load(tmp_path / "checkpoint.pt")
    assert again["step"] == good["step"] == 2
    assert all(torch.equal(again["G"][k], good["G"][k]) for k in good["G"])
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


class _PoisonedData(TensorData):
    """Finite samples for the first `good` draws, then NaN."""

    def __init__(self, good: int) -> None:
        super().__init__(torch.randn(64, 2))
        self.good, self.calls = good, 0

    def sample(self, n, generator=None):
        x = super().sample(n, generator)
        if generator is None:
            self.calls += 1
            if self.calls > self.good:
                x = x.clone().fill_(float("nan"))
        return x


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = _tiny("wgan-gp", steps=10, n_critic=5)  # the data's last good draw is the 1st critic step of step 3
    trainer = Trainer(cfg, out=tmp_path, data=_PoisonedData(good=2 * cfg.n_critic + 1))
    with pytest.raises(TrainingDiverged, match="critic loss became nan"):
        trainer.fit()
    state = ckpt.load(tmp_path / "checkpoint.pt")
    assert state["step"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in state["G"].values())
    assert not (tmp_path / "metrics.json").exists()


def test_ema_is_an_exponential_average():
    trainer = Trainer(_tiny("wgan-gp", ema=0.75))
    start = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.fit(steps=1)
    for p0, p, pe in zip(start, trainer.G.parameters(), trainer.G_ema.parameters()):
        torch.testing.assert_close(pe, 0.75 * p0 + 0.25 * p.detach())


def test_pack_and_minibatch_std_train():
    for kw in (dict(pack=2), dict(minibatch_std=True), dict(pack=4, minibatch_std=True)):
        trainer = Trainer(_tiny("wgan-gp", **kw))
        trainer.fit(steps=2)
        assert all(math.isfinite(v) for v in trainer.history["d_loss"])
    with pytest.raises(ValueError, match="pack"):
        Trainer(_tiny("wgan-gp", pack=3))


def test_image_models_and_digits(tmp_path):
    for model, size in (("dcgan", 32), ("dcgan", 64), ("sngan-cnn", 32), ("resnet", 32)):
        g, d = build_models(model, (3, size, size), latent_dim=8, width=8, critic_norm="layer")
        x = g(torch.randn(2, 8))
        assert x.shape == (2, 3, size, size) and d(x).shape == (2,)
    _, d = build_models("dcgan", (1, 32, 32), latent_dim=8, width=8, sigmoid=True)
    assert bool(((d(torch.randn(3, 1, 32, 32)) > 0) & (d(torch.randn(3, 1, 32, 32)) < 1)).all())
    with pytest.raises(ValueError, match="BatchNorm"):
        Trainer(_tiny("wgan-gp", data="digits32", model="dcgan", critic_norm="batch", width=8))
    trainer = Trainer(_tiny("wgan-gp", data="digits32", model="dcgan", critic_norm="layer", width=8, latent_dim=8, batch_size=4),
                      out=tmp_path)
    metrics = trainer.fit(steps=1)
    assert (tmp_path / "samples.png").exists() and (tmp_path / "latent_traversal.png").exists()
    assert 0 <= metrics["confident_pct"] <= 100 and metrics["frechet_distance"] > 0 and metrics["frechet_floor"] > 0
    assert trainer.sample(5).shape == (5, 1, 32, 32)


def test_toy_data_centres_and_sigma():
    g = grid25(seed=1)
    expected = {(-4.0 + 2 * i, -4.0 + 2 * j) for i in range(5) for j in range(5)}
    assert {tuple(c) for c in g.centres.tolist()} == expected
    for data, sigma in ((g, 0.05), (ring8(seed=2), 0.02)):
        x = data.sample(40000).double()
        nearest = torch.cdist(x, data.centres.double()).argmin(1)
        residual = x - data.centres.double()[nearest]
        assert data.sigma == sigma
        assert abs(residual.std().item() - sigma) < 0.03 * sigma
        assert residual.abs().max() < 6 * sigma
        counts = torch.bincount(nearest, minlength=data.centres.shape[0]).double()
        assert counts.min() > 0.8 * counts.mean()
    r = ring8().centres.double()
    torch.testing.assert_close(r.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    s = swiss_roll(seed=0).sample(1000)
    assert s.shape == (1000, 2) and bool(torch.isfinite(s).all())
    d = make_data(torch.utils.data.TensorDataset(torch.randn(10, 3)))
    assert d.sample(4).shape == (4, 3)
    with pytest.raises(ValueError, match="data"):
        make_data("grid26")


def test_exact_w1_matches_scipy():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g) + 1
    cost = torch.cdist(x.double(), y.double()).numpy()
    r, c = scipy_optimize.linear_sum_assignment(cost)
    assert fastgan.train.exact_w1(x, y) == pytest.approx(cost[r, c].mean(), rel=1e-12)


def test_python_api_is_exported(tmp_path):
    assert fastgan.Trainer is Trainer
    trainer = fastgan.train("sngan", "ring8", out=tmp_path, steps=2, **{k: v for k, v in TINY.items()})
    assert trainer.metrics["modes_total"] == 8


def _env() -> dict[str, str]:
    """The environment of a child process that imports the fastgan this session tests.

    Children also run from a temporary directory: the source tree's own
    ``fastgan/`` (without the compiled library, in a regular install) must not
    shadow the installed package.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(fastgan.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_cli_train_sample_eval(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--steps", "2", "--width", "16", "--batch-size", "16", "--eval-samples", "200", "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "fastgan", "train", "--algo", "wgan-gp", "--data", "ring8", "--out", str(run), *common],
                          capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "modes_covered" in done.stdout and "high_quality_pct" in done.stdout
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2
    # sample and eval in-process (the subprocess above covers the entry point)
    from fastgan.train.cli import main

    assert main(["sample", "--run", str(run), "-n", "10", "--out", str(tmp_path / "s.pt")]) == 0
    assert torch.load(tmp_path / "s.pt", weights_only=True).shape == (10, 2)
    assert main(["sample", "--run", str(run), "-n", "50"]) == 0
    assert (run / "samples_cli.png").stat().st_size > 0
    assert main(["eval", "--run", str(run), "-n", "100"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["modes_total"] == 8
    with pytest.raises(SystemExit, match="algo"):
        main(["train", "--algo", "nope", "--out", str(tmp_path / "x")])


def test_ddp_two_processes_match_one(tmp_path):
    """A 2-process gloo run on the same global batch gives the 1-process parameters to 1e-5.

    One run covers both hazards: spectral norm (u, v buffers) and a gradient penalty
    (local autograd.grad, one backward through DDP). float64: in float32, Adam turns
    rounding noise in a near-zero gradient into a whole lr-sized step (measured: one
    bias entry off by 4e-5 while every other entry agreed to 7e-9).
    """
    algo = "sngan"
    args = ["--algo", algo, "--gp-weight", "10", "--data", "grid25", "--steps", "3", "--width", "16", "--depth", "2", "--batch-size", "16",
            "--eval-samples", "100", "--no-progress", "--threads", "1", "--dtype", "float64", "--out", str(tmp_path / "ddp")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fastgan", "train", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = ckpt.load(tmp_path / "ddp" / "checkpoint.pt")
    one = Trainer(preset(algo, gp_weight=10.0, steps=3, width=16, depth=2, batch_size=16, eval_samples=100, progress=False, dtype="float64"))
    one.fit()
    for name, model in (("G", one.G), ("D", one.D)):
        for k, v in model.state_dict().items():
            torch.testing.assert_close(two[name][k], v, rtol=0, atol=1e-10, msg=f"{name}.{k}")


@pytest.mark.parametrize("algo", sorted(fastgan.train.presets.TOY_RECIPES))
@pytest.mark.parametrize("data", ["grid25", "ring8", "swissroll"])
def test_toy_recipes_keep_the_papers_algorithm(algo, data):
    cfg, paper = preset(algo, data=data), preset(algo, data=data, paper_defaults=True)
    for knob, value in fastgan.train.presets.TOY_RECIPES[algo].items():
        assert getattr(cfg, knob) == value, knob
    # loss, regulariser and optimizer family are the paper's
    for knob in ("loss", "g_loss", "optimizer", "spectral_norm", "pack"):
        assert getattr(cfg, knob) == getattr(paper, knob), knob
    assert (cfg.gp_weight > 0) == (paper.gp_weight > 0) and (cfg.clip is None) == (paper.clip is None)
    assert preset(algo, data=data, n_critic=3).n_critic == 3  # overrides win over the recipe
    assert preset("fgan-kl", data=data) == preset("fgan-kl", data=data, paper_defaults=True)


def test_normalize_scales_the_data_for_the_models_and_back():
    trainer = Trainer(_tiny("wgan-gp", normalize=True))
    data = trainer.data
    x = data.sample(200_000, generator=torch.Generator().manual_seed(5)).double()
    assert trainer.scale == pytest.approx(float(x.var(dim=0).mean().sqrt()), rel=5e-3)
    assert trainer.scale == pytest.approx(math.sqrt(8 + 0.05**2), rel=1e-12)  # grid25: coordinates -4..4
    state = data.generator.get_state()
    real = trainer._real()
    data.generator.set_state(state)
    torch.testing.assert_close(real * trainer.scale, data.sample(trainer.cfg.batch_size))
    z = torch.randn(7, trainer.latent_dim)
    torch.testing.assert_close(trainer.sampler()(z), trainer.G_ema(z) * trainer.scale)
    assert Trainer(_tiny("wgan-gp", normalize=False)).scale == 1.0
    assert Trainer(_tiny("wgan-gp", data="digits32", model="dcgan", critic_norm="layer", normalize=True, width=8, latent_dim=4,
                          batch_size=4)).scale == 1.0


def test_linear_decay_reaches_zero_at_the_last_step():
    trainer = Trainer(_tiny("wgan-gp", steps=8, lr=1e-3, lr_g=4e-4, lr_decay="linear"))
    for k in range(8):
        trainer.train_steps(1)
        assert trainer.opt_D.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - k / 8), rel=1e-12)
        assert trainer.opt_G.param_groups[0]["lr"] == pytest.approx(4e-4 * (1 - k / 8), rel=1e-12)
    with pytest.raises(ValueError, match="lr_decay"):
        Trainer(_tiny("wgan-gp", lr_decay="cosine"))


def test_quality_checks_do_not_shift_the_training():
    a, b = Trainer(_tiny("wgan-gp", seed=2)), Trainer(_tiny("wgan-gp", seed=2))
    for _ in range(3):
        a.train_steps(2)
        b.train_steps(2)
        mm = b.mode_quality(300)
        assert 0 <= mm["modes_covered"] <= 25 and mm["high_quality_pct"] == 100 * mm["high_quality_fraction"]
    pa, pb = _params(a), _params(b)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert a.history == b.history and len(a.history["step"]) == 6
    assert b.mode_quality(300, seed=1)["mode_counts"].tolist() == b.mode_quality(300, seed=1)["mode_counts"].tolist()
    with pytest.raises(ValueError, match="mixture"):
        Trainer(_tiny("wgan-gp", data="swissroll")).mode_quality(10)


@pytest.mark.parametrize("algo", ["gan", "wgan", "wgan-gp", "sngan", "lsgan", "fgan-kl"])
@pytest.mark.parametrize("pack", [1, 2])
def test_minibatch_statistic_sees_real_and_fake_batches_apart(algo, pack):
    """ProGAN / StyleGAN: the minibatch std of a critic call is over real-only or fake-only rows."""
    data = torch.randn(64, 2) + 7.0
    trainer = Trainer(_tiny(algo, minibatch_std=True, pack=pack, normalize=False), data=TensorData(data))
    assert trainer._mlp_critic is None  # the statistic rules out the fused MLP path
    seen: list[torch.Tensor] = []
    stats = [m for m in trainer.D.modules() if isinstance(m, fastgan.train.models.MinibatchStd)]
    assert len(stats) == 1
    trainer.D.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    trainer.train_steps(3)
    kinds = set()
    for x in seen:
        assert x.shape[0] == trainer.cfg.batch_size  # one batch per call, never [real; fake]
        is_real = (x[:, None, :] == data[None]).all(-1).any(-1)  # rows drawn from the data set
        assert bool(is_real.all()) or not bool(is_real.any()), "a critic call mixed real and other rows"
        kinds.add("real" if bool(is_real.all()) else "other")
    assert kinds == {"real", "other"}
    with pytest.raises(ValueError, match="arrangement='pair'"):
        fastgan.wgan_gp_critic_loss(trainer.D, data[:4], data[4:8], arrangement="pair")


def test_resume_keeps_the_partial_log_window(tmp_path, monkeypatch):
    # A run killed after a checkpoint that falls inside a log window resumes to the same history.
    kw = dict(steps=6, log_every=3, checkpoint_every=2, n_critic=2)
    full = Trainer(_tiny("wgan-gp", **kw))
    full.fit()
    first = Trainer(_tiny("wgan-gp", **kw), out=tmp_path)
    real_iteration = first._iteration

    def killed_after_step_4() -> None:
        if first.step == 4:
            raise KeyboardInterrupt
        real_iteration()

    monkeypatch.setattr(first, "_iteration", killed_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert ckpt.load(tmp_path / "checkpoint.pt")["step"] == 4
    resumed = Trainer(_tiny("wgan-gp", **kw), out=tmp_path)
    resumed.fit(resume=True)
    assert full.history["step"] == resumed.history["step"] == [3, 6]
    assert full.history == resumed.history


def test_resume_runs_with_the_new_learning_rate(tmp_path):
    Trainer(_tiny("wgan-gp", steps=2, lr=1e-3), out=tmp_path).fit()
    resumed = Trainer(_tiny("wgan-gp", steps=4, lr=1e-2, betas=(0.3, 0.8)), out=tmp_path)
    with pytest.warns(UserWarning, match=r"lr 0.001 -> 0.01.*betas"):
        resumed.resume()
    for opt in (resumed.opt_D, resumed.opt_G):
        for group in opt.param_groups:
            assert group["betas"] == (0.3, 0.8)
    resumed.fit(resume=False)
    scale = 1 - 3 / 4  # linear decay (the 2-D recipe) at the last step's start
    assert resumed.opt_D.param_groups[0]["lr"] == pytest.approx(1e-2 * scale)
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 1e-2


def test_training_restores_the_callers_thread_count():
    before = torch.get_num_threads()  # 1, from the autouse fixture
    seen = []
    trainer = Trainer(_tiny("wgan-gp", threads=2))
    real_iteration = trainer._iteration
    trainer._iteration = lambda: (seen.append(torch.get_num_threads()), real_iteration())
    trainer.train_steps(1)
    trainer.fit(steps=2)
    assert seen == [2, 2] and torch.get_num_threads() == before


def test_resume_with_other_steps_says_how_the_linear_decay_moves(tmp_path):
    Trainer(_tiny("wgan-gp", steps=4, lr=1e-3, lr_decay="linear"), out=tmp_path).fit(steps=2)
    resumed = Trainer(_tiny("wgan-gp", steps=8, lr=1e-3, lr_decay="linear"), out=tmp_path)
    # at step 2 the rates were 1 - 2/4 = 0.5 of lr; with the end at step 8 they are 1 - 2/8 = 0.75
    with pytest.warns(UserWarning, match=r"steps 4 -> 8: the linear decay now ends at step 8, so at step 2 the rates go from 0.5 to 0.75"):
        resumed.resume()
    assert resumed.opt_D.param_groups[0]["lr"] == pytest.approx(0.75e-3, rel=1e-12)
    same = Trainer(_tiny("wgan-gp", steps=4, lr=1e-3, lr_decay="linear"), out=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same schedule: nothing to say
        same.resume()


def test_a_run_without_matplotlib_warns_first_and_writes_its_metrics(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    trainer = Trainer(_tiny("gan", steps=2, sample_every=1), out=tmp_path)
    first_step = []
    real_iteration = trainer._iteration
    trainer._iteration = lambda: (first_step.append(len(caught)), real_iteration())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = trainer.fit()
    assert first_step[0] == 1 and "matplotlib is not installed" in str(caught[0].message) and "fastgan[plot]" in str(caught[0].message)
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == metrics["steps"] == 2
    assert (tmp_path / "checkpoint.pt").exists() and not list(tmp_path.glob("*.png"))
    from fastgan.train.cli import main

    with pytest.raises(SystemExit, match=r"needs matplotlib.*--out FILE.pt"):
        main(["sample", "--run", str(tmp_path), "-n", "10"])
    assert main(["sample", "--run", str(tmp_path), "-n", "10", "--out", str(tmp_path / "s.pt")]) == 0


def test_readme_torchrun_command_runs_from_the_checkout(tmp_path):
    """The README's torchrun line, run where the README is (the source checkout), trains.

    ``--no-python fastgan`` starts the installed command, whose imports do not see the
    checkout's own ``fastgan/`` (unbuilt in a regular install).
    """
    root = Path(__file__).resolve().parents[1]
    line = next(l for l in (root / "README.md").read_text().splitlines() if l.startswith("torchrun "))
    cmd = line.split("#")[0].split()
    assert cmd[:5] == ["torchrun", "--nproc_per_node", "2", "--no-python", "fastgan"], cmd
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "torchrun").exists() or not (bin_dir / "fastgan").exists():
        pytest.skip("torchrun / fastgan are not installed beside this Python")
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("PYTHONPATH", None)
    short = ["--steps", "2", "--width", "16", "--batch-size", "16", "--eval-samples", "100", "--no-progress",
             "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd + short, capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["steps"] == 2

"""The trainer's step knobs: ``gp_batch`` (the penalty on fewer interpolates) and
``share_fake`` (one generator forward per iteration), each against autograd by hand."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from fastgan.train import Trainer, preset
from fastgan.train import trainer as trainer_module

TINY = dict(width=16, depth=2, batch_size=16, log_every=1, checkpoint_every=1, eval_samples=200, progress=False, dtype="float64")

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(algo: str, **kw):
    return preset(algo, **{**TINY, **kw})


def _recording_interpolate(monkeypatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    original = trainer_module.interpolate

    def record(real, fake, eps, **kw):
        out = original(real, fake, eps, **kw)
        seen.append(out.detach().clone())
        return out

    monkeypatch.setattr(trainer_module, "interpolate", record)
    return seen


def _penalty_by_hand(critic: torch.nn.Module, x_hat: torch.Tensor, weight: float) -> torch.Tensor:
    x = x_hat.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x)
    return weight * ((g.reshape(len(g), -1).norm(dim=1) - 1) ** 2).mean()


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("gp_batch", [4, 16])
def test_gp_batch_takes_the_penalty_over_that_many_interpolates(monkeypatch, backend, gp_batch):
    seen = _recording_interpolate(monkeypatch)
    trainer = Trainer(_tiny("wgan-gp", gp_batch=gp_batch, backend=backend, seed=int(torch.randint(1000, ()))))
    before = copy.deepcopy(trainer.D)
    _, _, penalty = trainer._critic_step()
    (x_hat,) = seen
    assert x_hat.shape == (gp_batch, 2)
    torch.testing.assert_close(penalty, _penalty_by_hand(before, x_hat, trainer.cfg.gp_weight), rtol=1e-10, atol=1e-12)


def test_gp_batch_on_an_image_critic(monkeypatch):
    pytest.importorskip("sklearn")
    seen = _recording_interpolate(monkeypatch)
    trainer = Trainer(_tiny("wgan-gp", data="digits", width=8, gp_batch=8, latent_dim=8))
    before = copy.deepcopy(trainer.D)
    _, _, penalty = trainer._critic_step()
    (x_hat,) = seen
    assert x_hat.shape == (8, 1, 8, 8)
    torch.testing.assert_close(penalty, _penalty_by_hand(before, x_hat, trainer.cfg.gp_weight), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(gp_batch=17), dict(gp_batch=-1), dict(gp_batch=3, pack=2)])
def test_gp_batch_checks(kw):
    with pytest.raises(ValueError, match="gp_batch"):
        Trainer(_tiny("wgan-gp", **kw))


def _forward_counter(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("algo,data", [("wgan-gp", "grid25"), ("gan", "grid25"), ("sngan", "digits")])
def test_share_fake_updates_the_generator_from_the_critic_steps_batch(algo, data):
    if data == "digits":
        pytest.importorskip("sklearn")
    extra = dict(width=8, latent_dim=8) if data == "digits" else {}
    trainer = Trainer(_tiny(algo, data=data, share_fake=True, n_critic=2, seed=int(torch.randint(1000, ())), **extra))
    latents: list[torch.Tensor] = []
    latent = trainer._latent
    trainer._latent = lambda: latents.append(latent()) or latents[-1]
    calls = _forward_counter(trainer.G)
    trainer._set_learning_rates()
    trainer._critic_step(share=False)
    trainer._critic_step(share=True)
    g0, d1 = copy.deepcopy(trainer.G), copy.deepcopy(trainer.D)  # the generator before, the critic after its update
    trainer._generator_step()
    assert calls[0] == 2 and len(latents) == 2  # one forward per critic step, none of its own in the generator step
    loss = trainer.generator_loss.generator(d1(g0(latents[-1])), None)
    expected = torch.autograd.grad(loss, list(g0.parameters()))
    for p, e in zip(trainer.G.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-10, atol=1e-12)


def test_share_fake_off_draws_a_new_batch():
    trainer = Trainer(_tiny("wgan-gp"))
    calls = _forward_counter(trainer.G)
    trainer._iteration()
    assert calls[0] == 2


def test_cli_flags_set_the_knobs(tmp_path):
    from fastgan.train.cli import main

    common = ["train", "--algo", "wgan-gp", "--data", "ring8", "--steps", "1", "--width", "16", "--batch-size", "16",
              "--eval-samples", "100", "--no-progress"]
    assert main([*common, "--gp-batch", "8", "--share-fake", "--out", str(tmp_path / "a")]) == 0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (cfg["gp_batch"], cfg["share_fake"]) == (8, True)
    assert preset("wgan-gp", data="mnist").share_fake  # the image recipe has it on, and --no-share-fake turns it off
    assert main([*common, "--no-share-fake", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["share_fake"] is False
    assert cfg["generator_step_dropout"] is False  # the default: the generator's step scores with the critic's mean network
    assert main([*common, "--generator-step-dropout", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "config.json").read_text())["generator_step_dropout"] is True
    assert cfg["bf16"] is False  # the 2-D recipes run in float32; --bf16 / --no-bf16 set it
    assert main([*common, "--bf16", "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "config.json").read_text())["bf16"] is True
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["bf16"] is True

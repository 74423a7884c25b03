"""Training on images: the small models, the image recipes, the image scores of a run, the command line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import fastgan
from fastgan.train import Trainer, preset
from fastgan.train.models import build_models, small_critic, small_generator
from fastgan.train.presets import IMAGE_RECIPES

TINY = dict(width=4, batch_size=8, latent_dim=8, log_every=1, checkpoint_every=1, eval_samples=300, w1_batch=16,
            progress=False, n_critic=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (12, 3), (32, 1)])
def test_small_models_shapes_and_layers(size, channels):
    g, d = build_models("dcgan-small", (channels, size, size), latent_dim=6, width=5)
    x = g(torch.randn(4, 6))
    assert x.shape == (4, channels, size, size) and bool((x.abs() <= 1).all())  # tanh output
    assert d(x).shape == (4,)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [(channels, 5, (2, 2)), (5, 10, (2, 2))]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())
    lin = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert lin[-1].in_features == 10 * (size // 4) ** 2
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in small_generator(6, size, channels, 5, batchnorm=False).modules())
    _, packed = build_models("dcgan-small", (channels, size, size), latent_dim=6, width=5, pack=2)
    assert packed(torch.randn(4, channels, size, size)).shape == (2,)
    assert small_critic(size, channels, 5, minibatch_std=True)(x).shape == (4,)


def test_small_critic_takes_the_configured_normalisation():
    """`critic_norm` reaches the dcgan-small critic (DCGAN: after every convolution but the first)."""
    for norm, kind in (("batch", nn.BatchNorm2d), ("layer", nn.LayerNorm)):
        _, d = build_models("dcgan-small", (1, 28, 28), latent_dim=6, width=5, critic_norm=norm)
        found = [m for m in d.modules() if isinstance(m, kind)]
        assert len(found) == 1 and type(d[3]) is kind  # conv, act, conv, norm
        convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
        assert convs[0].bias is not None and convs[1].bias is None
        assert d.train()(torch.randn(4, 1, 28, 28)).shape == (4,)
    with pytest.raises(ValueError, match="unknown normalisation"):
        build_models("dcgan-small", (1, 28, 28), latent_dim=6, width=5, critic_norm="group")
    with pytest.raises(ValueError, match="must not use BatchNorm"):
        _digits(critic_norm="batch")


def test_critic_convs_add_3x3_layers_at_the_last_resolution():
    """`critic_convs` adds Conv 3x3 stride 1 (2 width -> 2 width) + LeakyReLU after the strided convolutions,
    normalised like them; spectral norm then covers every one; other models and bad counts are refused."""
    x = torch.randn(5, 1, 28, 28)
    for norm, kind in (("none", None), ("layer", nn.LayerNorm)):
        _, d = build_models("dcgan-small", (1, 28, 28), latent_dim=6, width=5, critic_norm=norm, critic_convs=2)
        convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
        assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs[2:]] == [(10, 10, (3, 3), (1, 1))] * 2
        assert all((c.bias is None) == (norm != "none") for c in convs[1:])
        assert sum(isinstance(m, nn.LeakyReLU) for m in d.modules()) == 4
        if kind is not None:
            assert sum(isinstance(m, kind) for m in d.modules()) == 3
        # the extra layers keep the (2 width, 7, 7) features the linear layer reads
        assert d[: len(d) - 3](x).shape == (5, 10, 7, 7) and d(x).shape == (5,)
    _, packed = build_models("dcgan-small", (1, 28, 28), latent_dim=6, width=5, pack=2, critic_convs=1)
    assert packed(x[:4]).shape == (2,) and sum(isinstance(m, nn.Conv2d) for m in packed.modules()) == 3
    trainer = Trainer(preset("sngan", data="digits", **{**TINY, "critic_convs": 1, "steps": 2}))
    convs = [m for m in trainer.D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(hasattr(c, "parametrizations") for c in convs)
    trainer.fit()
    assert trainer.step == 2
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="critic_convs"):
            Trainer(preset("sngan", data="digits", **{**TINY, "critic_convs": bad}))
    # the DCGAN critic takes them at its 4x4 features, before its last convolution (the MNIST recipe at --image-size 64)
    _, big = build_models("dcgan", (1, 64, 64), latent_dim=6, width=4, critic_norm="layer", critic_convs=1)
    convs = [m for m in big.modules() if isinstance(m, nn.Conv2d)]
    assert (convs[-2].in_channels, convs[-2].out_channels, convs[-2].kernel_size) == (32, 32, (3, 3)) and convs[-1].kernel_size == (4, 4)
    assert big(torch.randn(3, 1, 64, 64)).shape == (3,)
    t = Trainer(preset("sngan", data="mnist", image_size=64, **TINY))
    assert t.cfg.critic_convs == 1 and sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in t.D.modules()) == 1
    with pytest.raises(ValueError, match="critic-convs 0"):
        build_models("resnet", (1, 32, 32), latent_dim=6, width=8, critic_convs=1)
    with pytest.raises(ValueError, match="convs"):
        small_critic(28, 1, 5, convs=-2)


def test_critic_dropout_follows_every_leaky_relu_in_train_mode_only():
    """`critic_dropout` puts nn.Dropout(p) after each LeakyReLU of the dcgan-small and dcgan critics
    (the extra 3x3 layers' too): scores vary between train-mode calls, eval mode is the same network
    without it; 0 adds nothing; other models and bad probabilities are refused."""
    x = torch.randn(6, 1, 28, 28)
    torch.manual_seed(0)
    _, d = build_models("dcgan-small", (1, 28, 28), latent_dim=6, width=5, critic_convs=1, critic_dropout=0.4)
    kinds = [type(m) for m in d]
    relus = [i for i, k in enumerate(kinds) if k is nn.LeakyReLU]
    assert len(relus) == 3 and all(kinds[i + 1] is nn.Dropout and d[i + 1].p == 0.4 for i in relus)
    torch.manual_seed(0)
    _, plain = build_models("dcgan-small", (1, 28, 28), latent_dim=6, width=5, critic_convs=1)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    # eval mode: the same scores as the critic without dropout (same weights: same seed, same layers)
    d.eval()
    torch.testing.assert_close(d(x), plain(x), rtol=0, atol=0)
    d.train()
    assert not torch.equal(d(x), d(x))
    # the dropout actually zeroes features: about p of the first LeakyReLU's outputs
    h = d[: relus[0] + 2](x)
    zeros = (h == 0).float().mean().item()
    assert 0.3 < zeros < 0.5
    _, big = build_models("dcgan", (1, 32, 32), latent_dim=6, width=4, critic_norm="layer", critic_convs=1, critic_dropout=0.2)
    assert sum(isinstance(m, nn.Dropout) for m in big.modules()) == sum(isinstance(m, nn.LeakyReLU) for m in big.modules()) == 4
    t = Trainer(preset("gan", data="digits", **{**TINY, "critic_dropout": 0.3, "steps": 2}))
    assert sum(isinstance(m, nn.Dropout) for m in t.D.modules()) == 2
    t.fit()
    assert t.step == 2
    for bad in (-0.1, 1.0, True, "0.3"):
        with pytest.raises(ValueError, match="critic_dropout"):
            Trainer(preset("gan", data="digits", **{**TINY, "critic_dropout": bad}))
        with pytest.raises(ValueError, match="dropout"):
            small_critic(28, 1, 5, dropout=bad)
    with pytest.raises(ValueError, match="critic_dropout"):
        build_models("sngan-cnn", (1, 32, 32), latent_dim=6, width=8, critic_dropout=0.3)


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("generator_step_dropout", [False, True])
def test_the_generator_step_scores_with_the_critics_mean_network(backend, generator_step_dropout):
    """With `critic_dropout`, the critic's step always drops features; the generator's step scores
    its batch with the critic's mean network (dropout off: the scores equal the critic in eval mode
    on the same batch) unless `generator_step_dropout`; the layers are back in train mode after."""
    torch.manual_seed(3)
    t = Trainer(preset("gan", data="digits", **{**TINY, "critic_dropout": 0.5, "steps": 3, "backend": backend,
                                                  "generator_step_dropout": generator_step_dropout}))
    drops = [m for m in t.D.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2
    calls, inside = [], []

    def hook(module, inputs, output):
        if inside:  # the hook's own call of the mean network
            return
        generator_step = not next(module.parameters()).requires_grad  # the critic is frozen in the generator's step
        modes = [m.training for m in drops]
        every = [(m, m.training) for m in module.modules()]
        inside.append(True)
        module.eval()
        with torch.no_grad():
            mean_network = module(inputs[0])
        for m, mode in every:
            m.train(mode)
        inside.clear()
        calls.append((generator_step, modes, output.detach(), mean_network))

    handle = t.D.register_forward_hook(hook)
    t.train_steps(3)
    handle.remove()
    assert [g for g, *_ in calls] == [False, True] * 3
    assert all(m.training for m in drops)
    for generator_step, modes, scores, mean_network in calls:
        assert modes == [not generator_step or generator_step_dropout] * 2
        if generator_step and not generator_step_dropout:
            torch.testing.assert_close(scores, mean_network, rtol=0, atol=0)
        else:  # half the features dropped: other scores
            assert not torch.allclose(scores, mean_network)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_bf16_autocast_on_the_cpu_runs_the_models_in_bf16_and_the_rest_in_float32(backend):
    """`bf16` on the CPU: every convolution and linear layer of both models (fastgan's one-channel
    layers included) runs in bfloat16 in both steps, while the parameters, the optimizer, the
    losses and the samples stay float32; the first step's losses match a float32 run's from the
    same weights to bfloat16's precision."""
    runs = {}
    for bf16 in (False, True):
        torch.manual_seed(4)
        t = Trainer(preset("gan", data="digits", **{**TINY, "width": 8, "batch_size": 32, "critic_dropout": 0.3,
                                                      "critic_convs": 1, "steps": 2, "backend": backend, "bf16": bf16}))
        assert t.bf16 is bf16
        layers = [m for m in (*t.G.modules(), *t.D.modules()) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        if backend == "auto":
            assert {"SingleChannelConv2d", "SingleChannelConvTranspose2d"} <= {type(m).__name__ for m in layers}
        dtypes: list[torch.dtype] = []
        hooks = [m.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype)) for m in layers]
        start = [p.detach().clone() for p in (*t.G.parameters(), *t.D.parameters())]
        t.train_steps(2)
        for h in hooks:
            h.remove()
        assert len(dtypes) == 4 * len(layers)  # each model in both steps, two steps
        assert set(dtypes) == {torch.bfloat16 if bf16 else torch.float32}
        params = [p.detach() for p in (*t.G.parameters(), *t.D.parameters())]
        assert all(p.dtype == torch.float32 and bool(p.isfinite().all()) for p in params)
        assert all(not torch.equal(a, b) for a, b in zip(start, params) if a.numel() > 1)
        assert t.sample(16).dtype == torch.float32
        runs[bf16] = t.history
    for key in ("d_loss", "g_loss"):
        torch.testing.assert_close(runs[True][key][0], runs[False][key][0], rtol=2e-2, atol=0)
        assert runs[True][key][0] != runs[False][key][0]


def test_bf16_auto_follows_the_devices_bf16_arithmetic(monkeypatch):
    """`bf16="auto"` turns autocast on where the CPU has AVX512-BF16 or AMX and off elsewhere;
    other values are named errors."""
    from fastgan.train.trainer import native_bf16

    for avx512_bf16, amx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        native = avx512_bf16 or amx
        assert native_bf16("cpu") is native
        assert Trainer(preset("gan", data="digits", **{**TINY, "bf16": "auto"})).bf16 is native
        assert Trainer(preset("gan", data="digits", **{**TINY, "bf16": False})).bf16 is False
    assert native_bf16("meta") is False
    for bad in ("yes", 1.0, 2):
        with pytest.raises(ValueError, match="bf16"):
            Trainer(preset("gan", data="digits", **{**TINY, "bf16": bad}))


@pytest.mark.parametrize("size", [0, 6, 30, 2.0])
def test_small_models_refuse_sides_they_cannot_build(size):
    with pytest.raises(ValueError, match="multiple of 4"):
        small_generator(4, size)
    with pytest.raises(ValueError, match="multiple of 4"):
        small_critic(size)


def _digits(**kw):
    return Trainer(preset("wgan-gp", data="digits", **{**TINY, **kw}))


def test_auto_model_follows_the_image_size():
    assert isinstance(_digits().G[0], nn.Linear) and _digits().D[0].in_channels == 1  # dcgan-small at 8x8
    assert _digits().sample(3).shape == (3, 1, 8, 8)
    big = Trainer(preset("wgan-gp", data="digits", image_size=64, **TINY))
    assert isinstance(big.G[1], nn.ConvTranspose2d) and big.sample(2).shape == (2, 1, 64, 64)  # DCGAN


@pytest.mark.parametrize("algo", ["gan", "wgan-gp", "sngan"])
@pytest.mark.parametrize("data", ["mnist", "digits"])
def test_image_recipes_keep_the_papers_algorithm(algo, data):
    cfg, paper = preset(algo, data=data), preset(algo, data=data, paper_defaults=True)
    for knob, value in IMAGE_RECIPES[data][algo].items():
        assert getattr(cfg, knob) == value, knob
    for knob in ("loss", "g_loss", "optimizer", "spectral_norm", "clip", "gp_weight"):
        assert getattr(cfg, knob) == getattr(paper, knob), knob
    plain = preset(algo, paper_defaults=True)
    assert (paper.n_critic, paper.lr, paper.ema) == (plain.n_critic, plain.lr, 0.0)
    assert preset(algo, data=data, n_critic=3).n_critic == 3  # overrides win over the recipe


def test_trainer_and_command_line_pick_the_same_configuration(monkeypatch, tmp_path):
    from fastgan.train import cli

    class Built(Exception):
        pass

    def capture(cfg, out=None):
        raise Built(cfg)

    for algo, data in (("wgan-gp", "mnist"), ("sngan", "digits"), ("gan", "digits32"), ("wgan-gp", "grid25")):
        with monkeypatch.context() as m:
            m.setattr("fastgan.train.trainer.Trainer", capture)
            with pytest.raises(Built) as built:
                cli.main(["train", "--algo", algo, "--data", data, "--out", str(tmp_path / "unused"), "--no-progress"])
        from_cli = built.value.args[0]
        expected = preset(algo, data=data)
        assert from_cli.replace(progress=True, threads=expected.threads) == expected, (algo, data)
        from_api = Trainer.__init__  # the Python API: Trainer(algo=..., data=...) builds preset(algo, data=data)
        seen = {}
        with monkeypatch.context() as m:
            m.setattr(Trainer, "_check", staticmethod(lambda cfg: (seen.setdefault("cfg", cfg), (_ for _ in ()).throw(Built()))))
            with pytest.raises(Built):
                from_api(Trainer.__new__(Trainer), algo=algo, data=data)
        assert seen["cfg"] == expected, (algo, data)


def test_image_run_reports_scores_with_the_floor(tmp_path):
    trainer = _digits(steps=4, w1_every=2)
    trainer.out = tmp_path
    metrics = trainer.fit()
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("classes_at_5pct", "confident_pct", "real_confident_pct", "frechet_distance", "frechet_floor", "fd_over_floor",
                "meets_image_bar", "class_shares"):
        assert key in metrics and key in on_disk, key
    assert metrics["fd_over_floor"] == pytest.approx(metrics["frechet_distance"] / metrics["frechet_floor"])
    assert sum(metrics["class_shares"]) == pytest.approx(1.0, abs=1e-3) and len(metrics["class_shares"]) == 10
    assert metrics["meets_image_bar"] is False  # 4 steps of a 4-channel model have learned nothing
    assert len(trainer.w1_history["fd_over_floor"]) == 2 and len(trainer.w1_history["confident_pct"]) == 2
    # the scores are those of the generator's raw samples, against the data's own classifier
    scorer = trainer.scorer()
    fake = trainer.sample(trainer.cfg.eval_samples)
    assert scorer.scores(fake)["frechet_distance"] == pytest.approx(metrics["frechet_distance"], rel=1e-9)
    probs = fastgan.metrics.digits_classifier().probabilities(((fake + 1) / 2).clamp(0, 1))
    expected = torch.bincount(probs.argmax(1), minlength=10).double() / len(fake)
    torch.testing.assert_close(torch.tensor(metrics["class_shares"], dtype=torch.float64), expected, atol=1e-4, rtol=0)


def test_image_quality_of_real_images_meets_the_bar():
    """A generator that returns real digits passes the bar; one that returns a single digit does not."""
    trainer = _digits()
    real = trainer.data.samples

    class Lookup(nn.Module):
        def __init__(self, images):
            super().__init__()
            self.images = images

        def forward(self, z):
            idx = (z[:, 0].abs() * 1e6).long() % len(self.images)
            return self.images[idx]

    trainer.G, trainer.G_ema = Lookup(real), None
    scores = trainer.image_quality(900, seed=3)
    assert scores["meets_bar"] and scores["classes_at_5pct"] == 10 and scores["fd_over_floor"] < 3
    trainer.G = Lookup(real[trainer.data.labels == 4])
    scores = trainer.image_quality(900, seed=3)
    assert not scores["meets_bar"] and scores["classes_at_5pct"] == 1


def test_image_quality_refuses_unlabelled_data():
    trainer = Trainer(preset("gan", data=torch.rand(20, 1, 8, 8) * 2 - 1, **TINY))
    assert trainer.scorer() is None
    with pytest.raises(ValueError, match="labelled"):
        trainer.image_quality(10)


def test_cli_trains_digits_and_eval_gives_the_scores(tmp_path, capsys):
    from fastgan.train.cli import main

    run = tmp_path / "run"
    args = ["train", "--algo", "gan", "--data", "digits", "--out", str(run), "--steps", "3", "--width", "4",
            "--batch-size", "8", "--eval-samples", "300", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "fd_over_floor" in printed and "confident_pct" in printed
    assert main(["sample", "--run", str(run), "-n", "20", "--out", str(tmp_path / "s.pt")]) == 0
    assert torch.load(tmp_path / "s.pt", weights_only=True).shape == (20, 1, 8, 8)
    assert main(["eval", "--run", str(run), "-n", "300"]) == 0
    assert "fd_over_floor" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])

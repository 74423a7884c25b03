"""Generators and critics for the training loops.

* 2-D toys: :func:`mlp_generator`, :func:`mlp_critic`.
* Small images on a CPU (MNIST's 28x28, the 8x8 digits; any side divisible by 4):
  :func:`small_generator`, :func:`small_critic` (``model="dcgan-small"``), two strided
  (transposed) convolutions each, the shape of the WGAN-GP paper's MNIST models.
* Images: DCGAN (Radford et al.; seed 003's architecture) for 32x32 and 64x64
  (:func:`dcgan_generator`, :func:`dcgan_critic`; BatchNorm only where allowed),
  SN-GAN's standard CNN (:func:`sngan_cnn_critic`, :func:`sngan_cnn_generator`) and a
  small ResNet for 32x32 (:func:`resnet_generator`, :func:`resnet_critic`).

Critics return one raw score per sample, shape (N,) (no sigmoid unless asked for:
the losses work on logits).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from fastgan.nn.modules import Flat

__all__ = [
    "MinibatchStd",
    "Pack",
    "mlp_generator",
    "mlp_critic",
    "small_generator",
    "small_critic",
    "dcgan_generator",
    "dcgan_critic",
    "sngan_cnn_generator",
    "sngan_cnn_critic",
    "resnet_generator",
    "resnet_critic",
    "build_models",
]


class MinibatchStd(nn.Module):
    """Appends the batch's mean standard deviation as one extra feature (Karras et al., ProGAN).

    Works on (N, F) features (adds one column) and (N, C, H, W) maps (adds one channel).
    The statistic couples the samples of a batch, so a critic with it must see real and
    fake samples in separate calls (``couples_batch``; see ``fastgan.penalty.couples_samples``).
    """

    couples_batch = True

    def forward(self, x: Tensor) -> Tensor:
        std = x.float().std(dim=0, unbiased=False).mean().to(x.dtype) if x.shape[0] > 1 else x.new_zeros(())
        extra = std.expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([x, extra], dim=1)


class Pack(nn.Module):
    """PacGAN: the critic judges ``k`` samples at once, concatenated along features.

    (N, ...) -> (N / k, k * first dim, ...); N must be a multiple of k. The scores
    then are one per pack.
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = int(k)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] % self.k:
            raise ValueError(f"batch of {x.shape[0]} is not a multiple of `pack`={self.k}")
        return x.reshape(x.shape[0] // self.k, self.k * x.shape[1], *x.shape[2:])


def _act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "lrelu":
        return nn.LeakyReLU(0.2)
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown activation {name!r}: expected relu, lrelu or tanh")


def mlp_generator(latent_dim: int = 2, out_features: int = 2, width: int = 256, depth: int = 3, act: str = "relu") -> nn.Sequential:
    """An MLP generator: ``depth`` hidden layers of ``width`` units, linear output."""
    layers: list[nn.Module] = []
    d = latent_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), _act(act)]
        d = width
    layers.append(nn.Linear(d, out_features))
    return nn.Sequential(*layers)


def mlp_critic(
    in_features: int = 2,
    width: int = 256,
    depth: int = 3,
    act: str = "lrelu",
    *,
    sigmoid: bool = False,
    pack: int = 1,
    minibatch_std: bool = False,
) -> nn.Sequential:
    """An MLP critic with one score per sample (or per pack with ``pack`` > 1)."""
    layers: list[nn.Module] = []
    d = in_features
    if pack > 1:
        layers.append(Pack(pack))
        d *= pack
    for i in range(depth):
        if minibatch_std and i == depth - 1:
            layers.append(MinibatchStd())
            d += 1
        layers += [nn.Linear(d, width), _act(act)]
        d = width
    layers += [nn.Linear(d, 1), Flat()]
    if sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def _norm2d(kind: str, channels: int, size: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    if kind == "layer":
        return [nn.LayerNorm([channels, size, size])]
    if kind == "none":
        return []
    raise ValueError(f"unknown normalisation {kind!r}: expected batch, layer or none")


def _small_base(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 4 or size % 4:
        raise ValueError(f"the dcgan-small models take images whose side is a multiple of 4, got {size!r}")
    return size // 4


def small_generator(latent_dim: int = 64, size: int = 28, channels: int = 1, width: int = 32, *, batchnorm: bool = True) -> nn.Sequential:
    """A DCGAN-style generator for small images, fast on a CPU.

    z (N, latent_dim) -> Linear -> (2 width, s/4, s/4) -> ConvTranspose 4x4 stride 2 ->
    (width, s/2, s/2) -> ConvTranspose 4x4 stride 2 -> (channels, s, s), tanh output in
    [-1, 1]; ReLU (after BatchNorm when ``batchnorm``) between layers. At s = 28 this is the
    WGAN-GP paper's MNIST generator with 4x4 kernels; the side ``size`` is any multiple of 4.
    """
    b = _small_base(size)
    c = 2 * width

    def norm(n: int, d: int) -> list[nn.Module]:
        return [nn.BatchNorm1d(n) if d == 1 else nn.BatchNorm2d(n)] if batchnorm else []

    return nn.Sequential(
        nn.Linear(latent_dim, c * b * b, bias=not batchnorm), *norm(c * b * b, 1), nn.ReLU(True),
        nn.Unflatten(1, (c, b, b)),
        nn.ConvTranspose2d(c, width, 4, 2, 1, bias=not batchnorm), *norm(width, 2), nn.ReLU(True),
        nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh(),
    )


def small_critic(
    size: int = 28,
    channels: int = 1,
    width: int = 32,
    *,
    norm: str = "none",
    sigmoid: bool = False,
    minibatch_std: bool = False,
    convs: int = 0,
    dropout: float = 0.0,
) -> nn.Sequential:
    """A DCGAN-style critic for small images: two Conv 4x4 stride 2 + LeakyReLU 0.2, then Linear to one score.

    (N, channels, s, s) -> (N, width, s/2, s/2) -> (N, 2 width, s/4, s/4) -> (N,).
    ``norm``: "none" (the default: every gradient-penalty and spectral-norm critic can
    use it), or "batch" / "layer" after the second convolution (and the extra ones), as
    DCGAN's discriminator normalises every layer but the first. ``convs``: that many more
    Conv 3x3 stride 1 + LeakyReLU layers at s/4 (2 width channels), as SN-GAN's standard
    CNN puts a 3x3 convolution after each strided one; under spectral norm, where every
    layer is 1-Lipschitz, depth rather than width is what adds to the critic. ``dropout``:
    p > 0 puts ``nn.Dropout(p)`` after every LeakyReLU (the original GAN's regulariser of
    its discriminator; active in train mode only).
    """
    b = _small_base(size)
    c = 2 * width
    drop = _dropout(dropout)
    layers: list[nn.Module] = [
        nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2), *drop(),
        nn.Conv2d(width, c, 4, 2, 1, bias=norm == "none"), *_norm2d(norm, c, b), nn.LeakyReLU(0.2), *drop(),
        *_extra_convs(convs, c, b, norm, drop),
    ]
    if minibatch_std:
        layers.append(MinibatchStd())
        c += 1
    layers += [nn.Flatten(), nn.Linear(c * b * b, 1), Flat()]
    if sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def dcgan_generator(latent_dim: int = 100, size: int = 32, channels: int = 3, width: int = 64) -> nn.Sequential:
    """DCGAN generator: ConvTranspose 4x4 stride 2 + BatchNorm + ReLU, tanh output; 32x32 or 64x64."""
    if size not in (32, 64):
        raise ValueError(f"`size` must be 32 or 64, got {size!r}")
    n_up = int(math.log2(size)) - 3  # from 4x4
    c = width * 2**n_up
    layers: list[nn.Module] = [
        nn.Unflatten(1, (latent_dim, 1, 1)),
        nn.ConvTranspose2d(latent_dim, c, 4, 1, 0, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(True),
    ]
    for _ in range(n_up):
        layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(True)]
        c //= 2
    layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def check_dropout(p: object, name: str = "dropout") -> None:
    """Refuses a dropout probability ``p`` (argument ``name``) that is not a number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"`{name}` (the critic's dropout probability) must be a number in [0, 1), got {p!r}")


def _dropout(p: float) -> Callable[[], list[nn.Module]]:
    """A maker of the critic's dropout layers: ``[nn.Dropout(p)]`` each call, or ``[]`` for p = 0."""
    check_dropout(p)
    return (lambda: [nn.Dropout(float(p))]) if p > 0 else (lambda: [])


def _extra_convs(convs: int, channels: int, size: int, norm: str, drop: Callable[[], list[nn.Module]] = lambda: []) -> list[nn.Module]:
    """``convs`` times Conv 3x3 stride 1 (``channels`` to ``channels``) + norm + LeakyReLU 0.2 (+ ``drop()``)."""
    if isinstance(convs, bool) or not isinstance(convs, int) or convs < 0:
        raise ValueError(f"`convs` (the critic's extra 3x3 convolutions) must be an int >= 0, got {convs!r}")
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=norm == "none"), *_norm2d(norm, channels, size), nn.LeakyReLU(0.2), *drop()]
    return layers


def dcgan_critic(
    size: int = 32,
    channels: int = 3,
    width: int = 64,
    *,
    norm: str = "batch",
    sigmoid: bool = False,
    minibatch_std: bool = False,
    convs: int = 0,
    dropout: float = 0.0,
) -> nn.Sequential:
    """DCGAN discriminator (seed 003): Conv 4x4 stride 2 + norm + LeakyReLU 0.2, 4x4 conv to one score.

    ``norm``: "batch" (DCGAN), "layer" or "none" (gradient-penalty critics must not use
    BatchNorm); ``sigmoid``: the original DCGAN's final sigmoid (off for losses on logits);
    ``convs``: that many Conv 3x3 stride 1 + norm + LeakyReLU layers at the 4x4 features,
    before the last convolution (see :func:`small_critic`); ``dropout``: ``nn.Dropout`` after
    every LeakyReLU (see :func:`small_critic`).
    """
    if size not in (32, 64):
        raise ValueError(f"`size` must be 32 or 64, got {size!r}")
    drop = _dropout(dropout)
    n_down = int(math.log2(size)) - 2
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True), *drop()]
    c, s = width, size // 2
    for _ in range(n_down - 1):
        layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=norm == "none"), *_norm2d(norm, 2 * c, s // 2), nn.LeakyReLU(0.2, True), *drop()]
        c, s = 2 * c, s // 2
    layers += _extra_convs(convs, c, s, norm, drop)
    if minibatch_std:
        layers.append(MinibatchStd())
        c += 1
    layers += [nn.Conv2d(c, 1, 4, 1, 0), Flat()]
    if sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def sngan_cnn_generator(latent_dim: int = 128, channels: int = 3) -> nn.Sequential:
    """SN-GAN's standard CNN generator for 32x32 (Miyato et al., Table 3a)."""
    return nn.Sequential(
        nn.Linear(latent_dim, 4 * 4 * 512),
        nn.Unflatten(1, (512, 4, 4)),
        nn.ConvTranspose2d(512, 256, 4, 2, 1), nn.BatchNorm2d(256), nn.ReLU(True),
        nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.ReLU(True),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(True),
        nn.Conv2d(64, channels, 3, 1, 1), nn.Tanh(),
    )


def sngan_cnn_critic(channels: int = 3, width: int = 64) -> nn.Sequential:
    """SN-GAN's standard CNN critic for 32x32 (Miyato et al., Table 3b), LeakyReLU 0.1."""
    w = width
    spec = [(channels, w, 3, 1), (w, w, 4, 2), (w, 2 * w, 3, 1), (2 * w, 2 * w, 4, 2),
            (2 * w, 4 * w, 3, 1), (4 * w, 4 * w, 4, 2), (4 * w, 8 * w, 3, 1)]
    layers: list[nn.Module] = []
    for c_in, c_out, k, stride in spec:
        layers += [nn.Conv2d(c_in, c_out, k, stride, 1), nn.LeakyReLU(0.1)]
    layers += [nn.Flatten(), nn.Linear(4 * 4 * 8 * w, 1), Flat()]
    return nn.Sequential(*layers)


class _ResBlock(nn.Module):
    """Pre-activation residual block, optional up- (generator) or down-sampling (critic)."""

    def __init__(self, c_in: int, c_out: int, *, up: bool = False, down: bool = False, bn: bool = False) -> None:
        super().__init__()
        self.up, self.down = up, down
        self.bn1 = nn.BatchNorm2d(c_in) if bn else nn.Identity()
        self.bn2 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or up or down) else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.bn1(x))
        s = x
        if self.up:
            h = nn.functional.interpolate(h, scale_factor=2)
            s = nn.functional.interpolate(s, scale_factor=2)
        h = self.conv2(self.act(self.bn2(self.conv1(h))))
        s = self.skip(s)
        if self.down:
            h = nn.functional.avg_pool2d(h, 2)
            s = nn.functional.avg_pool2d(s, 2)
        return h + s


def resnet_generator(latent_dim: int = 128, channels: int = 3, width: int = 128) -> nn.Sequential:
    """A small ResNet generator for 32x32 (SN-GAN's CIFAR ResNet, three up-blocks)."""
    return nn.Sequential(
        nn.Linear(latent_dim, 4 * 4 * width),
        nn.Unflatten(1, (width, 4, 4)),
        _ResBlock(width, width, up=True, bn=True),
        _ResBlock(width, width, up=True, bn=True),
        _ResBlock(width, width, up=True, bn=True),
        nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, channels, 3, 1, 1), nn.Tanh(),
    )


def resnet_critic(channels: int = 3, width: int = 128) -> nn.Sequential:
    """A small ResNet critic for 32x32 (two down-blocks, two plain blocks, global sum pooling)."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, 1, 1),
        _ResBlock(width, width, down=True),
        _ResBlock(width, width, down=True),
        _ResBlock(width, width),
        _ResBlock(width, width),
        nn.ReLU(),
        _SumPool(),
        nn.Linear(width, 1),
        Flat(),
    )


class _SumPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sum(dim=(2, 3))


MODEL_NAMES = ("mlp", "dcgan-small", "dcgan", "sngan-cnn", "resnet")


def build_models(
    model: str,
    shape: tuple[int, ...],
    *,
    latent_dim: int,
    width: int,
    depth: int = 3,
    critic_norm: str = "none",
    sigmoid: bool = False,
    pack: int = 1,
    minibatch_std: bool = False,
    critic_convs: int = 0,
    critic_dropout: float = 0.0,
) -> tuple[nn.Module, nn.Module]:
    """(generator, critic) of architecture ``model`` for samples of ``shape``.

    The generator maps (N, latent_dim) to (N, *shape). ``pack`` and ``minibatch_std``
    are available on the MLP and DCGAN critics; ``critic_convs`` (extra 3x3 convolutions,
    see :func:`small_critic`) and ``critic_dropout`` (dropout after every LeakyReLU) on the
    dcgan-small and dcgan critics.
    """
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown `model`={model!r}; expected one of {', '.join(MODEL_NAMES)}")
    for name, value, note in (
        ("critic_convs", critic_convs, "the MNIST recipes of WGAN-GP and SN-GAN set it to 1: "),
        ("critic_dropout", critic_dropout, ""),
    ):
        if value and model not in ("dcgan-small", "dcgan"):
            raise ValueError(
                f"`{name}` (={value!r}) is for the dcgan-small and dcgan critics, got `model`={model!r}; "
                f"{note}pass {name}=0 (--{name.replace('_', '-')} 0) with this model"
            )
    if model == "mlp":
        if len(shape) != 1:
            raise ValueError(f"the mlp models take flat samples, got sample shape {shape}")
        return (
            mlp_generator(latent_dim, shape[0], width, depth),
            mlp_critic(shape[0], width, depth, sigmoid=sigmoid, pack=pack, minibatch_std=minibatch_std),
        )
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"model {model!r} takes square (C, H, W) images, got sample shape {shape}")
    c, size = shape[0], shape[1]
    if model == "dcgan-small":
        critic = small_critic(size, c, width, norm=critic_norm, sigmoid=sigmoid, minibatch_std=minibatch_std, convs=critic_convs, dropout=critic_dropout)
        if pack > 1:
            critic = nn.Sequential(Pack(pack), small_critic(size, c * pack, width, norm=critic_norm, sigmoid=sigmoid, convs=critic_convs, dropout=critic_dropout))
        return small_generator(latent_dim, size, c, width), critic
    if model == "dcgan":
        critic = dcgan_critic(size, c, width, norm=critic_norm, sigmoid=sigmoid, minibatch_std=minibatch_std, convs=critic_convs, dropout=critic_dropout)
        if pack > 1:
            critic = nn.Sequential(Pack(pack), dcgan_critic(size, c * pack, width, norm=critic_norm, sigmoid=sigmoid, convs=critic_convs, dropout=critic_dropout))
        return dcgan_generator(latent_dim, size, c, width), critic
    if size != 32:
        raise ValueError(f"model {model!r} is for 32x32 images, got {size}x{size}")
    if model == "sngan-cnn":
        return sngan_cnn_generator(latent_dim, c), sngan_cnn_critic(c, width)
    if model == "resnet":
        return resnet_generator(latent_dim, c, width), resnet_critic(c, width)
    raise ValueError(f"unknown `model`={model!r}; expected one of {', '.join(MODEL_NAMES)}")

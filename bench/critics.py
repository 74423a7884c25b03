"""Critics for the benchmarks: the seed-003 DCGAN discriminator, a DCGAN 32x32 critic, an MLP."""

from __future__ import annotations

from torch import nn


def dcgan_discriminator() -> nn.Sequential:
    """Seed 003's WGAN discriminator for 128x128 images: 16 tensors, 11.2M elements."""
    channels = [3, 64, 128, 256, 512, 1024]
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:]):
        layers += [
            nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2, inplace=True),
        ]
    layers += [nn.Conv2d(1024, 1, kernel_size=4, stride=1, padding=0, bias=False), nn.Flatten()]
    return nn.Sequential(*layers)


def mlp_critic(width: int = 512, in_features: int = 2) -> nn.Sequential:
    """A 4-layer LeakyReLU MLP critic on 2-D points: 8 tensors, 0.53M elements."""
    return nn.Sequential(
        nn.Linear(in_features, width),
        nn.LeakyReLU(0.2),
        nn.Linear(width, width),
        nn.LeakyReLU(0.2),
        nn.Linear(width, width),
        nn.LeakyReLU(0.2),
        nn.Linear(width, 1),
    )


CRITICS = {"dcgan_disc": dcgan_discriminator, "mlp_critic": mlp_critic}


def dcgan32_critic() -> nn.Sequential:
    """A DCGAN critic for 32x32 images without BatchNorm (WGAN-GP): conv 3-64-128-256, linear."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((3, 64), (64, 128), (128, 256)):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    layers += [nn.Flatten(), nn.Linear(256 * 4 * 4, 1)]
    return nn.Sequential(*layers)


def sngan_standard_cnn() -> nn.Sequential:
    """SN-GAN's "standard CNN" critic for 32x32 images (Miyato et al. 2018), LeakyReLU 0.1: 16 tensors, 2.8M elements."""
    spec = [(3, 64, 3, 1), (64, 64, 4, 2), (64, 128, 3, 1), (128, 128, 4, 2),
            (128, 256, 3, 1), (256, 256, 4, 2), (256, 512, 3, 1)]
    layers: list[nn.Module] = []
    for c_in, c_out, k, stride in spec:
        layers += [nn.Conv2d(c_in, c_out, k, stride=stride, padding=1), nn.LeakyReLU(0.1)]
    layers += [nn.Flatten(), nn.Linear(4 * 4 * 512, 1)]
    return nn.Sequential(*layers)

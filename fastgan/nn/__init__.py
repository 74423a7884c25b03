"""Layers for critics: fused bias + activation and the one-line conversion of an existing critic."""

from fastgan.nn import functional
from fastgan.nn.conv import (
    SingleChannelConv2d,
    SingleChannelConvTranspose2d,
    conv2d_single_channel,
    conv_transpose2d_single_channel,
    use_single_channel_convs_,
)
from fastgan.nn.modules import BiasAct, Flat, FusedLeakyReLU, fuse_activations_
from fastgan.nn.spectral_norm import spectral_norm, spectral_norm_all

__all__ = [
    "BiasAct",
    "Flat",
    "SingleChannelConv2d",
    "SingleChannelConvTranspose2d",
    "conv2d_single_channel",
    "conv_transpose2d_single_channel",
    "FusedLeakyReLU",
    "functional",
    "fuse_activations_",
    "spectral_norm",
    "spectral_norm_all",
    "use_single_channel_convs_",
]

"""Layers for critics: fused bias + activation, dropout, one-channel convolutions and the one-line conversions of an existing model."""

from fastgan.nn import functional
from fastgan.nn.conv import (
    SingleChannelConv2d,
    SingleChannelConvTranspose2d,
    conv2d_single_channel,
    conv_transpose2d_single_channel,
    use_single_channel_convs_,
)
from fastgan.nn.dropout import Dropout, dropout, use_fast_dropout_
from fastgan.nn.modules import BiasAct, Flat, FusedLeakyReLU, fuse_activations_
from fastgan.nn.spectral_norm import spectral_norm, spectral_norm_all

__all__ = [
    "BiasAct",
    "Dropout",
    "Flat",
    "SingleChannelConv2d",
    "SingleChannelConvTranspose2d",
    "conv2d_single_channel",
    "conv_transpose2d_single_channel",
    "dropout",
    "FusedLeakyReLU",
    "functional",
    "fuse_activations_",
    "spectral_norm",
    "spectral_norm_all",
    "use_fast_dropout_",
    "use_single_channel_convs_",
]

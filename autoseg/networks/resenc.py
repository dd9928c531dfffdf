"""A U-Net with a residual encoder (as nnU-Net's ResidualEncoderUNet and its ResEnc presets): a stem convolution,
then ``n_blocks_per_stage[s]`` residual basic blocks per encoder stage (the first carrying the stride), and the plain
U-Net's decoder. Only the encoder's blocks differ from ``PlainConvUNet``; the layout, costs and forward are shared."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.records import as_ints
from .blocks import BasicResidualBlock, BlockSpec, ConvNormAct, zero_last_norm_of_residuals
from .catalog import register_network
from .unet import UNet, UNetArgs


@dataclass(frozen=True, kw_only=True)
class ResidualEncoderUNetArgs(UNetArgs):
    n_blocks_per_stage: tuple[int, ...]

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        kw = super()._parse(d, where)
        kw["n_blocks_per_stage"] = as_ints(d["n_blocks_per_stage"], f"{where}.n_blocks_per_stage", kw["n_stages"], 1)
        return kw

    def stem(self) -> list[BlockSpec]:
        """One conv -> norm -> act to the first stage's width, at the input resolution (level -1)."""
        one = tuple([1] * self.dim)
        return [BlockSpec(ConvNormAct, self.input_channels, self.features_per_stage[0], self.kernel_sizes[0], one, -1)]

    def encoder_stages(self) -> list[list[BlockSpec]]:
        out, cin, one = [], self.features_per_stage[0], tuple([1] * self.dim)
        for s, f in enumerate(self.features_per_stage):
            k = self.kernel_sizes[s]
            out.append([BlockSpec(BasicResidualBlock, cin if i == 0 else f, f, k,
                                  self.strides[s] if i == 0 else one, s) for i in range(self.n_blocks_per_stage[s])])
            cin = f
        return out


@register_network("ResidualEncoderUNet", ResidualEncoderUNetArgs)
class ResidualEncoderUNet(UNet):
    def __init__(self, **kwargs: Any):
        super().__init__(ResidualEncoderUNetArgs.from_dict(kwargs, "ResidualEncoderUNet arguments"))
        self.apply(zero_last_norm_of_residuals)

"""U-Nets for 2D and 3D with per-stage kernels and strides (anisotropic allowed), built from blocks.

``UNetArgs`` holds a network's plain arguments and derives its structure once, its layout: the blocks of the
(optional) stem, of each encoder stage, and of each decoder stage. The module is built from that layout, and the
feature-map memory and MAC count the planner uses are summed over it. The plain U-Net's encoder stage s is
``n_conv_per_stage[s]`` x (conv -> InstanceNorm -> LeakyReLU), the first conv strided by ``strides[s]``; every
decoder stage upsamples (transposed conv, kernel = stride), concatenates the skip, runs its convs, and has a 1x1
head (deep supervision). The networks know nothing of files or plans.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..core.errors import AutosegError
from ..core.records import Record, as_bool, as_float, as_int, as_ints, as_list, as_str
from .blocks import BlockSpec, ConvNormAct, DecoderSpec, head, init_weights, instance_norm, stage, upsample
from .catalog import register_network

__all__ = ["UNetArgs", "PlainConvUNetArgs", "UNet", "PlainConvUNet", "NetworkCosts", "instance_norm"]


@dataclass(frozen=True)
class NetworkCosts:
    feature_map_elements: int  # activation elements one sample writes in a forward pass (every conv output)
    macs: float  # multiply-accumulates of one sample's forward pass (segmentation heads excluded)


@dataclass(frozen=True, kw_only=True)
class UNetArgs(Record):
    """Arguments shared by the U-Nets; subclasses add how the encoder stages are made."""
    dim: int
    input_channels: int
    num_classes: int
    n_stages: int
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    n_conv_per_stage_decoder: tuple[int, ...]
    deep_supervision: bool = True
    norm: str = "InstanceNorm"
    nonlin: str = "LeakyReLU"
    negative_slope: float = 0.01

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        dim = as_int(d["dim"], f"{where}.dim", 2)
        if dim > 3:
            raise AutosegError(f"{where}.dim: expected 2 or 3, got {dim}")
        n = as_int(d["n_stages"], f"{where}.n_stages", 1)
        kw: dict[str, Any] = {"dim": dim, "n_stages": n,
                              "input_channels": as_int(d["input_channels"], f"{where}.input_channels", 1),
                              "num_classes": as_int(d["num_classes"], f"{where}.num_classes", 1),
                              "features_per_stage": as_ints(d["features_per_stage"], f"{where}.features_per_stage",
                                                            n, 1),
                              "kernel_sizes": _per_stage(d["kernel_sizes"], f"{where}.kernel_sizes", n, dim),
                              "strides": _per_stage(d["strides"], f"{where}.strides", n, dim),
                              "n_conv_per_stage_decoder": as_ints(d["n_conv_per_stage_decoder"],
                                                                  f"{where}.n_conv_per_stage_decoder", n - 1, 1)}
        if any(k % 2 == 0 for ks in kw["kernel_sizes"] for k in ks):
            raise AutosegError(f"{where}.kernel_sizes: kernels must be odd (same-size padding), got "
                               f"{d['kernel_sizes']}")
        for key, parse in (("deep_supervision", as_bool), ("negative_slope", as_float)):
            if key in d:
                kw[key] = parse(d[key], f"{where}.{key}")
        for key, value in (("norm", "InstanceNorm"), ("nonlin", "LeakyReLU")):
            if key in d:
                kw[key] = as_str(d[key], f"{where}.{key}", [value])
        return kw

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with a subclass's own fields (how encoder stages are made) right after ``strides``."""
        d = super().to_dict()
        base = [f.name for f in fields(UNetArgs)]
        cut = base.index("strides") + 1
        order = base[:cut] + [k for k in d if k not in base] + base[cut:]
        return {k: d[k] for k in order}

    def encoder_stages(self) -> list[list[BlockSpec]]:
        raise NotImplementedError

    def stem(self) -> list[BlockSpec]:
        return []

    def decoder_stages(self) -> list[DecoderSpec]:
        """Deepest first; stage s upsamples from s + 1, concatenates the skip and runs plain conv blocks."""
        out = []
        one = tuple([1] * self.dim)
        for s in range(self.n_stages - 2, -1, -1):
            below, here, k = self.features_per_stage[s + 1], self.features_per_stage[s], self.kernel_sizes[s]
            blocks = [BlockSpec(ConvNormAct, 2 * here if i == 0 else here, here, k, one, s)
                      for i in range(self.n_conv_per_stage_decoder[s])]
            out.append(DecoderSpec(s, below, here, self.strides[s + 1], tuple(blocks), self.num_classes,
                                   self.deep_supervision or s == 0))
        return out

    def level_voxels(self, patch_size: Sequence[int]) -> list[float]:
        """Voxels per sample at the output of each encoder stage (ceil division by each stride)."""
        size = np.array(patch_size, dtype=np.float64)
        out = []
        for s in self.strides:
            size = np.ceil(size / np.array(s))
            out.append(float(np.prod(size)))
        return out

    def costs(self, patch_size: Sequence[int]) -> NetworkCosts:
        """Feature-map elements and MACs of one sample's forward pass, summed over the layout's convolutions.
        Training memory is roughly proportional to the elements (activations kept for backward); step time to
        the MACs."""
        vox = dict(enumerate(self.level_voxels(patch_size)))
        vox[-1] = float(np.prod(patch_size))  # level -1: the input resolution (a stem)
        convs = [(b.level, c) for b in self.stem() for c in b.convs()]
        convs += [(b.level, c) for blocks in self.encoder_stages() for b in blocks for c in b.convs()]
        convs += [(d.level, c) for d in self.decoder_stages() for c in d.convs()]
        elements = sum(c.cout * vox[level] for level, c in convs)
        macs = sum(vox[level] * c.macs_per_output_voxel() for level, c in convs)
        return NetworkCosts(int(elements), float(macs))


def _per_stage(v: Any, where: str, n: int, dim: int) -> tuple[tuple[int, ...], ...]:
    return tuple(as_ints(x, f"{where}[{i}]", dim, 1) for i, x in enumerate(as_list(v, where, n)))


@dataclass(frozen=True, kw_only=True)
class PlainConvUNetArgs(UNetArgs):
    n_conv_per_stage: tuple[int, ...]

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        kw = super()._parse(d, where)
        kw["n_conv_per_stage"] = as_ints(d["n_conv_per_stage"], f"{where}.n_conv_per_stage", kw["n_stages"], 1)
        return kw

    def encoder_stages(self) -> list[list[BlockSpec]]:
        out, cin, one = [], self.input_channels, tuple([1] * self.dim)
        for s, f in enumerate(self.features_per_stage):
            k = self.kernel_sizes[s]
            out.append([BlockSpec(ConvNormAct, cin if i == 0 else f, f, k, self.strides[s] if i == 0 else one, s)
                        for i in range(self.n_conv_per_stage[s])])
            cin = f
        return out


class UNet(nn.Module):
    """Stem (if any), encoder stages, and decoder stages with their upsampling and heads, from the layout
    of ``args`` (``stem``, ``encoder_stages``, ``decoder_stages``).
    State-dict keys: ``stem.*``, ``encoder.<stage>.<block>.*``, ``upsample.<j>``, ``decoder.<j>.<block>.*``,
    ``heads.<j>`` with j = 0 the deepest decoder stage."""

    def __init__(self, args: UNetArgs):
        super().__init__()
        self.args = args
        self.dim = args.dim
        self.deep_supervision = args.deep_supervision
        self.strides = [tuple(s) for s in args.strides]
        slope = args.negative_slope
        stem = args.stem()
        self.stem = stage(args.dim, stem, slope) if stem else None
        self.encoder = nn.ModuleList([stage(args.dim, blocks, slope) for blocks in args.encoder_stages()])
        self.upsample, self.decoder, self.heads = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for d in args.decoder_stages():
            self.upsample.append(upsample(args.dim, d.cin, d.cout, d.stride))
            self.decoder.append(stage(args.dim, d.blocks, slope))
            self.heads.append(head(args.dim, d.cout, args.num_classes))
        self.apply(init_weights)

    def forward(self, x: torch.Tensor):
        if self.stem is not None:
            x = self.stem(x)
        skips = []
        for s in self.encoder:
            x = s(x)
            skips.append(x)
        x = skips.pop()
        outputs = []
        for up, dec, hd in zip(self.upsample, self.decoder, self.heads):
            x = dec(torch.cat((up(x), skips.pop()), 1))
            if self.deep_supervision or len(skips) == 0:
                outputs.append(hd(x))
        outputs = outputs[::-1]  # full resolution first
        return outputs if self.deep_supervision else outputs[0]

    def set_deep_supervision(self, enabled: bool) -> None:
        self.deep_supervision = enabled

    def costs(self, patch_size: Sequence[int]) -> NetworkCosts:
        return self.args.costs(patch_size)


@register_network("PlainConvUNet", PlainConvUNetArgs)
class PlainConvUNet(UNet):
    def __init__(self, **kwargs: Any):
        super().__init__(PlainConvUNetArgs.from_dict(kwargs, "PlainConvUNet arguments"))

"""``autoseg export --onnx``: the U-Net of each fold written as ``network.onnx`` beside its checkpoint, so a model
zip can be run by onnxruntime (``autoseg.inference.onnx_backend``).

Only the network is exported (full-resolution output only, a free batch axis); preprocessing, the sliding window,
mirroring and everything after stay autoseg's. Needs the package ``onnx``; it is not required otherwise.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import AutosegError
from ..core.files import atomic_write_bytes
from ..networks.checkpoint import network_from_checkpoint

ONNX_NAME = "network.onnx"


def require_onnx_package(module: str, purpose: str):
    """The imported optional package ``module`` (onnx, onnxruntime), or an error saying how to install it."""
    try:
        return __import__(module)
    except ImportError:
        raise AutosegError(f"{purpose} needs the Python package {module!r}: pip install onnx onnxruntime") from None


def export_network_onnx(ckpt: dict, patch_size: list[int], path: Path) -> None:
    """Write the checkpoint's network (full-resolution output only) as ONNX with a free batch axis."""
    import warnings

    require_onnx_package("onnx", "autoseg export --onnx")
    net = network_from_checkpoint(ckpt, torch.device("cpu"))
    arch = ckpt["architecture"]["arch_kwargs"]
    x = torch.zeros((2, int(arch["input_channels"]), *[int(p) for p in patch_size]))

    def _w(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notes are not the user's concern
            torch.onnx.export(net, (x,), tmp, input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)

    atomic_write_bytes(path, _w, suffix=".onnx")


__all__ = ["ONNX_NAME", "require_onnx_package", "export_network_onnx"]

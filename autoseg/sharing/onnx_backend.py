"""Optional ONNX path: the U-Net of each fold as ``network.onnx`` (`autoseg export --onnx`), run by onnxruntime.

Only the network changes: preprocessing, the sliding window, mirroring and everything after are autoseg's, so an
ONNX model predicts what the torch model predicts (the tests compare probabilities on the same tiles within 1e-4).
Needs the packages ``onnx`` (to export) and ``onnxruntime`` (to predict); neither is required otherwise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import AutosegError
from ..core.files import atomic_write_bytes

ONNX_NAME = "network.onnx"


def _require(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError:
        raise AutosegError(f"{purpose} needs the Python package {module!r}: pip install onnx onnxruntime") from None


def export_network_onnx(ckpt: dict, patch_size: list[int], path: Path) -> None:
    """Write the checkpoint's network (full-resolution output only) as ONNX with a free batch axis."""
    import warnings

    from ..inference.predictor import network_from_checkpoint

    _require("onnx", "autoseg export --onnx")
    net = network_from_checkpoint(ckpt, torch.device("cpu"))
    arch = ckpt["architecture"]["arch_kwargs"]
    x = torch.zeros((2, int(arch["input_channels"]), *[int(p) for p in patch_size]))

    def _w(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notes are not the user's concern
            torch.onnx.export(net, (x,), tmp, input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)

    atomic_write_bytes(path, _w, suffix=".onnx")


class OnnxNetwork:
    """Called like the torch network by the sliding window: a (B, C, *patch) tensor in, logits out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = _require("onnxruntime", "the onnxruntime backend")
        if not path.is_file():
            raise AutosegError(f"{path}: not found; export the model with `autoseg export RUN -o MODEL.zip --onnx`")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})
        return torch.from_numpy(out[0]).to(x.device)


__all__ = ["ONNX_NAME", "export_network_onnx", "OnnxNetwork"]

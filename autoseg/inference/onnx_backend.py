"""Optional ONNX backend: the U-Net of each fold as ``network.onnx`` (written by `autoseg export --onnx`, see
``autoseg.sharing.onnx_export``), run by onnxruntime.

Only the network changes: preprocessing, the sliding window, mirroring and everything after are autoseg's, so an
ONNX model predicts what the torch model predicts (the tests compare probabilities on the same tiles within 1e-4).
Needs the package ``onnxruntime``; it is not required otherwise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import AutosegError
from ..sharing.onnx_export import require_onnx_package


class OnnxNetwork:
    """Called like the torch network by the sliding window: a (B, C, *patch) tensor in, logits out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = require_onnx_package("onnxruntime", "the onnxruntime backend")
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


__all__ = ["OnnxNetwork"]

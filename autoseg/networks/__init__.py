"""Networks built from plain arguments; the registry maps plan names to classes."""
from .registry import build_network, register_network, NETWORKS
from . import unet  # noqa: F401  (registers PlainConvUNet)

__all__ = ["build_network", "register_network", "NETWORKS"]

"""Networks built from plain arguments; the registry maps plan names to classes."""
from . import unet  # noqa: F401  (registers PlainConvUNet)
from .registry import NETWORKS, build_network, register_network

__all__ = ["build_network", "register_network", "NETWORKS"]

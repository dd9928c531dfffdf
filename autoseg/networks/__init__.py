"""Networks built from plain arguments and blocks; the registry maps plan names to classes and their arguments."""
from . import resenc, unet  # noqa: F401  (register PlainConvUNet and ResidualEncoderUNet)
from .catalog import NETWORK_ARGS, NETWORKS, build_network, network_args, network_class, register_network
from .unet import NetworkCosts, UNetArgs

__all__ = ["build_network", "network_args", "network_class", "register_network", "NETWORKS", "NETWORK_ARGS",
           "NetworkCosts", "UNetArgs"]

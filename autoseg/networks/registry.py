"""An explicit registry of network classes: a plan names its network, and the name must be registered.
Registering a name twice is an error, so two networks can never silently shadow each other."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..utils import AutosegError

NETWORKS: dict[str, type[nn.Module]] = {}


def register_network(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in NETWORKS:
            raise ValueError(f"network name {name!r} is already registered (by {NETWORKS[name].__qualname__})")
        NETWORKS[name] = cls
        return cls
    return deco


def build_network(network_class_name: str, arch_kwargs: dict) -> nn.Module:
    if network_class_name not in NETWORKS:
        raise AutosegError(f"network {network_class_name!r} is not registered; known: {sorted(NETWORKS)}")
    return NETWORKS[network_class_name](**arch_kwargs)

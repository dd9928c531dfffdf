"""An explicit registry of network classes: a plan names its network, and the name must be registered together with
the dataclass of its arguments. Registering a name twice is an error, so two networks can never silently shadow
each other; no class is ever looked up from a module path in a string."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch.nn as nn

from ..utils import AutosegError

NETWORKS: dict[str, type[nn.Module]] = {}
NETWORK_ARGS: dict[str, type] = {}


def register_network(name: str, args_cls: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: ``name`` is what plans write in ``network_class_name``; ``args_cls`` parses and validates
    the plan's ``arch_kwargs`` (``from_dict``) and derives the network's costs (``costs``)."""
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in NETWORKS:
            raise ValueError(f"network name {name!r} is already registered (by {NETWORKS[name].__qualname__})")
        NETWORKS[name] = cls
        NETWORK_ARGS[name] = args_cls
        return cls
    return deco


def _known(name: str, where: str) -> None:
    if name not in NETWORKS:
        raise AutosegError(f"{where}: network {name!r} is not registered; known: {sorted(NETWORKS)}")


def network_args(name: str, arch_kwargs: Mapping[str, Any], where: str = "network arguments") -> Any:
    """The typed, validated arguments of network ``name`` (an AutosegError naming ``where`` and the key if not)."""
    _known(name, where)
    args_cls = NETWORK_ARGS[name]
    if isinstance(arch_kwargs, args_cls):
        return arch_kwargs
    return args_cls.from_dict(dict(arch_kwargs), where)


def build_network(network_class_name: str, arch_kwargs: Mapping[str, Any]) -> nn.Module:
    _known(network_class_name, "network_class_name")
    return NETWORKS[network_class_name](**dict(arch_kwargs))

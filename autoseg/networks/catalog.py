"""The catalogue of network classes, an explicit registry: a plan names its network, and the name must be
registered together with the dataclass of its arguments. Registering a name twice is an error, so two networks can
never silently shadow each other; no class is ever looked up from a module path in a string. A plugin package
registers its own networks the same way (``autoseg.core.registry``); a name not yet known loads the plugins once
before it is refused."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch.nn as nn

from ..core.errors import AutosegError
from ..core.registry import Registry

NETWORKS: Registry[type[nn.Module]] = Registry("network")
NETWORK_ARGS: dict[str, type] = {}


def register_network(name: str, args_cls: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: ``name`` is what plans write in ``network_class_name``; ``args_cls`` parses and validates
    the plan's ``arch_kwargs`` (``from_dict``) and derives the network's costs (``costs``)."""
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        NETWORKS.register(name, cls)
        NETWORK_ARGS[name] = args_cls
        return cls
    return deco


def network_class(name: str, where: str = "network_class_name") -> type[nn.Module]:
    try:
        return NETWORKS.get(name)
    except AutosegError as e:
        raise AutosegError(f"{where}: {e}") from None


def network_args(name: str, arch_kwargs: Mapping[str, Any], where: str = "network arguments") -> Any:
    """The typed, validated arguments of network ``name`` (an AutosegError naming ``where`` and the key if not)."""
    network_class(name, where)
    args_cls = NETWORK_ARGS[name]
    if isinstance(arch_kwargs, args_cls):
        return arch_kwargs
    return args_cls.from_dict(dict(arch_kwargs), where)


def build_network(network_class_name: str, arch_kwargs: Mapping[str, Any]) -> nn.Module:
    return network_class(network_class_name)(**dict(arch_kwargs))

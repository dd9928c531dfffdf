"""nnU-Net's own networks for given plans: state-dict keys and shapes, parameter count, feature-map estimate.

Run with nnU-Net's python (it imports dynamic-network-architectures through nnU-Net):

    <nnunet venv>/bin/python benchmarks/nnunet_references/networks_dump.py < cases.json > networks.json

Each case on stdin: {"label", "network_class_name", "arch_kwargs", "_kw_requires_import", "input_channels",
"num_classes", "patch_size", "forward"} (arch_kwargs as nnU-Net's plans.json writes them). Networks are built the
way nnU-Net's trainer builds them (get_network_from_plans, deep supervision on), on the meta device unless
"forward" is set (then a zero input of the patch size runs through it and the output shapes are recorded).
"""
import json
import sys

import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans


def dump(case: dict) -> dict:
    def build():
        return get_network_from_plans(case["network_class_name"], case["arch_kwargs"],
                                      case["_kw_requires_import"], case["input_channels"], case["num_classes"],
                                      allow_init=False, deep_supervision=True)

    if case.get("forward"):
        net = build()
    else:
        with torch.device("meta"):  # full-size networks: shapes only, no memory
            net = build()
    out = {k: v for k, v in case.items() if k != "forward"}
    out["params"] = sum(p.numel() for p in net.parameters())
    out["feature_map_size"] = int(net.compute_conv_feature_map_size(case["patch_size"]))
    out["state_dict"] = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    if case.get("forward"):
        with torch.no_grad():
            y = net.eval()(torch.zeros(1, case["input_channels"], *case["patch_size"]))
        out["output_shapes"] = [list(t.shape) for t in (y if isinstance(y, (list, tuple)) else [y])]
    return out


if __name__ == "__main__":
    print(json.dumps([dump(c) for c in json.load(sys.stdin)], separators=(",", ":")))

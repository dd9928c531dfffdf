"""Networks from blocks: state-dict keys unchanged from main's plain U-Net, one derivation of the structure for the
modules, the memory estimate and the MAC count (checked against forward hooks), the ResEnc U-Net against nnU-Net's
dynamic-network-architectures (committed reference counts), argument validation and the registry."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.core.errors import AutosegError
from autoseg.networks import NETWORKS, build_network, network_args, register_network
from autoseg.networks.blocks import BasicResidualBlock

DATA = Path(__file__).parent / "data"


def _plain(dim=2, **over):
    kw = {"dim": dim, "input_channels": 2, "num_classes": 3, "n_stages": 4, "features_per_stage": [4, 8, 16, 16],
          "kernel_sizes": [[3] * dim] * 4, "strides": [[1] * dim] + [[2] * dim] * 3, "n_conv_per_stage": [2] * 4,
          "n_conv_per_stage_decoder": [2] * 3, "deep_supervision": True}
    if dim == 3:
        kw["kernel_sizes"] = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
        kw["strides"] = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    kw.update(over)
    return kw


def _resenc(dim=2, n_blocks=(1, 3, 4, 6), **over):
    kw = _plain(dim, **{"n_conv_per_stage_decoder": [1] * (len(n_blocks) - 1), **over})
    kw.pop("n_conv_per_stage")
    kw["n_blocks_per_stage"] = list(n_blocks)
    return kw


@pytest.mark.parametrize("name", ["2d", "3d_aniso"])
def test_plain_unet_state_dict_keys_and_shapes_are_mains(name):
    """Checkpoints written before the network was built from blocks (and weight mappings written against these
    names) must still load: keys, order and shapes as main's unet.py gave them (tests/data, made at 944fb42)."""
    ref = json.loads((DATA / "plain_unet_state_dict_main.json").read_text())[name]
    net = build_network("PlainConvUNet", ref["arch_kwargs"])
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == ref["state_dict"]


@pytest.mark.parametrize("name", ["2d", "3d_aniso"])
def test_plain_unet_seeded_weights_are_mains(name):
    """Modules are created and initialised in main's order, so the same seed gives main's initial weights (training
    from a seed behaves as before the refactor)."""
    ref = json.loads((DATA / "plain_unet_state_dict_main.json").read_text())[name]
    sums = json.loads((DATA / "plain_unet_seed0_weights_main.json").read_text())[name]
    torch.manual_seed(0)
    net = build_network("PlainConvUNet", ref["arch_kwargs"])
    got = {k: [float(v.double().sum()), float(v.double().abs().sum())] for k, v in net.state_dict().items()}
    assert got.keys() == sums.keys()
    for k in sums:
        assert got[k] == pytest.approx(sums[k], rel=1e-9, abs=1e-9), k


def test_plain_unet_costs_are_mains_estimates():
    """The memory estimate and MAC count now come from the network's layout; for the plain U-Nets the planner
    builds they equal main's two separate derivations exactly (the ACDC plans depend on the memory estimate)."""
    for case in json.loads((DATA / "plain_unet_estimates_main.json").read_text()):
        costs = network_args("PlainConvUNet", case["arch_kwargs"]).costs(case["patch_size"])
        assert costs.feature_map_elements == case["feature_map_elements"]
        assert costs.macs == case["forward_macs"]


def _hooked_costs(net, x):
    """(feature-map elements, MACs without the 1x1 heads) counted on the real modules by forward hooks: every
    convolution's output, except that a residual shortcut (pooling and/or 1x1 projection) counts once, by its output."""
    elements, macs = [0], [0]
    heads = {id(h) for h in net.heads}
    shortcuts = [m.skip for m in net.modules() if isinstance(m, BasicResidualBlock) and len(m.skip)]
    in_shortcut = {id(c) for s in shortcuts for c in s.modules()}

    def count(m, inp, out):
        elements[0] += out[0].numel()

    def conv(m, inp, out):
        if id(m) not in in_shortcut:
            count(m, inp, out)
        if id(m) in heads:
            return
        if isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            macs[0] += out[0].numel() * m.in_channels  # kernel = stride: each output meets each input channel once
        else:
            macs[0] += out[0].numel() * m.in_channels * int(np.prod(m.kernel_size))

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            m.register_forward_hook(conv)
    for s in shortcuts:
        s.register_forward_hook(count)
    with torch.no_grad():
        net(x)
    return elements[0], macs[0]


@pytest.mark.parametrize("name,kw,patch", [
    ("PlainConvUNet", _plain(2), (32, 24)),
    ("PlainConvUNet", _plain(3, deep_supervision=False, n_conv_per_stage=[1, 2, 3, 2]), (8, 32, 16)),
    ("ResidualEncoderUNet", _resenc(2), (32, 24)),
    ("ResidualEncoderUNet", _resenc(3, n_blocks=(2, 1, 2, 1), deep_supervision=False), (8, 32, 16)),
])
def test_costs_match_the_modules_counted_with_hooks(name, kw, patch):
    net = build_network(name, kw).eval()
    elements, macs = _hooked_costs(net, torch.zeros(1, kw["input_channels"], *patch))
    costs = net.costs(patch)
    assert costs.feature_map_elements == elements
    assert costs.macs == macs


def test_residual_encoder_shapes_keys_and_identity_start():
    kw = _resenc(2)
    net = build_network("ResidualEncoderUNet", kw)
    out = net(torch.randn(2, 2, 32, 24))
    assert [tuple(o.shape) for o in out] == [(2, 3, 32, 24), (2, 3, 16, 12), (2, 3, 8, 6)]
    keys = list(net.state_dict())
    assert keys[0] == "stem.0.0.weight" and "encoder.3.5.conv2.1.weight" in keys
    assert "encoder.1.0.skip.1.0.weight" in keys and "encoder.1.0.skip.1.0.bias" not in keys  # 1x1 projection
    assert "encoder.1.1.skip.0.weight" not in keys  # same width, no stride: identity shortcut
    assert float(net.encoder[2][1].conv2[1].weight.detach().abs().sum()) == 0.0  # residual branches start at zero


def test_same_seed_same_weights():
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        weights.append(build_network("ResidualEncoderUNet", _resenc(2)).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("change,key", [
    ({"strides": [[1, 1], [2, 2], [2, 2]]}, "strides"),
    ({"kernel_sizes": [[3, 3], [3, 3], [3, 3], [3]]}, "kernel_sizes[3]"),
    ({"kernel_sizes": [[3, 3], [2, 2], [3, 3], [3, 3]]}, "kernel_sizes"),
    ({"features_per_stage": [4, 8, 16.0, 16]}, "features_per_stage[2]"),
    ({"deep_supervision": "yes"}, "deep_supervision"),
    ({"norm": "BatchNorm"}, "norm"),
    ({"dim": 4}, "dim"),
    ({"n_conv_per_stage_decoder": [2, 2, 2, 2]}, "n_conv_per_stage_decoder"),
    ({"n_stage": 4}, "unknown key(s) ['n_stage']"),
])
def test_bad_arguments_name_the_key(change, key):
    kw = _plain(2)
    kw.update(change)
    with pytest.raises(AutosegError, match=r"plans\.json: c\.arch_kwargs.*" + key.replace("[", r"\[").replace(
            "]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        network_args("PlainConvUNet", kw, "plans.json: c.arch_kwargs")


def test_missing_argument_and_unknown_network():
    kw = _plain(2)
    del kw["strides"]
    with pytest.raises(AutosegError, match=r"missing key\(s\) \['strides'\]"):
        network_args("PlainConvUNet", kw)
    with pytest.raises(AutosegError, match="'PlainUNet' is not registered"):
        build_network("PlainUNet", _plain(2))


def test_registry_refuses_duplicates():
    with pytest.raises(AutosegError, match="network 'PlainConvUNet' is already registered"):
        register_network("PlainConvUNet", dict)(torch.nn.Identity)
    assert {"PlainConvUNet", "ResidualEncoderUNet"} <= set(NETWORKS)


# ---- against nnU-Net's dynamic-network-architectures (committed: tests/references/nnunet/networks.json) ----
NNUNET_NETWORKS = json.loads((Path(__file__).parent / "references" / "nnunet" / "networks.json").read_text())


def autoseg_kwargs(case: dict) -> tuple[str, dict]:
    """nnU-Net's network arguments (plans.json form) -> autoseg's registry name and arguments."""
    a = case["arch_kwargs"]
    name = case["network_class_name"].rsplit(".", 1)[-1]
    blocks = "n_blocks_per_stage" if name == "ResidualEncoderUNet" else "n_conv_per_stage"
    return name, {"dim": 2 if a["conv_op"].endswith("2d") else 3, "input_channels": case["input_channels"],
                  "num_classes": case["num_classes"], "n_stages": a["n_stages"],
                  "features_per_stage": a["features_per_stage"], "kernel_sizes": a["kernel_sizes"],
                  "strides": a["strides"], blocks: a[blocks],
                  # nnU-Net lists decoder stages deepest first; autoseg by the encoder stage they return to
                  "n_conv_per_stage_decoder": a["n_conv_per_stage_decoder"][::-1], "deep_supervision": True}


@pytest.mark.parametrize("case", NNUNET_NETWORKS["networks"], ids=lambda c: c["label"])
def test_parameters_output_shapes_and_memory_estimates_match_nnunet(case):
    """Same arguments, same network as nnU-Net's (PlainConvUNet and ResidualEncoderUNet from real 2d/3d plans of the
    default and ResEnc presets, and small hand-made ones): parameter count, the multiset of parameter shapes, the
    feature-map estimate nnU-Net's planner uses (so a planner calibrated on nnU-Net's numbers plans the same
    patches) and, for the small ones, the output shapes."""
    name, kw = autoseg_kwargs(case)
    with torch.device("meta"):  # full-size 3D networks: shapes only
        net = build_network(name, kw)
    assert sum(p.numel() for p in net.parameters()) == case["params"]
    ours = sorted(tuple(p.shape) for p in net.state_dict().values())
    theirs = sorted(tuple(s) for k, s in case["state_dict"] if ".all_modules." not in k
                    and not k.startswith("decoder.encoder."))  # nnU-Net's duplicate registrations
    assert ours == theirs
    assert net.costs(case["patch_size"]).feature_map_elements == case["feature_map_size"]
    if "output_shapes" in case:
        net = build_network(name, kw).eval()
        with torch.no_grad():
            y = net(torch.zeros(1, kw["input_channels"], *case["patch_size"]))
        assert [list(t.shape) for t in (y if isinstance(y, list) else [y])] == case["output_shapes"]


def test_committed_nnunet_networks_cover_both_classes_2d_3d_and_presets():
    labels = [(c["network_class_name"].rsplit(".", 1)[-1], len(c["patch_size"]), c["label"])
              for c in NNUNET_NETWORKS["networks"]]
    for cls in ("PlainConvUNet", "ResidualEncoderUNet"):
        assert {d for c, d, _ in labels if c == cls} == {2, 3}
    assert {p for p in ("default", "resenc-m", "resenc-l", "resenc-xl") if any(f" {p} " in lab for *_, lab in labels)
            } == {"default", "resenc-m", "resenc-l", "resenc-xl"}


@pytest.mark.slow
def test_a_plan_with_a_residual_encoder_trains_and_predicts(tiny_phantom, tmp_path):
    """The registry is the only place a network is chosen: a plans.json naming ResidualEncoderUNet trains (one
    short epoch) and predicts through the same pipeline, and the checkpoint holds its state-dict keys."""
    from autoseg.cli import main

    run = tmp_path / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(run), "-c", "2d", "-j", "1"]) == 0
    plans = json.loads((run / "plans.json").read_text())
    arch = plans["configurations"]["2d"]["architecture"]
    kw = arch["arch_kwargs"]
    arch["network_class_name"] = "ResidualEncoderUNet"
    del kw["n_conv_per_stage"]
    kw["n_blocks_per_stage"] = [1] + [2] * (kw["n_stages"] - 1)
    kw["n_conv_per_stage_decoder"] = [1] * (kw["n_stages"] - 1)
    (run / "plans.json").write_text(json.dumps(plans))
    assert main(["train", str(run), "-c", "2d", "-f", "0", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--num-workers", "0"]) == 0
    ckpt = torch.load(run / "2d" / "fold_0" / "checkpoint_final.pt", weights_only=True)
    keys = next(v for v in ckpt.values() if isinstance(v, dict) and "stem.0.0.weight" in v)
    assert "encoder.1.1.conv2.1.weight" in keys
    out = tmp_path / "pred"
    assert main(["predict", str(run), "-i", str(tiny_phantom / "imagesTs"), "-o", str(out), "-c", "2d",
                 "-f", "0"]) == 0
    assert len(list(out.glob("*.nii.gz"))) == len(list((tiny_phantom / "imagesTs").glob("*_0000.nii.gz")))

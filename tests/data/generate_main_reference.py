# ruff: noqa  (a record of how the data was made with main's code at 944fb42; it does not run on later code)
"""How the reference data in tests/data was made: run once at 944fb42 (main before the typed-plans and network-blocks
refactor) with `PYTHONPATH=. python tests/data/generate_main_reference.py`. Kept for the record; not run by the tests."""
import json, sys, tempfile
from pathlib import Path
import torch
sys.path.insert(0, ".")
from autoseg.networks import build_network
from autoseg.planner import heuristics as H
from autoseg.planner import budget as B

CONFIGS = {
 "2d": {"dim": 2, "input_channels": 1, "num_classes": 4, "n_stages": 4, "features_per_stage": [8, 16, 32, 64],
        "kernel_sizes": [[3, 3]] * 4, "strides": [[1, 1], [2, 2], [2, 2], [2, 1]], "n_conv_per_stage": [2, 2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2, 2], "deep_supervision": True, "norm": "InstanceNorm", "nonlin": "LeakyReLU",
        "negative_slope": 0.01},
 "3d_aniso": {"dim": 3, "input_channels": 2, "num_classes": 3, "n_stages": 4, "features_per_stage": [4, 8, 16, 16],
        "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]],
        "n_conv_per_stage": [2, 1, 3, 2], "n_conv_per_stage_decoder": [1, 2, 2], "deep_supervision": False,
        "norm": "InstanceNorm", "nonlin": "LeakyReLU", "negative_slope": 0.01},
}
out = {}
for name, kw in CONFIGS.items():
    net = build_network("PlainConvUNet", dict(kw))
    out[name] = {"arch_kwargs": kw, "state_dict": [[k, list(v.shape)] for k, v in net.state_dict().items()]}
Path("tests/data/plain_unet_state_dict_main.json").write_text(json.dumps(out, indent=1) + "\n")

# memory estimate and MACs as main computed them, for plain U-Nets the planner builds
cases = []
for dim, spacing, patch in ((2, (1.5, 1.5), (256, 224)), (3, (10.0, 1.5, 1.5), (16, 256, 224)),
                            (3, (1.0, 1.0, 1.0), (128, 128, 128)), (3, (5.0, 1.2, 0.9), (20, 160, 192)),
                            (2, (0.7, 0.9), (512, 384))):
    topo = H.network_topology(spacing, patch)
    for base in (32, 16):
        feats = H.features_per_stage(topo.n_stages, dim, base=base, cap=H.MAX_FEATURES[dim] * base // 32)
        kw = {"dim": dim, "input_channels": 2, "num_classes": 4, "n_stages": topo.n_stages,
              "features_per_stage": list(feats), "kernel_sizes": [list(k) for k in topo.kernel_sizes],
              "strides": [list(s) for s in topo.strides], "n_conv_per_stage": [2] * topo.n_stages,
              "n_conv_per_stage_decoder": [2] * (topo.n_stages - 1), "deep_supervision": True,
              "norm": "InstanceNorm", "nonlin": "LeakyReLU", "negative_slope": 0.01}
        cases.append({"arch_kwargs": kw, "patch_size": list(topo.patch_size),
                      "feature_map_elements": H.estimate_feature_map_elements(topo.patch_size, topo.strides, feats, 4),
                      "forward_macs": B.forward_macs(kw, topo.patch_size)})
Path("tests/data/plain_unet_estimates_main.json").write_text(json.dumps(cases, indent=1) + "\n")

# plans.json as main writes it: phantom, plain and with a budget (a fake timer)
from autoseg.datasets.phantom import make_phantom_dataset
from autoseg.api import plan
from autoseg.planner.plans import Plans
tmp = Path(tempfile.mkdtemp())
ds = make_phantom_dataset(tmp / "data", n_train_patients=5, n_test_patients=1, seed=1, size=48)
plan(ds, tmp / "run", preprocess_after=False, num_workers=1)
d = json.loads((tmp / "run" / "plans.json").read_text())
d["dataset_dir"] = "/nonexistent/phantom"
Path("tests/data/plans_main_phantom.json").write_text(json.dumps(d, indent=2) + "\n")
p = Plans.load(tmp / "run" / "plans.json")
pb = B.apply_budget(p, 600, torch.device("cpu"), 10, timer=lambda c: 1e-10 * c.macs * c.batch_size + 0.05, verbose=False)
d = pb.to_dict()
d["dataset_dir"] = "/nonexistent/phantom"
from autoseg.core.jsonio import save_json
save_json(d, "tests/data/plans_main_phantom_budget.json")
print("ok")

# plain_unet_seed0_weights_main.json: per state-dict entry, (sum, sum of |w|) of the weights after torch.manual_seed(0)
# for the two configurations above (made at 944fb42 by the same loop with json.dump of the two sums per key).

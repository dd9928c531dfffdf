"""Give nnU-Net the configuration autoseg chose, for identical-configuration comparisons.

    python benchmarks/nnunet_same_config.py RUN/plans.json $nnUNet_preprocessed/Dataset127_ACDC48/nnUNetPlans.json \
        [--config 2d] [--name 2d_autoseg]

Adds configuration NAME to nnU-Net's plans, inheriting everything from nnU-Net's own CONFIG and overriding only
spacing, patch size, batch size, median image size and the network's stages, features, kernels and strides with
autoseg's values. nnU-Net's network class (dynamic_network_architectures' PlainConvUNet, conv bias, instance norm,
LeakyReLU) has the same layers as autoseg's. Then preprocess it with nnU-Net:
    nnUNetv2_preprocess -d 127 -c 2d_autoseg -np 2
Uses only the standard library, so it runs with either environment's python.
"""
import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("autoseg_plans")
    ap.add_argument("nnunet_plans")
    ap.add_argument("--config", default="2d")
    ap.add_argument("--name", default="2d_autoseg")
    a = ap.parse_args()
    ours = json.load(open(a.autoseg_plans))["configurations"][a.config]
    theirs = json.load(open(a.nnunet_plans))
    base = theirs["configurations"][a.config]
    ak = ours["architecture"]["arch_kwargs"]
    arch = json.loads(json.dumps(base["architecture"]))
    arch["arch_kwargs"].update({k: ak[k] for k in ("n_stages", "features_per_stage", "kernel_sizes", "strides",
                                                    "n_conv_per_stage", "n_conv_per_stage_decoder")})
    theirs["configurations"][a.name] = {
        "inherits_from": a.config, "data_identifier": f"nnUNetPlans_{a.name}", "spacing": ours["spacing"],
        "patch_size": ours["patch_size"], "batch_size": ours["batch_size"],
        "median_image_size_in_voxels": ours["median_image_size_in_voxels"], "architecture": arch}
    with open(a.nnunet_plans, "w") as f:
        json.dump(theirs, f, indent=1)
    print(f"{a.nnunet_plans}: added {a.name}: spacing {ours['spacing']} patch {ours['patch_size']} batch "
          f"{ours['batch_size']} features {ak['features_per_stage']}")


if __name__ == "__main__":
    main()

import numpy as np
import pytest
import torch

from autoseg.core.errors import AutosegError
from autoseg.networks import build_network, register_network
from autoseg.training.config import poly_lr
from autoseg.training.objective.losses import DeepSupervisionLoss, DiceCELoss, SoftDiceLoss, deep_supervision_weights
from autoseg.training.splits import grouped_kfold


def test_dice_loss_known_values():
    target = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    target[0, 0, :2] = 1
    perfect = torch.full((1, 2, 4, 4), -20.0)
    perfect[:, 1][target[:, 0] == 1] = 20
    perfect[:, 0][target[:, 0] == 0] = 20
    assert SoftDiceLoss()(perfect, target).item() == pytest.approx(0, abs=1e-4)
    uniform = torch.zeros(1, 2, 4, 4)  # p = 0.5 everywhere: Dice = 2*4/(8+8) = 0.5
    assert SoftDiceLoss()(uniform, target).item() == pytest.approx(0.5, abs=1e-4)
    ce = DiceCELoss()(uniform, target).item()
    assert ce == pytest.approx(0.5 + np.log(2), abs=1e-4)


def test_deep_supervision_weights_and_loss():
    w = deep_supervision_weights(4)
    assert w[-1] == 0 and sum(w) == pytest.approx(1) and w[0] == pytest.approx(2 * w[1])
    target = torch.randint(0, 3, (2, 1, 16, 16))
    outs = [torch.randn(2, 3, 16, 16, requires_grad=True), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]
    loss = DeepSupervisionLoss(DiceCELoss(), 3)(outs, target)
    loss.backward()
    assert torch.isfinite(loss) and outs[0].grad is not None


def test_poly_lr():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5 ** 0.9)


def test_unet_shapes_anisotropic():
    kw = dict(dim=3, input_channels=2, num_classes=4, n_stages=4, features_per_stage=[8, 16, 32, 32],
              kernel_sizes=[[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
              strides=[[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2]], n_conv_per_stage=[2] * 4,
              n_conv_per_stage_decoder=[2] * 3)
    net = build_network("PlainConvUNet", kw)
    outs = net(torch.randn(2, 2, 4, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 4, 4, 32, 32), (2, 4, 4, 16, 16), (2, 4, 4, 8, 8)]
    net.set_deep_supervision(False)
    assert net(torch.randn(1, 2, 4, 32, 32)).shape == (1, 4, 4, 32, 32)


def test_registry_refuses_duplicates():
    with pytest.raises(AutosegError, match="network 'PlainConvUNet' is already registered"):
        register_network("PlainConvUNet", dict)(torch.nn.Identity)


def test_grouped_folds_keep_patients_together():
    cases = [f"p{i:02d}_f{j}" for i in range(13) for j in (1, 2)]
    groups = {c: c.split("_")[0] for c in cases}
    splits = grouped_kfold(cases, groups, 5)
    vals = [set(s["val"]) for s in splits]
    assert set().union(*vals) == set(cases) and sum(len(v) for v in vals) == len(cases)
    for s in splits:
        assert not {groups[c] for c in s["train"]} & {groups[c] for c in s["val"]}
    assert max(len(v) for v in vals) - min(len(v) for v in vals) <= 2


@pytest.mark.parametrize("shape", [(2, 6, 9, 7), (2, 6, 3, 9, 7)])
def test_network_norm_is_instance_norm(shape):
    """The U-Net's normalisation (GroupNorm, one group per channel) computes exactly instance normalisation."""
    import torch.nn.functional as F

    from autoseg.networks.unet import instance_norm

    norm = instance_norm(shape[1])
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(shape) * 3 + 1
    ref = F.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=1e-5)
    assert torch.allclose(norm(x), ref, atol=1e-5)


def _coordinate_case(folder, shape_yx):
    """A one-slice case whose voxel values encode their position: value = 1000 * y + x + 1 (0 = outside)."""
    import json

    h, w = shape_yx
    yy, xx = np.mgrid[:h, :w]
    data = (1000 * yy + xx + 1).astype(np.float32)[None, None]
    np.save(folder / "c.npy", data)
    np.save(folder / "c_seg.npy", np.ones((1, h, w), np.int8))
    (folder / "c.json").write_text(json.dumps({"class_locations": {"1": [[0, h // 2, w // 2]]}}))


@pytest.mark.parametrize("image, enlarged", [((40, 48), (64, 64)), ((90, 100), (40, 40))])
def test_random_patches_reach_every_border_of_the_image(tmp_path, image, enlarged):
    """The final patch (the centre the spatial transform keeps) must be able to touch each border, whether the
    enlarged patch is bigger than the image (as with ACDC at a coarse budget spacing) or smaller; it must never
    leave the image. A sampler that cut big patches from the middle only never showed the periphery."""
    from autoseg.training.sampling.patches import PatchSampler, PreprocessedCases

    _coordinate_case(tmp_path, image)
    final = (16, 16)
    sampler = PatchSampler(PreprocessedCases(tmp_path, ["c"]), list(enlarged), 2, list(final))
    rng = np.random.default_rng(0)
    tops, lefts = set(), set()
    for _ in range(600):
        d, _s = sampler.sample("c", force_fg=False, rng=rng)
        oy, ox = [(e - f) // 2 for e, f in zip(enlarged, final)]
        crop = d[0, oy:oy + final[0], ox:ox + final[1]]
        assert crop.min() > 0  # inside the image
        tops.add(int(crop[0, 0]) // 1000)
        lefts.add(int(crop[0, 0] - 1) % 1000)
    assert min(tops) == 0 and max(tops) == image[0] - final[0]
    assert min(lefts) == 0 and max(lefts) == image[1] - final[1]


def test_an_image_smaller_than_the_patch_is_centred(tmp_path):
    from autoseg.training.sampling.patches import PatchSampler, PreprocessedCases

    _coordinate_case(tmp_path, (10, 12))
    sampler = PatchSampler(PreprocessedCases(tmp_path, ["c"]), [32, 32], 2, [16, 16])
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, _s = sampler.sample("c", force_fg=False, rng=rng)
        ys, xs = np.nonzero(d[0])
        assert (ys.min(), xs.min()) == (11, 10)  # (32 - 10) / 2, (32 - 12) / 2

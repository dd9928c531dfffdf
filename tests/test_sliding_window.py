import itertools

import numpy as np
import torch
import torch.nn as nn

from autoseg.inference.sliding_window import gaussian_importance, sliding_window_logits, window_starts


class PointwiseNet(nn.Module):
    """Logits (-x, x) per voxel: the sliding-window average must reproduce the input exactly, wherever tiles lie."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return torch.cat([-x, x], 1)


class ShiftNet(nn.Module):
    """Not flip-equivariant: mirroring must still undo its own flips so tiles agree."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x + 0.1 * torch.roll(x, 1, -1)], 1)


def test_window_starts_cover_with_overlap():
    for size, patch in [(100, 32), (32, 32), (10, 32), (257, 64)]:
        s = window_starts(size, patch, 0.5)
        assert s[0] == 0 and (size <= patch or s[-1] == size - patch)
        assert all(b - a <= patch // 2 + 1 for a, b in zip(s, s[1:]))


def test_gaussian_is_centred():
    g = gaussian_importance((9, 9)).numpy()
    assert g.argmax() == 40 and g.min() > 0


def test_3d_pointwise_known_answer():
    x = torch.randn(1, 7, 37, 29)
    out = sliding_window_logits(PointwiseNet(3), x, (4, 16, 16), 2, step=0.5, mirror=True)
    assert out.shape == (2, 7, 37, 29)
    assert torch.allclose(out[1], x[0], atol=1e-5)


def test_2d_network_on_volume_and_padding():
    x = torch.randn(1, 3, 10, 12)  # smaller than the patch: padded, then cropped back
    out = sliding_window_logits(PointwiseNet(2), x, (16, 16), 2, mirror=True, tile_batch=2)
    assert out.shape == (2, 3, 10, 12)
    assert torch.allclose(out[1], x[0], atol=1e-5)


def test_mirroring_averages_flipped_predictions():
    x = torch.randn(1, 1, 8, 8)
    net = ShiftNet()
    plain = sliding_window_logits(net, x, (8, 8), 2, mirror=False)
    mirrored = sliding_window_logits(net, x, (8, 8), 2, mirror=True)
    xs = x[0, 0]
    expected = sum(torch.flip(torch.flip(xs, a) + 0.1 * torch.roll(torch.flip(xs, a), 1, -1), a)
                   for a in [(), (0,), (1,), (0, 1)]) / 4
    assert torch.allclose(plain[1, 0], xs + 0.1 * torch.roll(xs, 1, -1), atol=1e-5)
    assert torch.allclose(mirrored[1, 0], expected, atol=1e-5)
    assert not np.allclose(plain.numpy(), mirrored.numpy())


def test_tiles_run_in_bounded_batches():
    """A large volume needs many tiles, but the network never sees more than ``tile_batch`` at once, so memory
    holds the output accumulator plus one batch of tiles' logits (times the mirrored copies being summed)."""
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return torch.zeros((x.shape[0], 3, *x.shape[2:]))

    data = torch.zeros((1, 40, 200, 200))
    out = sliding_window_logits(Recorder(), data, (64, 64), 3, step=0.5, mirror=True, tile_batch=4)
    n_tiles = 40 * len(window_starts(200, 64, 0.5)) ** 2
    assert out.shape == (3, 40, 200, 200)
    assert max(seen) == 4 and sum(seen) == n_tiles * 4  # 4 mirrored passes per tile in 2D
    assert len(seen) == -(-n_tiles // 4) * 4


def _reference_logits(net, data, window, step):
    """Gaussian-weighted average with an explicit weight volume, tile by tile, no mirroring (3D network)."""
    spatial = data.shape[1:]
    starts = [window_starts(s, w, step) for s, w in zip(spatial, window)]
    g = gaussian_importance(window).double()
    acc = torch.zeros((2, *spatial), dtype=torch.float64)
    weight = torch.zeros(spatial, dtype=torch.float64)
    for t in itertools.product(*starts):
        sl = tuple(slice(s, s + w) for s, w in zip(t, window))
        acc[(slice(None),) + sl] += net(data[(slice(None),) + sl][None])[0].double() * g
        weight[sl] += g
    return (acc / weight).float()


def test_separable_weights_equal_a_weight_volume():
    """The normalisation by per-axis weight sums gives the same average as summing a weight volume over the tiles
    (a convolution, so neighbouring tiles disagree and the weights matter)."""
    torch.manual_seed(0)
    net = nn.Conv3d(1, 2, 3, padding=1)
    x = torch.randn(1, 13, 41, 30)
    with torch.no_grad():
        out = sliding_window_logits(net, x, (6, 16, 12), 2, step=0.5, mirror=False)
        ref = _reference_logits(net, x, (6, 16, 12), 0.5)
    assert torch.allclose(out, ref, atol=1e-5)
    # and the tiles do disagree: an unweighted mean would differ
    assert not torch.allclose(out, net(x[None])[0], atol=1e-3)

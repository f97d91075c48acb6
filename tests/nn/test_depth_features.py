"""DepthComparisonFeatures: Shotton's f(I, x) = d(x + u/d(x)) - d(x + v/d(x)) on hand-made depth."""

from __future__ import annotations

import pytest
import torch

from lightning_synth.nn import DepthComparisonFeatures
from lightning_synth.nn.depth_features import REFERENCE_WIDTH

H, W = 8, 32
# At width 32, an offset o (pixel·m at 320 px) moves o * W / (REFERENCE_WIDTH * d) pixels.
PIXELS_PER_OFFSET = W / REFERENCE_WIDTH


def _features(offsets: list[list[list[float]]], **options) -> DepthComparisonFeatures:
    """A module with the given ``(u, v)`` offsets, ``F x 2 x 2`` (pixel·m)."""
    module = DepthComparisonFeatures(num_features=len(offsets), **options)
    with torch.no_grad():
        module.offsets.copy_(torch.tensor(offsets))
    return module


def _ramp(background_from: int = W) -> torch.Tensor:
    """``1 x 1 x H x W`` depth ``2 + 0.01 x`` (metres), background from column ``background_from``."""
    depth = (2.0 + 0.01 * torch.arange(W, dtype=torch.float32)).expand(H, W).clone()
    depth[:, background_from:] = 0
    return depth[None, None]


def test_feature_is_the_depth_difference_at_offsets_scaled_by_inverse_depth() -> None:
    depth = _ramp()
    d = 2.0 + 0.01 * 10  # pixel (4, 10)
    reach = 3  # pixels along x
    module = _features([[[reach * d / PIXELS_PER_OFFSET, 0.0], [0.0, 0.0]]])
    features = module(depth)
    assert features.shape == (1, 1, H, W)
    # d(x + 3 px) - d(x) = 0.03 m on the ramp
    assert features[0, 0, 4, 10].item() == pytest.approx(0.03, abs=1e-5)


def test_probes_on_background_or_outside_the_image_read_the_background_constant() -> None:
    depth = _ramp(background_from=14)
    d = 2.0 + 0.01 * 10
    module = _features(
        [
            [[4 * d / PIXELS_PER_OFFSET, 0.0], [0.0, 0.0]],  # lands on column 14: background
            [[0.0, 0.0], [-50 * d / PIXELS_PER_OFFSET, 0.0]],  # 50 px left: off the image
        ],
        background=10.0,
    )
    features = module(depth)[0, :, 4, 10]
    assert features[0].item() == pytest.approx(10.0 - d, abs=1e-5)
    assert features[1].item() == pytest.approx(d - 10.0, abs=1e-5)
    # background pixels themselves get no features
    assert torch.count_nonzero(module(depth)[..., 14:]) == 0


def test_offsets_shrink_with_distance_so_the_probe_hits_the_same_body_point() -> None:
    # Two frames of the same flat surface, at 2 m and 4 m, each with a marker 4 px and
    # 2 px to the right of the probed pixel: the probe reaches 4 px at 2 m, 2 px at 4 m.
    depth = torch.zeros(2, 1, H, W)
    for frame, distance in enumerate((2.0, 4.0)):
        depth[frame, 0, :, :20] = distance
        depth[frame, 0, :, 12] = distance + 0.5
        depth[frame, 0, :, 14] = distance + 1.0
    module = _features([[[4 * 2.0 / PIXELS_PER_OFFSET, 0.0], [0.0, 0.0]]])
    features = module(depth)[:, 0, 4, 10]
    assert features.tolist() == pytest.approx([1.0, 0.5], abs=1e-5)


def test_vertical_offsets_use_the_same_scale_as_horizontal_ones() -> None:
    depth = torch.full((1, 1, 16, W), 2.0)
    depth[0, 0, 9, :] = 3.0  # a marker row 3 px below row 6
    module = _features([[[0.0, 3 * 2.0 / PIXELS_PER_OFFSET], [0.0, 0.0]]])
    assert module(depth)[0, 0, 6, 10].item() == pytest.approx(1.0, abs=1e-5)


def test_foreground_only_matches_the_dense_computation() -> None:
    torch.manual_seed(0)
    depth = torch.rand(2, 1, 12, 20) * 3 + 1
    depth[depth < 2.0] = 0  # scattered background
    fast = DepthComparisonFeatures(num_features=24, seed=3)
    dense = DepthComparisonFeatures(num_features=24, seed=3, foreground_only=False)
    assert torch.allclose(fast(depth), dense(depth), atol=1e-6)
    features, index = fast.foreground_features(depth)
    assert features.shape == (int((depth > 0).sum()), 24)
    assert torch.equal(index, (depth.flatten() > 0).nonzero()[:, 0])


def test_probes_never_read_a_neighbouring_frame_of_the_batch() -> None:
    # Frames are sampled together; a probe leaving frame 0 at the bottom must read the
    # background, not frame 1, and the result must not depend on the batch.
    depth = torch.stack([torch.full((1, 6, 10), 2.0), torch.full((1, 6, 10), 3.0)])
    depth[1, 0, 0, 0] = 0.35  # a very near pixel: the largest reach
    module = _features([[[0.0, 4 * 2.0 / PIXELS_PER_OFFSET], [0.0, 0.0]]], background=10.0)
    batched = module(depth)
    assert batched[0, 0, 5, 3].item() == pytest.approx(10.0 - 2.0)
    assert batched[1, 0, 0, 3].item() == pytest.approx(0.0)
    for frame in range(2):
        assert torch.allclose(batched[frame], module(depth[frame : frame + 1])[0])


def test_all_background_batch_gives_zero_features() -> None:
    module = DepthComparisonFeatures(num_features=8)
    assert torch.count_nonzero(module(torch.zeros(3, 1, 9, 11))) == 0
    features, index = module.foreground_features(torch.zeros(3, 1, 9, 11))
    assert features.shape == (0, 8) and index.shape == (0,)


def test_learnable_offsets_get_gradients_and_fixed_ones_are_buffers() -> None:
    depth = _ramp(background_from=20)
    depth[..., 5:9] += 0.3  # some structure for the probes to find
    learnable = DepthComparisonFeatures(num_features=16, max_offset=30, learnable=True)
    assert [name for name, _ in learnable.named_parameters()] == ["offsets"]
    learnable(depth).pow(2).sum().backward()
    assert learnable.offsets.grad is not None
    assert torch.isfinite(learnable.offsets.grad).all() and learnable.offsets.grad.abs().sum() > 0
    fixed = DepthComparisonFeatures(num_features=16)
    assert list(fixed.parameters()) == [] and "offsets" in fixed.state_dict()
    with pytest.raises(ValueError, match="bilinear"):
        DepthComparisonFeatures(learnable=True, interpolation="nearest")


def test_same_seed_gives_the_same_offsets() -> None:
    assert torch.equal(
        DepthComparisonFeatures(seed=5).offsets, DepthComparisonFeatures(seed=5).offsets
    )
    assert not torch.equal(
        DepthComparisonFeatures(seed=5).offsets, DepthComparisonFeatures(seed=6).offsets
    )

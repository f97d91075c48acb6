"""DepthForest: scikit-learn trains the trees, tensors evaluate them, the state dict keeps them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from lightning_synth.nn import DepthComparisonFeatures, DepthForest
from lightning_synth.rendering.body import PART_NAMES, BodyRenderer

K = len(PART_NAMES)


@pytest.fixture(scope="module")
def pixels() -> dict[str, torch.Tensor]:
    """Depth features and part labels of the person pixels of small rendered frames
    (people facing the camera within 60 degrees): 24 frames to train on, 4 to predict."""
    features = DepthComparisonFeatures(num_features=24, seed=1)
    frames = BodyRenderer(48, 64, seed=7, yaw_range=(-60.0, 60.0)).render(range(28))
    x, index = features.foreground_features(frames.depth[:, None])
    y = frames.parts.flatten()[index]
    train = index < 24 * 48 * 64
    return {"x": x[train], "y": y[train], "x_test": x[~train], "y_test": y[~train]}


@pytest.mark.parametrize("method", ["extra_trees", "random_forest"])
def test_tensor_inference_matches_scikit_learn(pixels, method: str) -> None:
    forest = DepthForest(24, K, num_trees=3, max_depth=12, method=method, seed=3)
    assert not forest.fitted
    fitted = forest.fit_forest(pixels["x"], pixels["y"])
    assert forest.fitted and int(forest.levels) == max(t.tree_.max_depth for t in fitted)
    for x in (pixels["x"], pixels["x_test"]):
        scores = forest(x)
        assert scores.shape == (len(x), K) and torch.isfinite(scores).all()
        expected = np.zeros((len(x), K))
        expected[:, fitted.classes_] = fitted.predict_proba(x.numpy())
        proba = scores.exp() - 1e-6
        np.testing.assert_allclose(proba.numpy(), expected, atol=1e-5)
        # argmax is scikit-learn's predict, except between classes tied in float64
        # that float32 rounding orders differently (or the other way round).
        ours, theirs = scores.argmax(1).numpy(), fitted.predict(x.numpy())
        differ = np.nonzero(ours != theirs)[0]
        assert len(differ) <= 0.01 * len(x)
        rows = expected[differ]
        gap = (
            rows[np.arange(len(differ)), theirs[differ]]
            - rows[np.arange(len(differ)), ours[differ]]
        )
        assert (np.abs(gap) < 1e-6).all()
    # The forest learned something: on frames it never saw it beats always answering
    # the most frequent part (about 0.1 here; the forest gets about 0.2).
    accuracy = (forest(pixels["x_test"]).argmax(1) == pixels["y_test"]).float().mean()
    majority = (pixels["y_test"] == pixels["y"].bincount().argmax()).float().mean()
    assert accuracy > 1.5 * majority


def test_thresholds_take_scikit_learns_branch_at_float32_ties() -> None:
    """Features equal to the float32 rounding of a float64 threshold go the same way."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] > 0.1).astype(int) + 2 * (x[:, 1] > -0.3)
    forest = DepthForest(3, 4, num_trees=2, max_depth=6, method="random_forest")
    fitted = forest.fit_forest(torch.from_numpy(x), torch.from_numpy(y))
    # Probe every threshold exactly, just above and just below (in float32).
    thresholds = np.concatenate([t.tree_.threshold[t.tree_.feature >= 0] for t in fitted])
    features = np.concatenate([t.tree_.feature[t.tree_.feature >= 0] for t in fitted])
    probes = np.repeat(x[:1], 3 * len(thresholds), 0)
    for k, (t, f) in enumerate(zip(thresholds, features, strict=True)):
        t32 = np.float32(t)
        for j, value in enumerate((t32, np.nextafter(t32, np.inf), np.nextafter(t32, -np.inf))):
            probes[3 * k + j, f] = value
    proba = forest(torch.from_numpy(probes)).exp() - 1e-6
    np.testing.assert_allclose(proba.numpy(), fitted.predict_proba(probes), atol=1e-5)


def test_unknown_labels_are_left_out_and_absent_classes_score_zero() -> None:
    x = torch.randn(300, 4)
    y = (x[:, 0] > 0).long() * 3  # classes 0 and 3 only
    y[:50] = -1
    forest = DepthForest(4, 5, num_trees=1, max_depth=4)
    fitted = forest.fit_forest(x, y)
    assert fitted.classes_.tolist() == [0, 3]
    proba = forest(x).exp()
    assert torch.allclose(proba[:, [1, 2, 4]], torch.full_like(proba[:, [1, 2, 4]], 1e-6))
    with pytest.raises(ValueError):
        forest.fit_forest(x, torch.full((300,), -1))
    with pytest.raises(ValueError):
        forest.fit_forest(x[:, :3], y)


def test_state_dict_round_trip_restores_the_forest(pixels) -> None:
    forest = DepthForest(24, K, num_trees=3, max_depth=10, seed=2)
    forest.fit_forest(pixels["x"], pixels["y"])
    buffer = io.BytesIO()
    torch.save({"model": torch.nn.Sequential(forest).state_dict()}, buffer)
    buffer.seek(0)
    fresh = torch.nn.Sequential(DepthForest(24, K, num_trees=3, max_depth=10))
    assert not fresh[0].fitted
    fresh.load_state_dict(torch.load(buffer)["model"])  # strict: every buffer matched
    assert fresh[0].fitted
    torch.testing.assert_close(fresh(pixels["x_test"]), forest(pixels["x_test"]), rtol=0, atol=0)
    # Loading an unfitted state dict empties a fitted forest again.
    fresh[0].load_state_dict(DepthForest(24, K).state_dict())
    assert not fresh[0].fitted


def test_a_fitted_and_a_reloaded_forest_export_with_torch_export(pixels) -> None:
    forest = DepthForest(24, K, num_trees=2, max_depth=6, seed=2)
    forest.fit_forest(pixels["x"], pixels["y"])
    fresh = DepthForest(24, K, num_trees=2, max_depth=6)
    fresh.load_state_dict(forest.state_dict())
    sample = pixels["x_test"][:50]
    exported = torch.export.export(fresh, (sample,))
    torch.testing.assert_close(exported.module()(sample), forest(sample), rtol=0, atol=0)


def test_feature_maps_and_unfitted_forest() -> None:
    forest = DepthForest(4, 3, num_trees=2, max_depth=3)
    maps = torch.randn(2, 4, 5, 6)
    with pytest.warns(UserWarning, match="not fitted"):
        uniform = forest(maps)
    assert uniform.shape == (2, 3, 5, 6)
    torch.testing.assert_close(uniform.softmax(1), torch.full_like(uniform, 1 / 3))
    flat = maps.movedim(1, -1).reshape(-1, 4)
    forest.fit_forest(flat, (flat[:, 0] > 0).long() + (flat[:, 1] > 0).long())
    dense = forest(maps)
    torch.testing.assert_close(dense.movedim(1, -1).reshape(-1, 3), forest(flat))
    assert list(forest.parameters()) == [] and not dense.requires_grad
    assert DepthForest.pointwise


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_forest_runs_on_gpu_like_on_cpu(pixels) -> None:
    forest = DepthForest(24, K, num_trees=3, max_depth=12)
    forest.fit_forest(pixels["x"], pixels["y"])
    on_gpu = forest.to("cuda")(pixels["x_test"].cuda()).cpu()
    torch.testing.assert_close(on_gpu, forest.cpu()(pixels["x_test"]))

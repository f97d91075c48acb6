"""Feature networks (VGG19 weights: ImageNet, local file, random; any module) and style losses."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_synth.nn import DigitConvNet
from lightning_synth.nn.style_losses import content_loss, gram_matrix, style_loss
from lightning_synth.nn.vgg import (
    IMAGENET_WEIGHTS_FILE,
    NamedFeatures,
    VGGFeatures,
    WeightsUnavailableError,
)

SHALLOW = ["conv1_1", "conv2_1"]


def test_random_weights_give_named_post_relu_features() -> None:
    torch.manual_seed(0)
    network = VGGFeatures("random", layers=SHALLOW)
    found = network(torch.rand(2, 3, 32, 32))
    assert list(found) == SHALLOW
    assert found["conv1_1"].shape == (2, 64, 32, 32)
    assert found["conv2_1"].shape == (2, 128, 16, 16)  # after one pooling
    assert all(float(value.min()) >= 0 for value in found.values())  # post-ReLU
    assert not any(p.requires_grad for p in network.parameters())
    # Cut after the deepest layer asked for: conv1_1, conv1_2, pool, conv2_1.
    assert sum(isinstance(m, nn.Conv2d) for m in network.modules()) == 3


def test_imagenet_weights_offline_give_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(WeightsUnavailableError) as raised:
        VGGFeatures("imagenet", layers=SHALLOW)
    message = str(raised.value)
    expected = tmp_path / "hub" / "checkpoints" / IMAGENET_WEIGHTS_FILE
    assert str(expected) in message  # where to put the file
    assert "weights: random" in message and "no internet" in message


def test_local_weights_file_in_torchvision_layout(tmp_path: Path) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(1)
    reference = make_layers(cfgs["E"])  # torchvision's vgg19().features
    state = {
        f"features.{k}": v for k, v in reference.state_dict().items() if int(k.split(".")[0]) <= 5
    }
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    network = VGGFeatures(str(path), layers=SHALLOW)
    images = torch.rand(1, 3, 16, 16)
    normalised = (images - network.mean) / network.std
    torch.testing.assert_close(network(images)["conv2_1"], reference[:7](normalised))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VGGFeatures(str(tmp_path / "missing.pth"), layers=SHALLOW)
    with pytest.raises(ValueError, match="lack"):
        VGGFeatures(str(path), layers=["conv3_1"])  # the file stops at conv2_1


def test_unknown_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="conv6_1"):
        VGGFeatures("random", layers=["conv6_1"])


def test_any_network_as_named_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = DigitConvNet(in_channels=3)
    checkpoint = {"state_dict": {f"backbone.{k}": v for k, v in trained.state_dict().items()}}
    torch.save(checkpoint, tmp_path / "classifier.ckpt")
    features = NamedFeatures(
        DigitConvNet(in_channels=3),
        layers={"block1": "conv.2", "block2": "conv.9"},
        weights=str(tmp_path / "classifier.ckpt"),
        prefix="backbone.",
    )
    features.train()  # batch norm must stay in inference mode
    images = torch.rand(2, 3, 16, 16)
    found = features(images)
    assert list(found) == ["block1", "block2"]
    assert found["block2"].shape == (2, 64, 8, 8)
    trained.eval()  # the loaded weights are the classifier's
    torch.testing.assert_close(found["block1"], trained.conv[:3](images))
    with pytest.raises(ValueError, match="no submodule"):
        NamedFeatures(DigitConvNet(), layers={"x": "does.not.exist"})


def test_gram_matrix_of_a_tiny_example() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # 2 channels, 2 positions
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 2  # F F^T / (H W)
    torch.testing.assert_close(gram_matrix(features)[0], expected)
    # Bigger images of the same texture have the same Gram matrix.
    tiled = features.repeat(1, 1, 3, 4)
    torch.testing.assert_close(gram_matrix(tiled)[0], expected)


def test_content_and_style_losses() -> None:
    torch.manual_seed(0)
    content = {"a": torch.rand(2, 4, 8, 8)}
    assert content_loss(content, content, ["a"]).abs().max() == 0  # zero at the content
    style_grams = {"a": gram_matrix(torch.rand(1, 4, 8, 8))[0]}
    other = {"a": torch.rand(2, 4, 8, 8) * 3}
    losses = style_loss(other, style_grams, ["a"])
    assert losses.shape == (2,) and bool((losses > 0).all())
    # Relative errors: scaling the network's activations changes nothing.
    scaled = style_loss({"a": other["a"] * 10}, {"a": style_grams["a"] * 100}, ["a"])
    torch.testing.assert_close(scaled, losses)
    shifted = {"a": content["a"] * 1.1}
    torch.testing.assert_close(
        content_loss(shifted, content, ["a"]), torch.full((2,), 0.01), rtol=1e-4, atol=1e-6
    )

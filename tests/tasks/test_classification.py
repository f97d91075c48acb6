"""ImageClassifier: labelled-only loss, injected networks, checkpoints, predictions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, FAST_TRAINER
from torch import nn

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, REAL, RENDERED
from lightning_synth.tasks import ImageClassifier
from lightning_synth.tasks.classification import masked_cross_entropy

QUICK = str(CONFIGS / "quickstart.yaml")
SMALL_DATA = [
    "--data.init_args.rendered.init_args.train_length=64",
    "--data.init_args.rendered.init_args.val_length=16",
    "--data.init_args.rendered.init_args.test_length=16",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
]


def test_hidden_labels_contribute_nothing_to_the_loss() -> None:
    logits = torch.randn(4, 10, requires_grad=True)
    labels = torch.tensor([3, IGNORE_LABEL, 5, IGNORE_LABEL])
    loss = masked_cross_entropy(logits, labels)
    loss.backward()
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]]))
    assert torch.all(logits.grad[[1, 3]] == 0)
    hidden = masked_cross_entropy(logits, torch.full((4,), IGNORE_LABEL))
    assert hidden.item() == 0.0 and hidden.requires_grad


def test_training_step_ignores_real_samples_with_hidden_labels() -> None:
    model = ImageClassifier(in_channels=1, image_size=16, log_images=False)
    batch = {
        IMAGE: torch.rand(6, 1, 16, 16),
        LABEL: torch.tensor([1, 2, 3, IGNORE_LABEL, IGNORE_LABEL, IGNORE_LABEL]),
        DOMAIN: torch.tensor([RENDERED] * 3 + [REAL] * 3),
    }
    model.eval()  # batch-norm statistics and dropout must not differ between the two calls
    loss = model.shared_step(batch, "train")["loss"]
    expected = torch.nn.functional.cross_entropy(model(batch[IMAGE][:3]), batch[LABEL][:3])
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)


def test_injected_backbone_without_out_features_is_sized_by_probe() -> None:
    backbone = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    model = ImageClassifier(feature_extractor=backbone, num_classes=4, image_size=20)
    assert model.classifier.in_features == 20
    assert model(torch.rand(2, 3, 20, 20)).shape == (2, 4)
    assert model.features(torch.rand(2, 3, 20, 20)).shape == (2, 20)
    with pytest.raises(ValueError, match="num_classes"):
        ImageClassifier(num_classes=1)


def test_backbone_from_yaml_reloads_from_the_checkpoint(tmp_path: Path, run_cli) -> None:
    """A network plugged in from the config comes back with ``load_from_checkpoint``."""
    config = tmp_path / "custom.yaml"
    config.write_text(
        "model:\n"
        "  class_path: ImageClassifier\n"
        "  init_args:\n"
        "    in_channels: 1\n"
        "    feature_extractor:\n"
        "      class_path: lightning_synth.nn.DigitConvNet\n"
        "      init_args: {in_channels: 1, width: 8, out_features: 24}\n"
    )
    run_dir = run_cli("fit", f"--config={QUICK}", f"--config={config}", *FAST_TRAINER, *SMALL_DATA)
    model = ImageClassifier.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert model.feature_extractor.out_features == 24 and model.classifier.in_features == 24
    images = torch.rand(3, 1, 28, 28)
    model.eval()
    assert model(images).shape == (3, 10)


def test_best_checkpoint_is_chosen_by_a_label_free_validator(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer
    from test_dann import squares_datamodule

    from lightning_synth.callbacks import ModelSelection

    model = ImageClassifier(num_classes=4, in_channels=1, image_size=16, log_images=False)
    assert model.monitor == "val/select_im" and model.mode == "max"
    assert ImageClassifier(select_by="snd").monitor == "val/select_snd"
    options = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "limit_train_batches": 2,
        "limit_val_batches": 4,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "default_root_dir": tmp_path,
    }
    trainer = Trainer(**options)
    trainer.fit(model, squares_datamodule())
    assert 0.0 <= float(trainer.callback_metrics["val/select_im"]) <= math.log(4) + 1e-6
    # A Trainer's own ModelSelection is kept, not replaced by the task's.
    own = ModelSelection(validators=("im", "rendered_acc"))
    trainer = Trainer(**options, callbacks=[own])
    trainer.fit(model, squares_datamodule())
    assert [c for c in trainer.callbacks if isinstance(c, ModelSelection)] == [own]
    assert "val/select_rendered_acc" in trainer.callback_metrics

"""Tests of ``NoisyImageDataModule`` and the real noisy-photograph source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_synth.batch import DOMAIN, IMAGE, NAME, REAL, REFERENCE, RENDERED, VALID
from lightning_synth.datamodules.noisy_images import (
    NoisyImageDataModule,
    NoisyPhotographs,
    find_pairs,
    scene_of,
)
from lightning_synth.errors import InputError
from lightning_synth.rendering.noise import GaussianNoise


def _write(path: Path, height: int, width: int, seed: int = 0, gray: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    shape = (height, width) if gray else (height, width, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def _write_16bit(path: Path, height: int, width: int) -> Path:
    values = np.linspace(0, 65535, height * width).reshape(height, width).astype(np.uint16)
    Image.fromarray(values).save(path)
    return path


def _polyu(root: Path) -> Path:
    """Two scenes of PolyU-style pairs (odd sizes, JPEG) and one noisy image without pair."""
    for index, (scene, crop) in enumerate(
        [("cam_a_chair", 1), ("cam_a_chair", 2), ("cam_b_desk", 7)]
    ):
        _write(root / f"{scene}_{crop}_real.JPG", 21, 27, seed=index)
        _write(root / f"{scene}_{crop}_mean.JPG", 21, 27, seed=index + 10)
    _write(root / "cam_c_wall_3_real.JPG", 19, 23, seed=5)
    return root


def _clean(root: Path) -> Path:
    _write(root / "a.png", 40, 44, seed=1)
    _write(root / "b.jpg", 36, 50, seed=2, gray=True)
    _write_16bit(root / "c.png", 33, 35)
    return root


def test_polyu_pairs_and_scenes(tmp_path: Path) -> None:
    pairs = find_pairs(_polyu(tmp_path / "polyu"))
    assert [p.name for p in pairs] == [
        "cam_a_chair_1",
        "cam_a_chair_2",
        "cam_b_desk_7",
        "cam_c_wall_3",
    ]
    assert pairs[0].reference is not None and pairs[0].reference.endswith("cam_a_chair_1_mean.JPG")
    assert pairs[-1].reference is None
    assert scene_of("cam_a_chair_11") == "cam_a_chair"
    source = NoisyPhotographs(root=str(tmp_path / "polyu"), val_scenes=["cam_b_desk"])
    assert [p.name for p in source.stage_pairs("val")] == ["cam_b_desk_7"]
    assert [p.name for p in source.stage_pairs("test")] == ["cam_a_chair_1", "cam_a_chair_2"]
    assert len(source.stage_pairs("train")) == len(source.stage_pairs("predict")) == 4
    everything = NoisyPhotographs(root=str(tmp_path / "polyu"))
    assert everything.stage_pairs("val") == everything.stage_pairs("test")
    with pytest.raises(ValueError, match="val_scenes"):
        NoisyPhotographs(root=str(tmp_path / "polyu"), val_scenes=["nowhere"]).pairs()


def test_noisy_and_clean_subfolders(tmp_path: Path) -> None:
    _write(tmp_path / "noisy" / "x.png", 20, 30)
    _write(tmp_path / "noisy" / "y.png", 20, 30)
    _write(tmp_path / "clean" / "x.png", 20, 30)
    pairs = find_pairs(tmp_path)
    assert [(p.name, p.reference is not None) for p in pairs] == [("x", True), ("y", False)]
    # A plain folder: noisy photographs without references.
    plain = find_pairs(_write(tmp_path / "plain" / "z.jpg", 9, 9).parent)
    assert [(p.name, p.reference) for p in plain] == [("z", None)]


def test_clear_errors_for_empty_folders_and_mismatched_pairs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="has no .* images"):
        find_pairs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no folder"):
        find_pairs(tmp_path / "missing")
    _write(tmp_path / "bad" / "s_1_real.png", 20, 30)
    _write(tmp_path / "bad" / "s_1_mean.png", 20, 31)
    with pytest.raises(ValueError, match=r"s_1_real.png.*20 x 30.*s_1_mean.png.*20 x 31"):
        find_pairs(tmp_path / "bad")
    # The DataModule reports it when set up, before any training.
    module = NoisyImageDataModule(
        clean=[str(_clean(tmp_path / "clean"))],
        real=NoisyPhotographs(root=str(tmp_path / "bad")),
    )
    with pytest.raises(ValueError, match="pixel for pixel"):
        module.setup("fit")


def _module(tmp_path: Path, **options: object) -> NoisyImageDataModule:
    settings: dict[str, object] = {
        "clean": [str(_clean(tmp_path / "clean"))],
        "noise": GaussianNoise(sigma=0.1),
        "real": NoisyPhotographs(root=str(_polyu(tmp_path / "polyu")), val_scenes=["cam_b_desk"]),
        "patch_size": 16,
        "train_length": 12,
        "batch_size": 4,
        "real_fraction": 0.5,
    }
    return NoisyImageDataModule(**{**settings, **options})  # type: ignore[arg-type]


def test_training_batches_mix_rendered_pairs_and_real_images_without_references(
    tmp_path: Path,
) -> None:
    module = _module(tmp_path)
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert len(batches) == 6  # 12 rendered crops, 2 per batch
    batch = batches[0]
    assert batch[IMAGE].shape == batch[REFERENCE].shape == (4, 3, 16, 16)
    assert batch[VALID].shape == (4, 16, 16)
    real = batch[DOMAIN] == REAL
    assert int(real.sum()) == 2
    assert not batch[VALID][real].any() and batch[VALID][~real].all()
    assert torch.equal(batch[REFERENCE][real], torch.zeros_like(batch[REFERENCE][real]))
    noise = batch[IMAGE][~real] - batch[REFERENCE][~real]
    assert 0.05 < noise.std() < 0.12  # sigma 0.1, clipped at 0 and 1
    # Sample i is the same crop and noise whenever it is drawn.
    dataset = module.domain_dataset("train", RENDERED)
    assert torch.equal(dataset[3][IMAGE], dataset[3][IMAGE])
    assert not torch.equal(dataset[3][IMAGE], dataset[4][IMAGE])


def test_train_references_teach_the_pairs_outside_the_held_out_scenes(tmp_path: Path) -> None:
    root = str(_polyu(tmp_path / "polyu"))
    source = NoisyPhotographs(
        root=root, val_scenes=["cam_b_desk"], test_scenes=["cam_a_chair_2"], train_references=True
    )
    assert [p.name for p in source.stage_pairs("val")] == ["cam_b_desk_7"]
    assert [p.name for p in source.stage_pairs("test")] == ["cam_a_chair_2"]
    assert [p.name for p in source.taught_pairs()] == ["cam_a_chair_1"]
    assert NoisyPhotographs(root=root, val_scenes=["cam_b_desk"]).taught_pairs() == []
    module = _module(tmp_path, real=source, real_fraction=0.5)
    module.setup("fit")
    real = module.domain_dataset("train", REAL)
    samples = [real[i] for i in range(len(real))]
    # Crops take the four photographs in turn; only the first one's reference is taught.
    assert [bool(s[VALID].all()) for s in samples[:4]] == [True, False, False, False]
    assert sum(bool(s[VALID].any()) for s in samples) == len(samples) // 4
    taught = samples[0]
    assert taught[REFERENCE].abs().sum() > 0 and not torch.equal(taught[REFERENCE], taught[IMAGE])
    # Validation and test still score their own scenes, with references.
    module.setup("validate")
    assert [b[NAME][0] for b in module.val_dataloader() if int(b[DOMAIN]) == REAL] == [
        "cam_b_desk_7"
    ]
    assert [b[NAME][0] for b in module.test_dataloader() if int(b[DOMAIN]) == REAL] == [
        "cam_a_chair_2"
    ]
    # Without real crops in the batches the references would silently teach nothing.
    with pytest.raises(InputError, match="set real_fraction above 0"):
        _module(tmp_path, real=source, real_fraction=0.0)
    # Without both held-out sets, a score could come from a taught photograph.
    with pytest.raises(ValueError, match="set val_scenes and test_scenes"):
        NoisyPhotographs(root=root, val_scenes=["cam_b_desk"], train_references=True)
    with pytest.raises(ValueError, match="test_scenes .*nowhere"):
        NoisyPhotographs(root=root, val_scenes=["cam_b_desk"], test_scenes=["nowhere"]).pairs()


def test_evaluation_whole_images_of_both_domains_and_predict(tmp_path: Path) -> None:
    module = _module(tmp_path, channels=1)
    module.setup("validate")
    val = list(module.val_dataloader())
    domains = [int(b[DOMAIN]) for b in val]
    assert domains.count(RENDERED) == 3 and domains.count(REAL) == 1
    sizes = {tuple(b[IMAGE].shape[-2:]) for b in val}
    assert {(40, 44), (36, 50), (33, 35), (21, 27)} == sizes  # whole images, any size
    assert all(b[IMAGE].shape[1] == 1 and bool(b[VALID].all()) for b in val)
    sixteen = next(b for b in val if b[NAME] == ["c"])
    assert len(torch.unique(sixteen[REFERENCE])) > 256  # 16-bit levels kept
    assert len(list(module.test_dataloader())) == 3 + 2
    predicted = list(module.predict_dataloader())
    assert [b[NAME][0] for b in predicted] == [
        "cam_a_chair_1",
        "cam_a_chair_2",
        "cam_b_desk_7",
        "cam_c_wall_3",
    ]
    assert not bool(predicted[-1][VALID].any())  # no reference known
    batched = _module(tmp_path, eval_batch_size=4)
    batched.setup("validate")
    with pytest.raises(ValueError, match="eval_batch_size: 1"):
        list(batched.val_dataloader())


def test_offline_stand_ins_without_a_folder(tmp_path: Path) -> None:
    module = NoisyImageDataModule(
        clean=["skimage:camera"], patch_size=16, train_length=4, batch_size=2, real_fraction=0.5
    )
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch[IMAGE].shape == (2, 3, 16, 16)
    assert sorted(batch[DOMAIN].tolist()) == [RENDERED, REAL]
    stand_in = module.domain_dataset("val", REAL)[0]
    assert stand_in[NAME] == "chelsea"
    assert (stand_in[IMAGE] - stand_in[REFERENCE]).abs().mean() > 1e-3


def _fine_detail(images: torch.Tensor) -> float:
    """Mean absolute difference of horizontal neighbours: the pixel-scale detail."""
    return float((images[..., 1:] - images[..., :-1]).abs().mean())


def test_zoom_softens_the_clean_crops_of_the_rendered_side_only(tmp_path: Path) -> None:
    plain = _module(tmp_path, noise=GaussianNoise(sigma=0.0), zoom=1.0)
    zoomed = _module(tmp_path, noise=GaussianNoise(sigma=0.0), zoom=[3.0, 4.0])
    for module in (plain, zoomed):
        module.setup("fit")
    crops = [
        torch.stack([m.domain_dataset("train", RENDERED)[i][REFERENCE] for i in range(12)])
        for m in (plain, zoomed)
    ]
    assert crops[1].shape == crops[0].shape == (12, 3, 16, 16)
    assert crops[1].min() >= 0 and crops[1].max() <= 1
    assert _fine_detail(crops[1]) < 0.6 * _fine_detail(crops[0])
    # deterministic per index, and the real side is never resampled
    rendered = zoomed.domain_dataset("train", RENDERED)
    assert torch.equal(rendered[5][REFERENCE], rendered[5][REFERENCE])
    real_plain, real_zoomed = (m.domain_dataset("train", REAL) for m in (plain, zoomed))
    assert torch.equal(real_plain[2][IMAGE], real_zoomed[2][IMAGE])
    # validation images stay whole
    whole = zoomed.domain_dataset("val", RENDERED)[0][REFERENCE]
    assert whole.shape == plain.domain_dataset("val", RENDERED)[0][REFERENCE].shape


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="zoom"):
        NoisyImageDataModule(zoom=[2.0, 1.0])
    with pytest.raises(ValueError, match="zoom"):
        NoisyImageDataModule(zoom=0.0)
    with pytest.raises(ValueError, match="real_fraction"):
        NoisyImageDataModule(real_fraction=1.5)
    with pytest.raises(ValueError, match="patch_size"):
        NoisyImageDataModule(patch_size=4)

"""BodyDepthDataModule (rendered + sensor-model frames) and DepthFolder (real frames on disk)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_body_datamodule
from lightning.pytorch import LightningModule
from PIL import Image

from lightning_synth.batch import (
    DOMAIN,
    IGNORE_LABEL,
    IMAGE,
    INTRINSICS,
    JOINTS,
    LABEL,
    REAL,
    RENDERED,
    VALID,
    check_batch,
)
from lightning_synth.datamodules import BodyDepthDataModule, DepthFolder
from lightning_synth.errors import InputError

H, W = 24, 32


def _datamodule(**options) -> BodyDepthDataModule:
    lengths = {"train_length": 12, "val_length": 4, "test_length": 4}
    settings = {"height": H, "width": W, "real_fraction": 0.5, **options}
    return tiny_body_datamodule(lengths=lengths, **settings)


def test_training_batches_mix_rendered_and_sensor_frames() -> None:
    batches = list(_datamodule().train_dataloader())
    assert len(batches) == 6  # one pass over 12 rendered frames at 2 per batch
    for batch in batches:
        check_batch(batch)
        assert batch[IMAGE].shape == (4, 1, H, W) and batch[LABEL].shape == (4, H, W)
        assert batch[JOINTS].shape[:2] == (4, 21) and batch[INTRINSICS].shape == (4, 4)
        assert (batch[DOMAIN] == REAL).sum() == 2 and (batch[DOMAIN] == RENDERED).sum() == 2
        # background is depth 0 and label -1, and every labelled pixel has a depth
        labelled = batch[LABEL] != IGNORE_LABEL
        assert labelled.any() and (batch[IMAGE][:, 0][labelled] > 0).all()
        assert torch.equal(batch[VALID], batch[IMAGE][:, 0] > 0)


def test_real_frames_come_from_the_sensor_model() -> None:
    batch = next(iter(_datamodule(batch_size=8, real_fraction=0.5).train_dataloader()))
    real, rendered = batch[IMAGE][batch[DOMAIN] == REAL], batch[IMAGE][batch[DOMAIN] == RENDERED]
    # the sensor quantises disparity: far fewer distinct depths than the clean renders
    assert real.unique().numel() < 0.5 * rendered.unique().numel()


def test_hidden_real_labels_stay_visible_for_evaluation() -> None:
    datamodule = _datamodule(hide_real_labels=True)
    train = next(iter(datamodule.train_dataloader()))
    assert (train[LABEL][train[DOMAIN] == REAL] == IGNORE_LABEL).all()
    assert (train[LABEL][train[DOMAIN] == RENDERED] != IGNORE_LABEL).any()
    val = next(iter(datamodule.val_dataloader()))
    assert set(val[DOMAIN].tolist()) == {RENDERED, REAL}
    assert (val[LABEL][val[DOMAIN] == REAL] != IGNORE_LABEL).any()


def test_stages_hold_different_frames_and_frames_are_reproducible() -> None:
    datamodule = _datamodule()
    val = datamodule.domain_dataset("val", RENDERED)[0][IMAGE]
    test = datamodule.domain_dataset("test", RENDERED)[0][IMAGE]
    train = datamodule.domain_dataset("train", RENDERED)[0][IMAGE]
    assert not torch.equal(val, test) and not torch.equal(val, train)
    assert torch.equal(val, _datamodule().domain_dataset("val", RENDERED)[0][IMAGE])


def test_a_batch_is_rendered_in_one_call_per_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_synth.rendering.body import BodyRenderer

    calls: list[int] = []
    render = BodyRenderer.render

    def counting(self, indices):
        calls.append(len(list(indices)))
        return render(self, indices)

    monkeypatch.setattr(BodyRenderer, "render", counting)
    next(iter(_datamodule(batch_size=4).train_dataloader()))
    assert calls == [2, 2]


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="real_fraction"):
        _datamodule(real_fraction=1.5)
    with pytest.raises(ValueError, match="at least 8"):
        _datamodule(height=4)
    with pytest.raises(ValueError, match="render_on must be 'workers' or 'device'"):
        _datamodule(render_on="gpu")


def _assert_same_batches(expected: list[dict], found: list[dict]) -> None:
    assert len(expected) == len(found)
    for one, other in zip(expected, found, strict=True):
        assert one.keys() == other.keys()
        for key in one:
            assert torch.equal(one[key].nan_to_num(-7.0), other[key].nan_to_num(-7.0)), key


def _on_device(datamodule: BodyDepthDataModule, loader, device: str = "cpu") -> list[dict]:
    """The batches as training sees them: moved to ``device``, then completed there."""
    moved = (
        datamodule.transfer_batch_to_device(batch, torch.device(device), 0) for batch in loader
    )
    return [datamodule.on_after_batch_transfer(batch, 0) for batch in moved]


def test_rendering_on_the_device_gives_the_batches_workers_give() -> None:
    workers = _datamodule(hide_real_labels=True)
    device = _datamodule(hide_real_labels=True, render_on="device", num_workers=1)
    deferred = next(iter(device.train_dataloader()))
    # what crosses from the worker is frame numbers, not frames
    assert IMAGE not in deferred and deferred["deferred"]["frame"].shape == (4,)
    _assert_same_batches(
        list(workers.train_dataloader()), _on_device(device, device.train_dataloader())
    )
    _assert_same_batches(
        list(workers.val_dataloader()), _on_device(device, device.val_dataloader())
    )
    hidden = _on_device(device, device.train_dataloader())[0]
    assert (hidden[LABEL][hidden[DOMAIN] == REAL] == IGNORE_LABEL).all()
    with pytest.raises(IndexError, match="index 12 out of range for 12 frames"):
        device.domain_dataset("train", RENDERED)[12]


def test_the_tasks_own_after_transfer_hook_still_runs() -> None:
    class Marking(LightningModule):
        def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
            batch["marked"] = batch[IMAGE].new_ones(())
            return batch

    datamodule = _datamodule(render_on="device")
    # Lightning calls the DataModule's hook in place of the task's
    datamodule.trainer = SimpleNamespace(lightning_module=Marking())
    (batch,) = _on_device(datamodule, [next(iter(datamodule.train_dataloader()))])
    assert batch[IMAGE].shape == (4, 1, H, W) and "marked" in batch


def test_rendering_on_the_device_keeps_frames_loaded_from_disk_in_place(tmp_path: Path) -> None:
    folder = DepthFolder(str(_folder(tmp_path, count=10, kind="npy")), 0.2, 0.2)
    workers = _datamodule(real=folder, real_fraction=0.25)
    device = _datamodule(real=folder, real_fraction=0.25, render_on="device")
    workers.prepare_data()
    _assert_same_batches(
        list(workers.train_dataloader()), _on_device(device, device.train_dataloader())
    )
    _assert_same_batches(
        list(workers.val_dataloader()), _on_device(device, device.val_dataloader())
    )


# -- DepthFolder ------------------------------------------------------------------------------
def _png16(path: Path, millimetres: np.ndarray) -> None:
    Image.fromarray(millimetres.astype(np.uint16)).save(path)


def _frame(height: int = H, width: int = W) -> np.ndarray:
    """A person-like blob at about 2.5 m, background 0, in metres."""
    depth = np.zeros((height, width), dtype=np.float32)
    depth[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = 2.5
    depth[height // 4, width // 3] = 2.25
    return depth


def _folder(root: Path, count: int = 5, kind: str = "png", labels: bool = True) -> Path:
    (root / "depth").mkdir(parents=True)
    if labels:
        (root / "labels").mkdir()
    for index in range(count):
        depth = _frame()
        if kind == "png":
            _png16(root / "depth" / f"f{index:02d}.png", np.round(depth * 1000))
        else:
            np.save(root / "depth" / f"f{index:02d}.npy", depth)
        if labels:
            parts = np.where(depth > 0, index % 31, 255).astype(np.uint8)
            parts[0, 0] = 7  # a label on a pixel without depth is dropped
            Image.fromarray(parts).save(root / "labels" / f"f{index:02d}.png")
    return root


@pytest.mark.parametrize("kind", ["png", "npy"])
def test_depth_folder_reads_millimetre_pngs_and_metre_arrays(tmp_path: Path, kind: str) -> None:
    source = DepthFolder(str(_folder(tmp_path, kind=kind)), val_fraction=0.2, test_fraction=0.2)
    source.prepare()
    train = source.dataset("train", H, W)
    assert len(train) == 3 and len(source.dataset("test", H, W)) == 1
    item = train[1]
    assert item[IMAGE].shape == (1, H, W) and item[IMAGE].dtype == torch.float32
    assert torch.allclose(item[IMAGE][0], torch.from_numpy(_frame()), atol=1e-6)
    assert set(item[LABEL].unique().tolist()) == {IGNORE_LABEL, 1}
    assert item[LABEL][0, 0] == IGNORE_LABEL  # no depth there
    assert torch.isnan(item[JOINTS]).all() and item[DOMAIN] == REAL
    focal = (W / 2) / math.tan(math.radians(58.5) / 2)  # Kinect v1 default
    assert item[INTRINSICS].tolist() == pytest.approx([focal, focal, (W - 1) / 2, (H - 1) / 2])


def test_depth_folder_resizes_frames_and_their_intrinsics(tmp_path: Path) -> None:
    (tmp_path / "depth").mkdir()
    _png16(tmp_path / "depth" / "a.png", np.round(_frame(2 * H, 2 * W) * 1000))
    source = DepthFolder(
        str(tmp_path), val_fraction=0, test_fraction=0, intrinsics=(60, 60, 31.5, 23.5)
    )
    item = source.dataset("train", H, W)[0]
    assert item[IMAGE].shape == (1, H, W)
    assert item[INTRINSICS].tolist() == pytest.approx([30, 30, 15.5, 11.5])
    assert (item[LABEL] == IGNORE_LABEL).all()  # no labels/ folder: unlabelled
    with pytest.raises(ValueError, match="aspect ratio"):
        source.dataset("train", H, H)


def test_depth_folder_cuts_far_readings_with_max_depth(tmp_path: Path) -> None:
    (tmp_path / "depth").mkdir()
    depth = _frame()
    depth[0, :] = 4.0  # a wall
    np.save(tmp_path / "depth" / "a.npy", depth)
    item = DepthFolder(str(tmp_path), 0, 0, max_depth=3.0).dataset("train", H, W)[0]
    assert item[IMAGE].max() == pytest.approx(2.5) and (item[IMAGE][0, 0] == 0).all()


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: _png16(p / "a.png", np.round(_frame() * 4)), "looks like metres"),
        (lambda p: np.save(p / "a.npy", _frame() * 1000), "looks like millimetres"),
        (
            lambda p: np.save(p / "a.npy", np.round(_frame() * 1000).astype(np.int32)),
            "float metres",
        ),
        (lambda p: np.save(p / "a.npy", np.stack([_frame()] * 3)), "expected H x W"),
        (lambda p: Image.fromarray(np.zeros((H, W), np.uint8)).save(p / "a.png"), "8-bit"),
        (lambda p: Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(p / "a.png"), "3-channel"),
        (lambda p: np.save(p / "a.npy", -_frame()), "negative"),
    ],
)
def test_depth_folder_explains_wrong_units_and_shapes(tmp_path: Path, write, message: str) -> None:
    (tmp_path / "depth").mkdir()
    write(tmp_path / "depth")
    with pytest.raises(ValueError, match=message):
        DepthFolder(str(tmp_path)).prepare()


def test_depth_folder_explains_missing_or_bad_labels(tmp_path: Path) -> None:
    root = _folder(tmp_path / "missing", count=4)
    (root / "labels" / "f02.png").unlink()
    with pytest.raises(ValueError, match="lacks the label PNG of 1 of 4.*f02"):
        DepthFolder(str(root)).prepare()

    root = _folder(tmp_path / "values", count=1)
    Image.fromarray(np.full((H, W), 40, np.uint8)).save(root / "labels" / "f00.png")
    with pytest.raises(ValueError, match=r"label values \[40\]"):
        DepthFolder(str(root), 0, 0).dataset("train", H, W)[0]

    root = _folder(tmp_path / "shape", count=1)
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(root / "labels" / "f00.png")
    with pytest.raises(ValueError, match="but its depth frame"):
        DepthFolder(str(root), 0, 0).dataset("train", H, W)[0]


def test_depth_folder_explains_layout_problems(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DepthFolder(str(tmp_path / "nowhere")).prepare()
    with pytest.raises(FileNotFoundError, match="no depth/ folder"):
        DepthFolder(str(tmp_path)).prepare()
    (tmp_path / "depth").mkdir()
    with pytest.raises(ValueError, match="no .png or .npy"):
        DepthFolder(str(tmp_path)).prepare()
    np.save(tmp_path / "depth" / "a.npy", _frame())
    np.save(tmp_path / "depth" / "b.npy", _frame(H + 2, W))
    source = DepthFolder(str(tmp_path), 0, 0)
    with pytest.raises(ValueError, match="must share one size"):
        source.dataset("train", H, W)[1]


def test_depth_folder_serves_as_the_real_domain(tmp_path: Path) -> None:
    folder = DepthFolder(str(_folder(tmp_path, count=10, kind="npy")), 0.2, 0.2)
    datamodule = _datamodule(real=folder, real_fraction=0.25)
    datamodule.prepare_data()
    batch = next(iter(datamodule.train_dataloader()))
    assert (batch[DOMAIN] == REAL).sum() == 1
    assert torch.isnan(batch[JOINTS][batch[DOMAIN] == REAL]).all()
    assert torch.isfinite(batch[JOINTS][batch[DOMAIN] == RENDERED]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rendering_on_a_gpu_gives_the_frames_of_the_cpu() -> None:
    workers = next(iter(_datamodule().train_dataloader()))
    device = _datamodule(render_on="device")
    on_gpu = _on_device(device, [next(iter(device.train_dataloader()))], "cuda")[0]
    assert on_gpu[IMAGE].is_cuda and on_gpu[LABEL].is_cuda
    assert torch.equal(on_gpu[DOMAIN].cpu(), workers[DOMAIN])
    # Clean renders only: the sensor model's random numbers come from per-device
    # generators. Float rounding differs between devices, so a few edge pixels may flip.
    clean = workers[DOMAIN] == RENDERED
    assert (on_gpu[LABEL].cpu()[clean] != workers[LABEL][clean]).float().mean() < 0.01
    torch.testing.assert_close(
        on_gpu[JOINTS].cpu()[clean], workers[JOINTS][clean], atol=1e-4, rtol=0
    )


def test_depth_folder_checks_every_frame_size_before_training(tmp_path: Path) -> None:
    """A frame of another size deep in the folder stops ``prepare``, not a batch mid-run."""
    root = _folder(tmp_path / "frames", count=6, kind="png", labels=False)
    _png16(root / "depth" / "f04.png", np.round(_frame(H + 4, W) * 1000))
    with pytest.raises(InputError, match=rf"1 frame\(s\).*f04.png \({H + 4} x {W}\).*one size"):
        DepthFolder(str(root)).prepare()

    root = _folder(tmp_path / "labels", count=6, kind="npy")
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(root / "labels" / "f05.png")
    with pytest.raises(InputError, match=f"f05.png is {H} x {W + 2} but its depth frame"):
        DepthFolder(str(root)).prepare()

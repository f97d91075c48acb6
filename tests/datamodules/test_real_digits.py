"""Real digit sources: tiny data written to tmp_path in each data set's real file format."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_synth.batch import IMAGE, LABEL, Batch
from lightning_synth.datamodules import DigitFolder, SklearnDigits, TorchvisionDigits

STAGES = ("train", "val", "test")


def _pair(item: Batch) -> tuple[torch.Tensor, int]:
    """A source's sample as ``(image, label)``."""
    assert set(item) == {IMAGE, LABEL}, set(item)
    return item[IMAGE], int(item[LABEL])


def _indices(source, key="indices"):
    """Which items each stage holds: positions in the full data (or file paths), as str."""
    parts = {}
    for stage in STAGES:
        ids = getattr(source.dataset(stage), key)
        parts[stage] = [str(i) for i in (ids.tolist() if torch.is_tensor(ids) else ids)]
    return parts


def _assert_partition(parts: dict[str, list], everything: list) -> None:
    """The stages are pairwise disjoint and together hold every item exactly once."""
    flat = [item for stage in STAGES for item in parts[stage]]
    assert len(flat) == len(set(flat)), "an item is in two stages"
    assert sorted(flat) == sorted(everything), "the stages do not cover the data"


# --- SklearnDigits -------------------------------------------------------------------


def test_sklearn_digits_items_are_scaled_single_channel_8x8_with_their_labels():
    from sklearn.datasets import load_digits

    digits = load_digits()
    source = SklearnDigits()
    sizes = {stage: len(source.dataset(stage)) for stage in STAGES}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["val"] - 0.2 * 1797) <= 10 and abs(sizes["test"] - 0.3 * 1797) <= 10
    train = source.dataset("train")
    images = torch.stack([train[i][IMAGE] for i in range(len(train))])
    assert images.shape[1:] == (1, 8, 8) and images.dtype == torch.float32
    assert images.min() == 0.0 and images.max() == 1.0  # 16 -> 1, not 16/255
    for i in (0, 17, len(train) - 1):
        image, label = _pair(train[i])
        k = int(train.indices[i])
        assert torch.allclose(image[0], torch.from_numpy(digits.images[k] / 16.0).float())
        assert train[i][LABEL].dtype == torch.long and label == digits.target[k]


def test_sklearn_digits_split_is_deterministic_disjoint_covering_and_stratified():
    source = SklearnDigits(val_fraction=0.2, test_fraction=0.3, seed=0)
    parts = _indices(source)
    _assert_partition(parts, [str(i) for i in range(1797)])
    assert parts == _indices(SklearnDigits(val_fraction=0.2, test_fraction=0.3, seed=0))
    assert parts["val"] != _indices(SklearnDigits(seed=1))["val"]
    total = torch.zeros(10)
    for stage in STAGES:
        total += torch.bincount(source.dataset(stage).labels, minlength=10)
    for stage, fraction in (("val", 0.2), ("test", 0.3)):
        counts = torch.bincount(source.dataset(stage).labels, minlength=10)
        assert torch.all((counts - total * fraction).abs() <= 1), (stage, counts)


def test_sklearn_digits_rejects_fractions_that_leave_no_training_data():
    with pytest.raises(ValueError, match="below 1"):
        SklearnDigits(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SklearnDigits(val_fraction=-0.1)


# --- TorchvisionDigits: MNIST in the real IDX format -----------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    data = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as file:
            file.write(data)
    else:
        path.write_bytes(data)


def _fake_mnist(root: Path, prefix: str, n: int, gz: bool = True) -> np.ndarray:
    """Write ``n`` 28x28 images whose pixel (0, 0) is their index; label = index % 10."""
    images = np.random.default_rng(n).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    suffix = ".gz" if gz else ""
    _write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte{suffix}", images)
    _write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10)
    return images


def test_mnist_test_file_protocol_uses_only_t10k_gz_and_the_given_ranges(tmp_path):
    images = _fake_mnist(tmp_path, "t10k", 40)  # only the test file, as distributed (.gz)
    source = TorchvisionDigits(
        "MNIST",
        str(tmp_path),
        train_split="test",
        train_range=(0, 30),
        val_fraction=0.2,
        test_split="test",
        test_range=(30, 40),
    )
    source.prepare()
    parts = _indices(source)
    assert sorted(map(int, parts["train"] + parts["val"])) == list(range(30))
    assert not set(parts["train"]) & set(parts["val"]) and len(parts["val"]) == 6
    assert sorted(map(int, parts["test"])) == list(range(30, 40))
    for stage in STAGES:
        dataset = source.dataset(stage)
        for i in range(len(dataset)):
            image, label = _pair(dataset[i])
            k = int(dataset.indices[i])
            assert image.shape == (1, 28, 28) and image.dtype == torch.float32
            assert 0.0 <= image.min() and image.max() <= 1.0
            assert round(float(image[0, 0, 0]) * 255) == k and label == k % 10
            assert torch.equal(image, torch.from_numpy(images[k]).float()[None] / 255)
    again = TorchvisionDigits(
        "MNIST", str(tmp_path), train_split="test", train_range=(0, 30), val_fraction=0.2,
        test_split="test", test_range=(30, 40),
    )  # fmt: skip
    assert _indices(again) == parts


def test_mnist_reads_the_same_images_as_torchvision(tmp_path):
    from torchvision.datasets import MNIST

    _fake_mnist(tmp_path, "train", 30, gz=False)  # torchvision's loader wants all 4, gunzipped
    _fake_mnist(tmp_path, "t10k", 20, gz=False)
    reference = MNIST(str(tmp_path), train=False)
    source = TorchvisionDigits("MNIST", str(tmp_path), val_fraction=0.2)
    test = source.dataset("test")
    assert len(test) == 20
    assert torch.equal(torch.stack([test[i][IMAGE] for i in range(20)])[:, 0], reference.data / 255)
    assert [int(test[i][LABEL]) for i in range(20)] == reference.targets.tolist()
    parts = _indices(source)
    assert sorted(map(int, parts["train"] + parts["val"])) == list(range(30))
    assert len(parts["val"]) == 6  # round(0.2 * 30), though a class has only 3 images


def test_mnist_missing_files_say_where_to_put_them(tmp_path):
    _fake_mnist(tmp_path, "t10k", 20)
    source = TorchvisionDigits("MNIST", str(tmp_path))  # default: train from the train split
    expected = str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz")
    for call in (source.prepare, lambda: source.dataset("train")):
        with pytest.raises(FileNotFoundError) as error:
            call()
        assert expected in str(error.value) and "download=true" in str(error.value)
        assert "t10k" not in str(error.value)  # the test files are there
    assert len(source.dataset("test")) == 20  # the test split alone still works


def test_mnist_failed_download_explains_the_offline_fix(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def offline(self):
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz: Name or service not known"
        )

    monkeypatch.setattr(MNIST, "download", offline)
    source = TorchvisionDigits("MNIST", str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError, match="failed") as error:
        source.prepare()
    assert str(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz") in str(error.value)


def test_mnist_bad_ranges_and_truncated_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        TorchvisionDigits(train_split="test", train_range=(0, 6000), test_range=(5000, 10000))
    with pytest.raises(ValueError, match="overlap"):
        TorchvisionDigits(train_split="test")  # whole test split for both
    with pytest.raises(ValueError, match="start < stop"):
        TorchvisionDigits(train_range=(10, 5))
    _fake_mnist(tmp_path, "t10k", 20)
    too_far = TorchvisionDigits(root=str(tmp_path), test_range=(0, 50))
    with pytest.raises(ValueError, match="holds 20 images"):
        too_far.dataset("test")
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-30])
    with pytest.raises(ValueError, match="corrupt or truncated") as error:
        TorchvisionDigits(root=str(tmp_path)).dataset("test")
    assert str(images) in str(error.value)


# --- TorchvisionDigits: USPS and SVHN ----------------------------------------------------


def test_usps_reads_libsvm_bz2_with_labels_shifted_to_zero(tmp_path):
    lines = []
    for label in range(1, 11):  # USPS labels are 1..10; pixel values are in [-1, 1]
        values = np.full(256, -1.0)
        values[0] = 1.0
        lines.append(f"{label} " + " ".join(f"{i + 1}:{v}" for i, v in enumerate(values)))
    with bz2.open(tmp_path / "usps.bz2", "wt") as file:
        file.write("\n".join(lines) + "\n")
    source = TorchvisionDigits("USPS", str(tmp_path), val_fraction=0.0, test_split="test")
    train = source.dataset("train")
    assert sorted(int(train[i][LABEL]) for i in range(len(train))) == list(range(10))
    image = train[0][IMAGE]
    assert image.shape == (1, 16, 16) and image[0, 0, 0] == 1.0 and image[0, 5, 5] == 0.0
    with pytest.raises(FileNotFoundError) as error:
        source.prepare()  # the test file usps.t.bz2 is missing
    assert str(tmp_path / "usps.t.bz2") in str(error.value)
    assert "usps.bz2," not in str(error.value) and "download=true" in str(error.value)


def _write_svhn(path: Path, n: int) -> None:
    from scipy.io import savemat

    x = np.zeros((32, 32, 3, n), dtype=np.uint8)  # SVHN's .mat layout: H x W x C x N
    for k in range(n):
        x[:, :, :, k] = np.array([10, 20, 30], dtype=np.uint8) + k
        x[0, 1, 2, k] = 255  # row 0, column 1, blue
    y = (np.arange(n) % 10 + 1).reshape(n, 1)  # labels 1..10, where 10 is the digit 0
    savemat(path, {"X": x, "y": y})


def test_svhn_maps_label_10_to_0_and_keeps_rgb_layout(tmp_path, monkeypatch):
    from torchvision.datasets import SVHN

    _write_svhn(tmp_path / "test_32x32.mat", 10)
    md5 = hashlib.md5((tmp_path / "test_32x32.mat").read_bytes()).hexdigest()
    monkeypatch.setattr(
        SVHN, "split_list", {**SVHN.split_list, "test": ["", "test_32x32.mat", md5]}
    )
    test = TorchvisionDigits("SVHN", str(tmp_path)).dataset("test")
    labels = [int(test[i][LABEL]) for i in range(len(test))]
    assert labels == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    image = test[2][IMAGE]
    assert image.shape == (3, 32, 32)
    assert torch.allclose(image[:, 5, 5], torch.tensor([12.0, 22.0, 32.0]) / 255)
    assert image[2, 0, 1] == 1.0 and image[2, 1, 0] != 1.0


def test_svhn_missing_or_corrupt_files_are_named(tmp_path):
    source = TorchvisionDigits("SVHN", str(tmp_path), test_split="test")
    with pytest.raises(FileNotFoundError) as error:
        source.prepare()
    assert str(tmp_path / "train_32x32.mat") in str(error.value)
    assert "download=true" in str(error.value)
    _write_svhn(tmp_path / "test_32x32.mat", 3)  # not the official file: its MD5 differs
    with pytest.raises(ValueError, match="MD5") as error:
        source.dataset("test")
    assert str(tmp_path / "test_32x32.mat") in str(error.value)


# --- DigitFolder --------------------------------------------------------------------------


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)


def _digit_tree(root: Path, per_class: int = 10) -> list[str]:
    files = []
    for label in range(10):
        for i in range(per_class):
            path = root / str(label) / f"{i:03d}.png"
            _save(path, np.full((6, 5), label * 20 + i, dtype=np.uint8))
            files.append(str(path))
    return files


def test_digit_folder_converts_8_and_16_bit_grayscale_rgb_and_alpha(tmp_path):
    _save(tmp_path / "0" / "gray8.png", np.full((4, 6), 128, dtype=np.uint8))
    gray16 = np.full((4, 6), 65535, dtype=np.uint16)
    gray16[0, 0] = 32768
    _save(tmp_path / "1" / "gray16.png", gray16)
    rgb = np.zeros((5, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    _save(tmp_path / "2" / "rgb.bmp", rgb)
    _save(tmp_path / "3" / "gray.jpg", np.full((8, 8), 200, dtype=np.uint8))
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)  # black, fully transparent -> white
    _save(tmp_path / "4" / "rgba.PNG", rgba)
    (tmp_path / "4" / "notes.txt").write_text("not an image")  # ignored
    source = DigitFolder(str(tmp_path), val_fraction=0.0, test_fraction=0.0)
    source.prepare()
    train = source.dataset("train")
    items = {Path(f).name: train[i] for i, f in enumerate(train.files)}
    assert set(items) == {"gray8.png", "gray16.png", "rgb.bmp", "gray.jpg", "rgba.PNG"}
    assert {name: int(item[LABEL]) for name, item in items.items()} == {
        "gray8.png": 0, "gray16.png": 1, "rgb.bmp": 2, "gray.jpg": 3, "rgba.PNG": 4,
    }  # fmt: skip
    assert torch.allclose(items["gray8.png"][IMAGE], torch.full((1, 4, 6), 128 / 255))
    assert items["gray16.png"][IMAGE].shape == (1, 4, 6) and items["gray16.png"][IMAGE].max() == 1.0
    assert abs(float(items["gray16.png"][IMAGE][0, 0, 0]) - 32768 / 65535) < 1e-6  # not 128/255
    assert torch.equal(items["rgb.bmp"][IMAGE][:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert abs(float(items["gray.jpg"][IMAGE].mean()) - 200 / 255) < 0.02
    assert torch.equal(items["rgba.PNG"][IMAGE], torch.ones(3, 3, 3))
    for image in (item[IMAGE] for item in items.values()):
        assert image.dtype == torch.float32 and 0.0 <= image.min() and image.max() <= 1.0
    gray = DigitFolder(str(tmp_path), val_fraction=0.0, test_fraction=0.0, channels=1)
    color = DigitFolder(str(tmp_path), val_fraction=0.0, test_fraction=0.0, channels=3)
    assert {gray.dataset("train")[i][IMAGE].shape[0] for i in range(5)} == {1}
    assert {color.dataset("train")[i][IMAGE].shape[0] for i in range(5)} == {3}
    red = gray.dataset("train")[gray.dataset("train").files.index(str(tmp_path / "2/rgb.bmp"))]
    assert abs(float(red[IMAGE][0, 0, 0]) - 0.299) < 1e-6  # luma of pure red


def test_digit_folder_flat_split_is_stratified_deterministic_disjoint_and_covering(tmp_path):
    files = _digit_tree(tmp_path, per_class=10)
    source = DigitFolder(str(tmp_path), val_fraction=0.2, test_fraction=0.3, seed=0)
    parts = _indices(source, "files")
    _assert_partition(parts, files)
    for stage, per_class in (("train", 5), ("val", 2), ("test", 3)):
        labels = source.dataset(stage).labels
        assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
    assert (
        _indices(DigitFolder(str(tmp_path), val_fraction=0.2, test_fraction=0.3), "files") == parts
    )
    assert _indices(DigitFolder(str(tmp_path), 0.2, 0.3, seed=1), "files")["test"] != parts["test"]
    val = source.dataset("val")
    image, label = _pair(val[0])
    assert label == int(Path(val.files[0]).parent.name)
    assert round(float(image[0, 0, 0]) * 255) == label * 20 + int(Path(val.files[0]).stem)


def test_digit_folder_presplit_layout_is_used_as_given(tmp_path):
    train_files = _digit_tree(tmp_path / "train", per_class=5)
    test_files = _digit_tree(tmp_path / "test", per_class=1)
    source = DigitFolder(str(tmp_path), val_fraction=0.2, test_fraction=0.5)
    parts = _indices(source, "files")
    assert sorted(parts["test"]) == sorted(test_files)  # test_fraction is ignored
    _assert_partition({**parts, "test": []}, train_files)  # no val/: val is carved from train/
    assert torch.bincount(source.dataset("val").labels).tolist() == [1] * 10
    val_files = _digit_tree(tmp_path / "val", per_class=2)
    with_val = DigitFolder(str(tmp_path))
    assert sorted(_indices(with_val, "files")["val"]) == sorted(val_files)
    assert sorted(_indices(with_val, "files")["train"]) == sorted(train_files)


def test_digit_folder_layout_errors_name_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="create it") as error:
        DigitFolder(str(missing)).prepare()
    assert str(missing) in str(error.value)

    flat = tmp_path / "flat"
    _save(flat / "a.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="no class subfolders") as error:
        DigitFolder(str(flat)).dataset("train")
    assert f"{flat}/0/" in str(error.value)

    empty = tmp_path / "empty"
    _digit_tree(empty, per_class=2)
    (empty / "7" / "000.png").unlink()
    (empty / "7" / "001.png").unlink()
    with pytest.raises(ValueError, match="has no images") as error:
        DigitFolder(str(empty)).prepare()
    assert str(empty / "7") in str(error.value)

    named = tmp_path / "named"
    _digit_tree(named, per_class=2)
    _save(named / "cat" / "0.png", np.zeros((4, 4), dtype=np.uint8))
    _save(named / "10" / "0.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(
        ValueError, match=r"named by their integer label, 0 to 9; got \['10', 'cat'\]"
    ):
        DigitFolder(str(named)).prepare()

    mixed = tmp_path / "mixed"
    _digit_tree(mixed / "train", per_class=2)
    _save(mixed / "3" / "0.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="mixes stage folders"):
        DigitFolder(str(mixed)).prepare()

    no_test = tmp_path / "no_test"
    _digit_tree(no_test / "train", per_class=2)
    with pytest.raises(FileNotFoundError, match="no test/ folder") as error:
        DigitFolder(str(no_test)).dataset("test")
    assert str(no_test / "test") in str(error.value)


def test_digit_folder_corrupt_images_fail_in_prepare_and_at_access(tmp_path):
    _digit_tree(tmp_path, per_class=2)
    garbage = tmp_path / "3" / "garbage.png"
    garbage.write_bytes(b"this is not a png")
    truncated = tmp_path / "5" / "truncated.jpg"
    _save(truncated, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-1000])  # header intact, pixels cut

    with pytest.raises(ValueError, match="2 unreadable image") as error:
        DigitFolder(str(tmp_path)).prepare()  # default verify="full" decodes everything
    assert str(garbage) in str(error.value) and str(truncated) in str(error.value)
    with pytest.raises(ValueError, match="1 unreadable image") as error:
        DigitFolder(str(tmp_path), verify="quick").prepare()  # Image.verify misses cut JPEGs
    assert str(garbage) in str(error.value)
    DigitFolder(str(tmp_path), verify="none").prepare()  # layout only

    source = DigitFolder(str(tmp_path), val_fraction=0.0, test_fraction=0.0, verify="none")
    train = source.dataset("train")
    with pytest.raises(ValueError, match="cannot read image") as error:
        train[train.files.index(str(garbage))]
    assert str(garbage) in str(error.value)
    with pytest.raises(ValueError, match="truncated") as error:
        train[train.files.index(str(truncated))]
    assert str(truncated) in str(error.value)

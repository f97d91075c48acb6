"""The MNIST-test protocol shared by the digit benchmarks (see the data folder's README).

Images 0-4999 of the official test split are the training data (the adaptation pool,
the GAN's data, the train-on-real set); 5000-9999 are for evaluation only.
"""

from __future__ import annotations

from pathlib import Path

from lightning_synth.datamodules import TorchvisionDigits

__all__ = ["mnist_source"]

_MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def mnist_source(data_dir: Path, root: Path) -> TorchvisionDigits:
    """MNIST test images 0-4999 as ``train``, 5000-9999 as ``test``, linked under ``root``.

    Args:
        data_dir: folder holding the two t10k files.
        root: scratch folder that gets ``MNIST/raw`` links to them.
    """
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in _MNIST_FILES:
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir / name} not found; pass --data-dir")
        if not (raw / name).exists():
            (raw / name).symlink_to((data_dir / name).resolve())
    return TorchvisionDigits(
        name="MNIST",
        root=str(root),
        train_split="test",
        train_range=(0, 5000),
        val_fraction=0.0,
        test_split="test",
        test_range=(5000, 10000),
    )

"""Gap report: per-image statistics, the ranked examples, the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from lightning_synth.metrics.gap_report import gap_report, image_statistics


def _boxes(count: int, top: int, left: int, height: int, width: int, dark_ink: bool = False):
    """``count`` 1 x 20 x 20 images, a filled rectangle of ink on a plain background."""
    images = torch.full((count, 1, 20, 20), 1.0 if dark_ink else 0.0)
    images[:, :, top : top + height, left : left + width] = 0.0 if dark_ink else 1.0
    return images


def test_statistics_measure_the_ink_whatever_its_polarity() -> None:
    for dark_ink in (False, True):
        stats = image_statistics(_boxes(2, top=2, left=5, height=16, width=5, dark_ink=dark_ink))
        assert stats["bbox_height"].tolist() == pytest.approx([0.8, 0.8])
        assert stats["bbox_width"].tolist() == pytest.approx([0.25, 0.25])
        assert stats["ink_coverage"].tolist() == pytest.approx([0.2, 0.2])
        expected_mean = 0.8 if dark_ink else 0.2
        assert stats["mean_intensity"].tolist() == pytest.approx([expected_mean] * 2)
    blank = image_statistics(torch.zeros(1, 3, 8, 8))
    assert blank["bbox_width"].item() == 0.0 and blank["ink_coverage"].item() == 0.0


def _domains() -> tuple[torch.Tensor, torch.Tensor]:
    """Rendered: small centred boxes; real: tall boxes filling the frame, but the last
    real image is a rendered-style one (so it should look the most rendered)."""
    generator = torch.Generator().manual_seed(0)
    rendered = _boxes(30, top=6, left=7, height=8, width=6)
    real = _boxes(30, top=0, left=6, height=20, width=8)
    real[-1] = rendered[0]
    noise = 0.05
    rendered = rendered + noise * torch.rand(rendered.shape, generator=generator)
    real = real + noise * torch.rand(real.shape, generator=generator)
    return rendered, real


def test_report_ranks_the_odd_one_out_and_names_the_biggest_difference(tmp_path: Path) -> None:
    rendered, real = _domains()
    report = gap_report(rendered, real, num_examples=4)
    assert report.pad_pixels > 1.0 and report.pad_features is None
    # The rendered-looking real image comes first among "real images that look most rendered".
    assert torch.equal(report.examples["real_most_rendered"][0], real[-1])
    assert report.examples["rendered_most_real"].shape == (4, 1, 20, 20)
    (height, *_), (intensity, *_) = (line.split(" (d") for line in report.biggest_differences())
    assert {height, intensity} == {
        "ink bounding-box height: median 0.40 rendered vs 1.00 real",
        "mean intensity: median 0.15 rendered vs 0.43 real",
    }

    picture, numbers = report.save(tmp_path / "report")
    width, height = Image.open(picture).size
    assert (width, height) == (1500, 1000)
    found = json.loads(numbers.read_text())
    assert found["num_rendered"] == 30 and found["pad_pixels"] == report.pad_pixels
    heights = found["statistics"]["bbox_height"]
    assert heights["rendered"]["median"] == pytest.approx(0.4)
    assert heights["real"]["median"] == pytest.approx(1.0)
    assert heights["effect_size"] > 2.0


def test_report_with_features_adds_their_distance() -> None:
    rendered, real = _domains()
    same = torch.randn(60, 4, generator=torch.Generator().manual_seed(0))
    report = gap_report(rendered, real, same[:30], same[30:], source="model.ckpt")
    assert 0.0 <= report.pad_features <= 1.0  # one distribution: hard to tell apart
    assert report.as_dict()["features_from"] == "model.ckpt"
    with pytest.raises(ValueError, match="at least 4"):
        gap_report(rendered[:3], real)

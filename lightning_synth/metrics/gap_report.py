"""The gap report: where rendered and real images differ, in one picture and a JSON file.

:func:`gap_report` compares samples of the two domains and :meth:`DomainGap.save`
writes ``gap_report.png`` and ``gap_report.json``:

- the mean and standard-deviation image of each domain, and their difference;
- histograms per domain of simple per-image statistics (:func:`image_statistics`):
  ink coverage, ink bounding-box width and height, mean intensity;
- the samples a linear domain classifier on pixels finds most "rendered" and most
  "real" (cross-fitted: each sample is scored by a classifier that never saw it);
- the proxy A-distance on pixels and, given a model's features, on features.

Used by ``lightning-synth discrepancy --report DIR`` and the ``GapReport`` callback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_synth.batch import DOMAIN, IMAGE, LABEL, REAL, RENDERED
from lightning_synth.metrics.discrepancy import DEFAULT_CS, _fit_linear, proxy_a_distance

__all__ = ["DomainGap", "gap_report", "image_statistics", "domain_samples", "STATISTICS"]

#: Per-image statistics, with the words the figure uses for them.
STATISTICS: dict[str, str] = {
    "ink_coverage": "ink coverage (share of pixels)",
    "bbox_width": "ink bounding-box width (share of image)",
    "bbox_height": "ink bounding-box height (share of image)",
    "mean_intensity": "mean intensity",
}
_MIN_SPREAD = 0.01  # floor of the pooled standard deviation in effect sizes
_NAMES = {RENDERED: "rendered", REAL: "real"}


@torch.no_grad()
def domain_samples(
    loader: Iterable[dict[str, torch.Tensor]], num_samples: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Up to ``num_samples`` images and labels of each domain from ``loader``, in its order.

    Args:
        loader: yields batches of the contract (``image``, ``label``, ``domain``).
        num_samples: samples per domain.
    """
    images: dict[int, list[torch.Tensor]] = {RENDERED: [], REAL: []}
    labels: dict[int, list[torch.Tensor]] = {RENDERED: [], REAL: []}
    for batch in loader:
        for code in (RENDERED, REAL):
            room = num_samples - sum(len(chunk) for chunk in images[code])
            mine = (batch[DOMAIN] == code).nonzero().flatten()[:room]
            images[code].append(batch[IMAGE][mine].cpu())
            labels[code].append(batch[LABEL][mine].cpu())
        if all(sum(len(c) for c in images[code]) >= num_samples for code in images):
            break
    return {code: (torch.cat(images[code]), torch.cat(labels[code])) for code in images}


def image_statistics(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image statistics of ``N x C x H x W`` images (channels averaged).

    "Ink" is what stands out from the background: the background level is the median
    of the image's border pixels, and a pixel is ink when it is at least half as far
    from it as the farthest pixel (so dark-on-light and light-on-dark, grey and binary
    strokes count alike). Bounding boxes are the extent of the ink, as a share of the
    image's width and height (0 for a blank image).

    Args:
        images: ``N x C x H x W`` float images.

    Returns:
        ``N``-vectors ``ink_coverage``, ``bbox_width``, ``bbox_height``, ``mean_intensity``.
    """
    gray = images.float().mean(dim=1)
    count, height, width = gray.shape
    border = torch.cat(
        [gray[:, 0], gray[:, -1], gray[:, 1:-1, 0], gray[:, 1:-1, -1]], dim=1
    ).reshape(count, -1)
    distance = (gray - border.median(dim=1).values[:, None, None]).abs()
    peak = distance.flatten(1).amax(dim=1)
    ink = (distance >= 0.5 * peak[:, None, None]) & (peak[:, None, None] > 1e-6)

    def extent(mask: torch.Tensor, size: int) -> torch.Tensor:  # mask: N x size
        positions = torch.arange(size, dtype=torch.float32)
        first = torch.where(mask, positions, math.inf).amin(dim=1)
        last = torch.where(mask, positions, -math.inf).amax(dim=1)
        return torch.where(mask.any(dim=1), (last - first + 1) / size, torch.zeros(()))

    return {
        "ink_coverage": ink.float().flatten(1).mean(dim=1),
        "bbox_width": extent(ink.any(dim=1), width),
        "bbox_height": extent(ink.any(dim=2), height),
        "mean_intensity": gray.flatten(1).mean(dim=1),
    }


def _domain_scores(rendered: np.ndarray, real: np.ndarray, seed: int) -> np.ndarray:
    """Signed distance of each sample (rendered first) to a linear rendered-vs-real boundary,
    positive = "real"; 2-fold cross-fitted, so each sample is scored by a classifier that
    did not learn from it."""
    x = np.concatenate([rendered, real])
    y = np.repeat([0, 1], [len(rendered), len(real)])
    fold = np.random.default_rng(seed).permutation(len(x)) % 2
    scores = np.empty(len(x))
    for held in (0, 1):
        train = fold != held
        if len(np.unique(y[train])) < 2:  # too few samples to fit: no opinion
            scores[~train] = 0.0
            continue
        model = _fit_linear(x[train], y[train], DEFAULT_CS, 3, seed)
        scores[~train] = model.decision_function(x[~train])
    return scores


def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {key: math.nan for key in ("mean", "std", "p10", "median", "p90")}
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "p10": float(p10),
        "median": float(median),
        "p90": float(p90),
    }


@dataclass
class DomainGap:
    """What :func:`gap_report` found; :meth:`save` writes it, :meth:`figure` draws it.

    Attributes:
        mean: mean image (``C x H x W``) of each domain.
        std: per-pixel standard deviation of each domain.
        statistics: per-image statistics of each domain (``name -> N``-vector).
        examples: sample images by strip name (``rendered_most_rendered``, ...).
        pad_pixels: proxy A-distance on pixels.
        pad_features: proxy A-distance on a model's features, or ``None``.
        counts: samples per domain.
        source: what the features came from (a checkpoint path), for the title.
    """

    mean: dict[int, torch.Tensor]
    std: dict[int, torch.Tensor]
    statistics: dict[int, dict[str, np.ndarray]]
    examples: dict[str, torch.Tensor]
    pad_pixels: float
    pad_features: float | None = None
    counts: dict[int, int] = field(default_factory=dict)
    source: str | None = None

    def effect_sizes(self) -> dict[str, float]:
        """Standardised difference of each statistic, real minus rendered (Cohen's d; the
        pooled standard deviation is floored at 0.01, so constant statistics stay finite)."""
        sizes = {}
        for name in STATISTICS:
            a, b = self.statistics[RENDERED][name], self.statistics[REAL][name]
            pooled = max(math.sqrt((a.var() + b.var()) / 2), _MIN_SPREAD)
            sizes[name] = float((b.mean() - a.mean()) / pooled)
        return sizes

    def biggest_differences(self, count: int = 2) -> list[str]:
        """One sentence for each of the ``count`` statistics that differ most."""
        sizes = self.effect_sizes()
        ranked = sorted(sizes, key=lambda name: -abs(sizes[name]))[:count]
        lines = []
        for name in ranked:
            medians = [float(np.median(self.statistics[c][name])) for c in (RENDERED, REAL)]
            lines.append(
                f"{STATISTICS[name].split(' (')[0]}: median {medians[0]:.2f} rendered vs "
                f"{medians[1]:.2f} real (d = {sizes[name]:+.1f})"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        """The report's numbers, as written to ``gap_report.json``."""
        sizes = self.effect_sizes()
        return {
            "num_rendered": self.counts.get(RENDERED, 0),
            "num_real": self.counts.get(REAL, 0),
            "image_shape": list(self.mean[RENDERED].shape),
            "pad_pixels": self.pad_pixels,
            "pad_features": self.pad_features,
            "features_from": self.source,
            "mean_image_abs_difference": float(
                (self.mean[REAL] - self.mean[RENDERED]).abs().mean()
            ),
            "statistics": {
                name: {
                    "rendered": _summary(self.statistics[RENDERED][name]),
                    "real": _summary(self.statistics[REAL][name]),
                    "effect_size": sizes[name],
                }
                for name in STATISTICS
            },
            "biggest_differences": self.biggest_differences(len(STATISTICS)),
        }

    def headline(self) -> str:
        """One line: the proxy A-distances."""
        line = f"proxy A-distance on pixels {self.pad_pixels:.2f}"
        if self.pad_features is not None:
            line += f", on features {self.pad_features:.2f}"
        return line + " (0 = indistinguishable, 2 = linearly separable)"

    def figure(self):  # noqa: ANN201  (a matplotlib Figure; matplotlib is imported lazily)
        """The report as a matplotlib figure (Agg; nothing is shown)."""
        from lightning_synth.metrics.gap_figure import draw_gap_report

        return draw_gap_report(self)

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``gap_report.png`` and ``gap_report.json`` into ``directory`` (created).

        Returns:
            The paths of the picture and the JSON file.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        picture, numbers = directory / "gap_report.png", directory / "gap_report.json"
        figure = self.figure()
        figure.savefig(picture, dpi=100)
        numbers.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return picture, numbers


def gap_report(
    rendered: torch.Tensor,
    real: torch.Tensor,
    features_rendered: torch.Tensor | None = None,
    features_real: torch.Tensor | None = None,
    num_examples: int = 8,
    seed: int = 0,
    pad_pixels: float | None = None,
    pad_features: float | None = None,
    source: str | None = None,
) -> DomainGap:
    """Compare rendered and real images (and, optionally, a model's features of them).

    Args:
        rendered: ``N x C x H x W`` rendered images.
        real: ``M x C x H x W`` real images, same size.
        features_rendered: ``N x D`` features of ``rendered`` (for the feature distance).
        features_real: ``M x D`` features of ``real``.
        num_examples: images in each strip of examples.
        seed: seed of the classifiers' splits.
        pad_pixels: the pixel distance when already measured (else measured here).
        pad_features: the feature distance when already measured (else measured here).
        source: where the features came from, shown in the figure.

    Raises:
        ValueError: if a domain has fewer than 4 images or the sizes differ.
    """
    if min(len(rendered), len(real)) < 4:
        raise ValueError(
            f"the gap report needs at least 4 images per domain, got {len(rendered)} rendered "
            f"and {len(real)} real"
        )
    if rendered.shape[1:] != real.shape[1:]:
        raise ValueError(f"image sizes differ: {tuple(rendered.shape)} and {tuple(real.shape)}")
    images = {RENDERED: rendered.detach().float().cpu(), REAL: real.detach().float().cpu()}
    pixels = {code: images[code].flatten(1).numpy().astype(np.float64) for code in images}
    if pad_pixels is None:
        pad_pixels = proxy_a_distance(pixels[RENDERED], pixels[REAL], seed=seed)
    if pad_features is None and features_rendered is not None and features_real is not None:
        pad_features = proxy_a_distance(features_rendered, features_real, seed=seed)
    scores = _domain_scores(pixels[RENDERED], pixels[REAL], seed)
    score = {RENDERED: scores[: len(rendered)], REAL: scores[len(rendered) :]}
    examples = {}
    for code in (RENDERED, REAL):
        ascending = np.argsort(score[code], kind="stable")  # most rendered-looking first
        name = _NAMES[code]
        examples[f"{name}_most_rendered"] = images[code][ascending[:num_examples].copy()]
        examples[f"{name}_most_real"] = images[code][ascending[::-1][:num_examples].copy()]
    return DomainGap(
        mean={code: images[code].mean(dim=0) for code in images},
        std={code: images[code].std(dim=0) for code in images},
        statistics={
            code: {k: v.numpy() for k, v in image_statistics(images[code]).items()}
            for code in images
        },
        examples=examples,
        pad_pixels=float(pad_pixels),
        pad_features=None if pad_features is None else float(pad_features),
        counts={code: len(images[code]) for code in images},
        source=source,
    )

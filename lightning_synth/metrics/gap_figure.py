"""Drawing of the gap report (matplotlib, Agg): one figure a person reads in ten seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from lightning_synth.batch import REAL, RENDERED

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lightning_synth.metrics.gap_report import DomainGap

__all__ = ["draw_gap_report"]

_COLOURS = {RENDERED: "tab:blue", REAL: "tab:orange"}
_NAMES = {RENDERED: "rendered", REAL: "real"}
_STRIPS = (
    ("rendered_most_rendered", RENDERED, "rendered images that look most rendered"),
    ("real_most_real", REAL, "real images that look most real"),
    ("rendered_most_real", RENDERED, "rendered images that look most real"),
    ("real_most_rendered", REAL, "real images that look most rendered"),
)
_SHORT = {
    "ink_coverage": "ink coverage",
    "bbox_width": "ink box width",
    "bbox_height": "ink box height",
    "mean_intensity": "mean intensity",
}

_UNITS = {
    "ink_coverage": "share of pixels that stand out from the background",
    "bbox_width": "width of the ink's box, share of the image",
    "bbox_height": "height of the ink's box, share of the image",
    "mean_intensity": "mean pixel value",
}


def _displayable(image: torch.Tensor) -> np.ndarray:
    """``C x H x W`` -> ``H x W`` (one channel) or ``H x W x 3`` (colour) array."""
    array = image.detach().float().cpu().numpy()
    return array[0] if array.shape[0] != 3 else array.transpose(1, 2, 0)


def _montage(images: torch.Tensor, low: float, high: float) -> np.ndarray:
    """Images side by side with a 1-pixel gap, scaled to [0, 1] (gap: NaN, drawn white)."""
    tiles = [np.clip((_displayable(image) - low) / (high - low), 0, 1) for image in images]
    gap = np.full((tiles[0].shape[0], 1, *tiles[0].shape[2:]), np.nan)
    pieces: list[np.ndarray] = []
    for tile in tiles:
        pieces += [tile, gap]
    return np.concatenate(pieces[:-1], axis=1)


def _show(axis, image: np.ndarray, title: str, colour: str = "black", **options) -> object:  # noqa: ANN001
    if image.ndim == 3:  # colour: NaN gaps become white
        image = np.where(np.isnan(image), 1.0, image)
    shown = axis.imshow(image, interpolation="nearest", **options)
    axis.set_title(title, fontsize=10, color=colour)
    axis.set_xticks([])
    axis.set_yticks([])
    return shown


def draw_gap_report(report: DomainGap) -> Figure:
    """Draw ``report``: means, stds and their difference; histograms; example strips.

    Args:
        report: what :func:`~lightning_synth.metrics.gap_report.gap_report` found.
    """
    # A bare Figure draws with Agg without touching pyplot's global state or backend.
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 10), layout="constrained")
    grid = figure.add_gridspec(3, 1, height_ratios=[1.0, 0.95, 0.7])
    gray = colormaps["gray"].with_extremes(bad="white")
    counts = f"{report.counts.get(RENDERED, 0)} rendered, {report.counts.get(REAL, 0)} real"
    figure.suptitle(
        f"Rendered vs real ({counts}): {report.headline()}\n"
        + "Biggest differences: "
        + "; ".join(report.biggest_differences()),
        fontsize=13,
    )

    # Row 1: what an average image looks like, where the domains differ, how they vary.
    top = grid[0].subgridspec(1, 5)
    means = [report.mean[code] for code in (RENDERED, REAL)]
    low = min(float(m.min()) for m in means)
    high = max(max(float(m.max()) for m in means), low + 1e-6)
    for column, code in enumerate((RENDERED, REAL)):
        mean = np.clip((_displayable(report.mean[code]) - low) / (high - low), 0, 1)
        _show(
            figure.add_subplot(top[column]), mean, f"mean {_NAMES[code]} image",
            _COLOURS[code], cmap=gray, vmin=0, vmax=1,
        )  # fmt: skip
    difference = (report.mean[REAL] - report.mean[RENDERED]).float().mean(dim=0).numpy()
    reach = max(float(np.abs(difference).max()), 1e-6)
    axis = figure.add_subplot(top[2])
    shown = _show(
        axis, difference, "mean real - mean rendered\n(red: higher in real)",
        cmap="RdBu_r", vmin=-reach, vmax=reach,
    )  # fmt: skip
    figure.colorbar(shown, ax=axis, shrink=0.8)
    stds = [report.std[code].float().mean(dim=0).numpy() for code in (RENDERED, REAL)]
    spread = max(max(float(s.max()) for s in stds), 1e-6)
    for column, (code, std) in enumerate(zip((RENDERED, REAL), stds, strict=True)):
        _show(
            figure.add_subplot(top[3 + column]), std, f"std of {_NAMES[code]} images",
            _COLOURS[code], cmap="magma", vmin=0, vmax=spread,
        )  # fmt: skip

    # Row 2: per-image statistics, one histogram each, both domains on the same bins.
    middle = grid[1].subgridspec(1, 4)
    for column, name in enumerate(_SHORT):
        axis = figure.add_subplot(middle[column])
        values = [report.statistics[code][name] for code in (RENDERED, REAL)]
        everything = np.concatenate(values)
        edges = np.histogram_bin_edges(everything, bins=24) if everything.size else 10
        for code, data in zip((RENDERED, REAL), values, strict=True):
            axis.hist(
                data, bins=edges, density=True, histtype="stepfilled", alpha=0.35,
                color=_COLOURS[code], edgecolor=_COLOURS[code], linewidth=1.5,
                label=f"{_NAMES[code]} (median {np.median(data):.2f})",
            )  # fmt: skip
        axis.set_title(_SHORT[name], fontsize=11)
        axis.set_xlabel(_UNITS[name], fontsize=9)
        axis.set_yticks([])
        axis.legend(fontsize=8, loc="best")

    # Row 3: what a linear rendered-vs-real classifier on pixels keys on.
    bottom = grid[2].subgridspec(2, 2)
    shown_examples = [report.examples[key] for key, _, _ in _STRIPS if len(report.examples[key])]
    low = min(float(images.min()) for images in shown_examples)
    high = max(max(float(images.max()) for images in shown_examples), low + 1e-6)
    for index, (key, code, words) in enumerate(_STRIPS):
        axis = figure.add_subplot(bottom[index % 2, index // 2])
        if len(report.examples[key]) == 0:
            axis.set_axis_off()
            continue
        _show(
            axis, _montage(report.examples[key], low, high),
            f"{words} (linear domain classifier on pixels)", _COLOURS[code],
            cmap=gray, vmin=0, vmax=1,
        )  # fmt: skip
    return figure

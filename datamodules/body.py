"""``BodyDepthDataModule``: rendered and "real" body depth frames in every training batch.

Dense counterpart of :class:`~lightning_synth.datamodules.MixedDomainDataModule`, built
on the same :class:`~lightning_synth.datamodules.base.DomainDataModule`: items are depth
maps (metres, 0 = no reading) with a part-label map, not images with a class. Its
sources are :class:`~lightning_synth.datamodules.sources.DepthSource`\ s, whose datasets
are made at the DataModule's frame size: :class:`RenderedBodySource` (the body renderer,
optionally through the sensor model, a batch rendered in one vectorised call) and
:class:`~lightning_synth.datamodules.DepthFolder` (real frames on disk, in
``depth_folder.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import Dataset

from lightning_synth.batch import Stage
from lightning_synth.datamodules.base import DomainDataModule
from lightning_synth.datamodules.deferred import (
    DEFERRED,
    DeferredFrames,
    DeferredSource,
    collate_deferred,
    complete_batch,
)
from lightning_synth.datamodules.sources import DepthSource
from lightning_synth.errors import InputError
from lightning_synth.rendering.body import BodyRenderer, RenderedBodies
from lightning_synth.rendering.sensor import DepthSensorNoise

__all__ = ["DepthSource", "RenderedBodySource", "BodyDepthDataModule"]

# Frames of each stage start at their own offset of the renderer's index, so train, val
# and test never share a frame.
_STAGE_OFFSET: dict[str, int] = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}


class RenderedBodySource(DepthSource):
    """Rendered people (:class:`~lightning_synth.rendering.body.BodyRenderer`), on the fly.

    With ``noise`` the frames go through the Kinect-like sensor model, which is how the
    default recipes make their "real" domain (another ``seed``, so other people and poses).

    Args:
        train_length: training frames per epoch (rendered on demand, never stored).
        val_length: validation frames.
        test_length: test frames.
        seed: renderer seed; frame ``i`` of a stage depends only on ``(seed, stage, i)``.
        noise: sensor model applied to every frame; ``None`` keeps the clean renders.
        distance_range: horizontal camera-to-person distance in metres.
        yaw_range: rotation of the person about the vertical in degrees (0 faces the camera).
    """

    def __init__(
        self,
        train_length: int = 20_000,
        val_length: int = 256,
        test_length: int = 512,
        seed: int = 0,
        noise: DepthSensorNoise | None = None,
        distance_range: tuple[float, float] = (1.5, 3.5),
        yaw_range: tuple[float, float] = (-180.0, 180.0),
    ) -> None:
        lengths = {"train": train_length, "val": val_length, "test": test_length}
        if min(lengths.values()) < 0:
            raise InputError(f"frame counts must be >= 0, got {lengths}")
        self.lengths = lengths
        self.seed = seed
        self.noise = noise
        self.distance_range = tuple(distance_range)
        self.yaw_range = tuple(yaw_range)
        # Fail on bad renderer arguments now, at config time, not in a worker mid-fit.
        self.dataset("val", 8, 8)

    def dataset(self, stage: Stage, height: int, width: int) -> RenderedBodies:
        renderer = BodyRenderer(
            height,
            width,
            seed=self.seed,
            distance_range=self.distance_range,  # type: ignore[arg-type]
            yaw_range=self.yaw_range,  # type: ignore[arg-type]
        )
        return RenderedBodies(
            self.lengths[stage], renderer, noise=self.noise, offset=_STAGE_OFFSET[stage]
        )


class BodyDepthDataModule(DomainDataModule):
    """Rendered and real body depth frames in every training batch; each domain reported apart.

    Training batches hold ``round(batch_size * real_fraction)`` real frames and the rest
    rendered. Validation and test sets interleave both domains, each frame flagged, so a
    task reports ``val/rendered_*`` and ``val/real_*``. Real labels are kept for
    validation and test and hidden in training when ``hide_real_labels`` is set.
    ``predict`` runs over the real test set.

    The default real domain is *not* real: it is rendered frames (another seed) passed
    through the Kinect-like sensor model. Point ``real`` at a
    :class:`~lightning_synth.datamodules.DepthFolder` for frames recorded with a depth
    camera.

    Args:
        rendered: source of the rendered frames (domain 0); default clean renders, seed 0.
        real: source of the real frames (domain 1); default renders with seed 1 through
            :class:`~lightning_synth.rendering.sensor.DepthSensorNoise`.
        height: frame height in pixels (a Kinect v1 gives 240 at QVGA).
        width: frame width in pixels (320 at QVGA).
        batch_size: frames per batch and process.
        real_fraction: fraction of every training batch drawn from the real domain.
        hide_real_labels: hide the real training labels (``-1``): unsupervised adaptation.
        num_workers: DataLoader worker processes per training process (each renders).
        seed: seed of the batch composition (the epoch is added).
        render_on: where rendered sources make their frames: ``workers`` (the DataLoader
            workers, on the CPU) or ``device`` (the training device, in the training
            process, right after each batch is moved there, in Lightning's
            ``on_after_batch_transfer`` hook: on a GPU the batched renderer outruns CPU
            workers; workers then only load frames from disk, so ``num_workers: 0`` does
            when none come from there). Same frames either way. Without a Trainer, call
            ``on_after_batch_transfer`` on each batch after moving it.
    """

    def __init__(
        self,
        rendered: DepthSource | None = None,
        real: DepthSource | None = None,
        height: int = 120,
        width: int = 160,
        batch_size: int = 16,
        real_fraction: float = 0.5,
        hide_real_labels: bool = False,
        num_workers: int = 2,
        seed: int = 0,
        render_on: Literal["workers", "device"] = "workers",
    ) -> None:
        if render_on not in ("workers", "device"):
            raise InputError(f"render_on must be 'workers' or 'device', got {render_on!r}")
        if height < 8 or width < 8:
            raise InputError(f"frames must be at least 8 x 8 pixels, got {height} x {width}")
        super().__init__(
            rendered if rendered is not None else RenderedBodySource(seed=0),
            real if real is not None else RenderedBodySource(seed=1, noise=DepthSensorNoise()),
            batch_size=batch_size,
            real_fraction=real_fraction,
            hide_real_labels=hide_real_labels,
            num_workers=num_workers,
            seed=seed,
        )
        self.height, self.width = int(height), int(width)
        self.render_on = render_on
        if render_on == "device":
            self.collate_fn = collate_deferred
        self._deferred: list[DeferredSource] = []

    def source_dataset(self, stage: Stage, domain: int) -> Dataset:
        dataset = self.source(domain).dataset(stage, self.height, self.width)  # type: ignore[call-arg]
        if self.render_on == "device" and isinstance(dataset, RenderedBodies):
            self._deferred.append(DeferredSource(dataset, domain, self.hides_labels(stage, domain)))
            dataset = DeferredFrames(len(dataset), slot=len(self._deferred) - 1)
        return dataset

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and DEFERRED in batch:
            batch = complete_batch(batch, self._deferred)
        # Lightning calls a DataModule's hook instead of the task's: call the task's too.
        model = None if self.trainer is None else self.trainer.lightning_module
        if model is not None and is_overridden("on_after_batch_transfer", model):
            batch = model.on_after_batch_transfer(batch, dataloader_idx)
        return batch

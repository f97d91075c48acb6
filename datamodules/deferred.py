"""Frames rendered on the training device: ``BodyDepthDataModule(render_on="device")``.

By default DataLoader worker processes render the frames on the CPU, which keeps a CPU
run's cores busy but cannot keep up with a GPU (an H200 trains the depth-feature
classifier on 2,000-5,000 frames a second; a CPU core renders a few hundred at 240 x
320). With ``render_on="device"`` the loader hands out only frame numbers
(:class:`DeferredFrames`), :func:`collate_deferred` keeps them apart from frames loaded
from disk, Lightning moves that batch to the training device, and :func:`complete_batch`,
called from the DataModule's ``on_after_batch_transfer`` hook, renders the frames there,
in one batched call per source
(:meth:`~lightning_synth.rendering.body.RenderedBodies.render_batch`), and puts every
frame back in its place in the batch.

Frames are a function of ``(seed, index)`` only, so a batch holds the same frames either
way (bit for bit on the same device type).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, default_collate

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, LABEL, Batch
from lightning_synth.rendering.body import RenderedBodies, item_numbers

__all__ = ["DeferredFrames", "DeferredSource", "collate_deferred", "complete_batch"]

#: Item keys of a frame still to be rendered, and the batch key that holds such frames.
FRAME, SOURCE, DEFERRED, LOADED = "deferred_frame", "deferred_source", "deferred", "loaded"


@dataclass
class DeferredSource:
    """What the training process needs to render one source's frames later.

    Args:
        frames: the source's frames (rendered on the CPU by default).
        domain: the domain the frames are flagged with.
        hide_labels: replace their part labels by ``IGNORE_LABEL``.
    """

    frames: RenderedBodies
    domain: int
    hide_labels: bool = False

    def __post_init__(self) -> None:
        self._on: dict[torch.device, RenderedBodies] = {}

    def on(self, device: torch.device) -> RenderedBodies:
        """The same frames, made on ``device`` (built once per device)."""
        if device not in self._on:
            self._on[device] = self.frames.to(device)
        return self._on[device]


class DeferredFrames(Dataset):
    """Stands in for a rendered dataset: item ``i`` is ``{deferred_frame: i,
    deferred_source: slot}``, rendered later by :func:`complete_batch`.

    Args:
        length: number of frames (that of the dataset it stands in for).
        slot: which :class:`DeferredSource` renders them.
    """

    def __init__(self, length: int, slot: int) -> None:
        self.length, self.slot = int(length), int(slot)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Batch]:
        slot = torch.tensor(self.slot)
        return [{FRAME: torch.tensor(i), SOURCE: slot} for i in item_numbers(indices, self.length)]


def collate_deferred(items: list[Batch]) -> Batch:
    """``default_collate``, with the frames still to be rendered kept apart.

    A batch with such frames is ``{"deferred": {position, frame, source}}`` plus, when some
    items were loaded whole (real frames from disk), ``{"loaded": {position, batch}}``.
    """
    deferred = [k for k, item in enumerate(items) if FRAME in item]
    if not deferred:
        return default_collate(items)
    loaded = [k for k, item in enumerate(items) if FRAME not in item]
    batch: Batch = {
        DEFERRED: {
            "position": torch.tensor(deferred),
            "frame": torch.stack([items[k][FRAME] for k in deferred]),
            "source": torch.stack([items[k][SOURCE] for k in deferred]),
        }
    }
    if loaded:
        batch[LOADED] = {
            "position": torch.tensor(loaded),
            "batch": default_collate([items[k] for k in loaded]),
        }
    return batch


def complete_batch(batch: Batch, sources: Sequence[DeferredSource]) -> Batch:
    """Render the deferred frames of ``batch`` where the batch is and return the whole batch.

    Args:
        batch: a batch from :func:`collate_deferred`, moved to the training device.
        sources: the deferred sources, by slot.
    """
    deferred = batch[DEFERRED]
    device = deferred["frame"].device
    positions, frames = deferred["position"], deferred["frame"].tolist()
    slots = deferred["source"].tolist()
    parts: list[tuple[torch.Tensor, Batch]] = []
    for slot in sorted(set(slots)):
        source = sources[slot]
        picked = [k for k, s in enumerate(slots) if s == slot]
        rendered = source.on(device).render_batch([frames[k] for k in picked])
        rendered[DOMAIN] = rendered[DOMAIN].fill_(source.domain)
        if source.hide_labels:
            rendered[LABEL] = rendered[LABEL].fill_(IGNORE_LABEL)
        parts.append((positions[picked], rendered))
    loaded = batch.get(LOADED)
    if loaded is not None:
        parts.append((loaded["position"], loaded["batch"]))
    order = torch.cat([where for where, _ in parts])
    if len(parts) == 1 and torch.equal(order, torch.arange(len(order), device=order.device)):
        return parts[0][1]
    keys = parts[0][1].keys()
    for _, part in parts[1:]:
        if part.keys() != keys:
            raise KeyError(
                f"frames rendered on the device carry {sorted(keys)} but frames loaded in the "
                f"workers carry {sorted(part.keys())}: a DepthSource's items must have the "
                f"keys of the batch contract"
            )
    # One gather per key puts every frame back in its place in the batch.
    inverse = torch.argsort(order)
    return {
        key: torch.cat([part[key] for _, part in parts]).index_select(0, inverse) for key in keys
    }

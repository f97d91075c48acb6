"""Export a trained task for inference without Lightning: ONNX or ``torch.export`` (``.pt2``).

What is exported is the task's ``forward`` (for ``ImageClassifier``: images ->
``B x num_classes`` logits; for ``BodyPartClassifier``: depth ``B x 1 x H x W`` in metres
-> ``B x 31 x H x W`` part logits, 0 on pixels without a reading), in eval mode, with a
free batch dimension; the other dimensions are those of the example input.

The example input comes from, in this order:

1. the task's ``export_example(datamodule)`` hook, if it defines one: the positional
   inputs of its ``forward`` as a tensor or a tuple of tensors (``datamodule`` may be
   ``None``). A task whose ``forward`` does not take a batch's ``image`` defines it;
2. its ``example_input_array`` (Lightning's attribute);
3. the ``image`` of the first test batch of the DataModule.

Modules that do not trace well are replaced by equivalents before export: Shotton's
depth-comparison features (:class:`~lightning_synth.nn.DepthComparisonFeatures`) size a
padded image from the data, which a traced graph would freeze; the export
reads every probe from its own frame instead. Every export is checked: the exported model runs on the example
and its output is compared with the task's own.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.batch import IMAGE
from lightning_synth.errors import InputError
from lightning_synth.nn.depth_features import REFERENCE_WIDTH, DepthComparisonFeatures

__all__ = [
    "ExportFormat",
    "compare",
    "example_inputs",
    "exportable",
    "export_model",
    "run_exported",
]

ExportFormat = Literal["onnx", "pt2"]
_ONNX_OPSET = 17


def example_inputs(model: nn.Module, datamodule: Any = None) -> tuple[torch.Tensor, ...]:
    """Positional inputs of ``model.forward`` to export with (see the module docstring).

    Args:
        model: the task.
        datamodule: a DataModule whose first test batch serves when the task has neither
            ``export_example`` nor ``example_input_array``.
    """
    hook = getattr(model, "export_example", None)
    if callable(hook):
        return _as_tuple(hook(datamodule))
    example = getattr(model, "example_input_array", None)
    if example is not None:
        return _as_tuple(example)
    if datamodule is None:
        raise InputError(
            f"{type(model).__name__} has neither export_example() nor example_input_array; "
            f"pass a config whose data section makes its input"
        )
    datamodule.prepare_data()
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    hook = getattr(datamodule, "on_after_batch_transfer", None)
    if callable(hook):  # e.g. frames rendered on the device are completed here
        batch = hook(batch, 0)
    if not isinstance(batch, dict) or IMAGE not in batch:
        raise InputError(
            f"the first test batch of {type(datamodule).__name__} holds no {IMAGE!r}; "
            f"define export_example() on {type(model).__name__}"
        )
    return (batch[IMAGE],)


def _as_tuple(example: Any) -> tuple[torch.Tensor, ...]:
    example = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    if not example or not all(isinstance(item, torch.Tensor) for item in example):
        raise InputError("an export example must be a tensor or a tuple of tensors")
    return example


class _ExportableDepthFeatures(nn.Module):
    """:class:`DepthComparisonFeatures` of the foreground pixels, read with one gather.

    The module it replaces stacks the frames into one tall image, separated by a gap of
    background rows that it sizes from the nearest depth in the batch; a traced graph
    would keep the example's gap, too small for nearer people. Here each probe reads its
    own frame, framed by a border of background two pixels wide: a probe outside the
    frame is clamped into that border, so it reads the background as the original does,
    whatever the frames hold. The probes are the same (the nearest-depth clamp included);
    the positions are computed in pixels rather than in ``grid_sample``'s coordinates,
    so a nearest-pixel probe exactly halfway may round the other way.
    """

    sparse = True
    _BORDER = 2

    def __init__(self, features: DepthComparisonFeatures) -> None:
        super().__init__()
        self.num_features = self.out_features = features.num_features
        self.background = features.background
        self.interpolation = features.interpolation
        self.register_buffer("offsets", features.offsets.detach().clone())

    def foreground_features(self, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = depth[:, 0] if depth.ndim == 4 else depth
        batch, height, width = frames.shape
        border = self._BORDER
        index = (frames.flatten() > 0).nonzero()[:, 0]
        filled = torch.where(frames > 0, frames, torch.full_like(frames, self.background))
        framed = F.pad(filled - self.background, (border,) * 4).flatten()  # background: 0
        reach = self.offsets[..., 1].abs().max() * (width / REFERENCE_WIDTH)
        centre = torch.maximum(filled.flatten().index_select(0, index), reach / (4 * height + 1))
        frame = torch.div(index, height * width, rounding_mode="floor")
        within = index - frame * (height * width)
        xs = (within % width).to(frames.dtype)
        ys = torch.div(within, width, rounding_mode="floor").to(frames.dtype)
        scale = (width / REFERENCE_WIDTH) / centre  # pixels moved per offset unit
        # offsets: F x (u, v) x (along x, along y) -> probe positions N x F x 2
        px = torch.addcmul(xs[:, None, None], scale[:, None, None], self.offsets[..., 0])
        py = torch.addcmul(ys[:, None, None], scale[:, None, None], self.offsets[..., 1])
        start = (frame * ((height + 2 * border) * (width + 2 * border)))[:, None, None]
        if self.interpolation == "nearest":
            # grid_sample rounds half to even, as torch.round does
            reads = self._read(framed, start, torch.round(px), torch.round(py), height, width)
        else:
            x0, y0 = torch.floor(px), torch.floor(py)
            wx, wy = px - x0, py - y0
            top = torch.lerp(
                self._read(framed, start, x0, y0, height, width),
                self._read(framed, start, x0 + 1, y0, height, width),
                wx,
            )
            bottom = torch.lerp(
                self._read(framed, start, x0, y0 + 1, height, width),
                self._read(framed, start, x0 + 1, y0 + 1, height, width),
                wx,
            )
            reads = torch.lerp(top, bottom, wy)
        return reads[..., 0] - reads[..., 1], index

    def _read(
        self,
        framed: torch.Tensor,
        start: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        height: int,
        width: int,
    ) -> torch.Tensor:
        """Depth minus the background at integer pixels ``(x, y)``; 0 outside the frame."""
        border = self._BORDER
        # far outside lands in the border, which holds the background (0)
        x = x.clamp(-border, width) + border
        y = y.clamp(-border, height) + border
        position = start + (y * (width + 2 * border) + x).long()
        return framed.index_select(0, position.flatten()).view_as(x)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        frames = depth[:, 0] if depth.ndim == 4 else depth
        batch, height, width = frames.shape
        features, index = self.foreground_features(frames)
        out = features.new_zeros(batch * height * width, self.num_features)
        out = out.index_copy(0, index, features)
        return out.view(batch, height, width, self.num_features).permute(0, 3, 1, 2)


def exportable(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with the modules that do not trace well replaced by
    equivalents that do (in place: pass a copy to keep the original).

    Args:
        model: the task or network to export.
    """
    model.eval()
    for name, module in list(model.named_modules()):
        if isinstance(module, DepthComparisonFeatures) and module.foreground_only:
            parent, _, attribute = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, attribute, _ExportableDepthFeatures(module))
    return model


def _input_names(model: nn.Module, count: int) -> list[str]:
    parameters = list(inspect.signature(model.forward).parameters)
    names = parameters[:count] if len(parameters) >= count else []
    return names or [f"input_{index}" for index in range(count)]


def export_model(
    model: nn.Module,
    example: Sequence[torch.Tensor],
    path: str | Path,
    format: ExportFormat = "onnx",
) -> Path:
    """Write ``model``'s ``forward`` to ``path`` as ONNX or a ``torch.export`` program.

    The batch dimension of every input and output is free; the others are the example's.
    ONNX uses the TorchScript-based exporter (opset 17), which needs no extra package.

    Args:
        model: the module to export, e.g. from :func:`exportable`.
        example: positional inputs of ``forward``, batch first (at least 2 samples, so
            that no dimension of size 1 is mistaken for a constant).
        path: the file to write.
        format: ``onnx`` or ``pt2``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = tuple(example)
    model.eval()
    if format == "pt2":
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(
            model, example, dynamic_shapes=tuple({0: batch} for _ in example)
        )
        torch.export.save(program, path)
        return path
    if format != "onnx":
        raise InputError(f"format must be 'onnx' or 'pt2', got {format!r}")
    names = _input_names(model, len(example))
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter announces its deprecation and warns of traced shapes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["output"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "output"]},
            opset_version=_ONNX_OPSET,
        )
    return path


def run_exported(path: str | Path, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The first output of an exported model on ``inputs`` (onnxruntime on the CPU for
    ``.onnx``, ``torch.export.load`` for ``.pt2``).

    Args:
        path: a file written by :func:`export_model`.
        inputs: positional inputs, as for the task's ``forward``.
    """
    path = Path(path)
    if path.suffix == ".pt2":
        with torch.no_grad():
            output = torch.export.load(path).module()(*inputs)
        return output[0] if isinstance(output, (tuple, list)) else output
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {
        spec.name: tensor.detach().cpu().numpy()
        for spec, tensor in zip(session.get_inputs(), inputs, strict=True)
    }
    return torch.from_numpy(session.run(None, feed)[0])


def compare(
    expected: torch.Tensor, actual: torch.Tensor, atol: float = 1e-4
) -> tuple[float, float]:
    """``(largest absolute difference, share of values within atol + rtol * |expected|)``.

    Args:
        expected: the task's own output.
        actual: the exported model's output.
        atol: absolute tolerance (relative: 1e-4 of the value).
    """
    difference = (expected.float() - actual.float()).abs()
    close = difference <= atol + 1e-4 * expected.float().abs()
    largest = float(difference.max()) if difference.numel() else 0.0
    return largest, float(close.float().mean()) if close.numel() else 1.0

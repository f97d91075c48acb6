"""Body-part inference from the exported ONNX model on a folder of depth frames, on the CPU.

What a user of ``lightning-synth export`` runs: read each 16-bit depth PNG of a folder
(``DepthFolder`` layout, millimetres), run the ONNX model with onnxruntime, take the most
likely part of every pixel with a reading. One frame at a time, as a live sensor delivers
them; frames per second with reading the file and without, and PyTorch's own
``BodyPartClassifier.predict_parts`` on the same frames for reference.

    python benchmarks/body_parts_onnx.py --ckpt-path runs/body_parts/version_0/checkpoints/last.ckpt
    python benchmarks/body_parts_onnx.py --frames 200 --threads 1   # untrained, default network

Without ``--frames-dir`` it writes sensor-model frames (``configs/body_parts.yaml``'s "real"
domain) to a temporary folder first. Speed does not depend on the weights, only on the
network's size and on how many pixels show a person, so without ``--ckpt-path`` the
default network of ``configs/body_parts.yaml`` is timed untrained.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from PIL import Image

from lightning_synth.datamodules import RenderedBodySource
from lightning_synth.datamodules.depth_folder import read_depth
from lightning_synth.export import export_model, exportable
from lightning_synth.memory import keep_freed_memory
from lightning_synth.nn import DepthComparisonFeatures
from lightning_synth.rendering.sensor import DepthSensorNoise
from lightning_synth.tasks import BodyPartClassifier


def write_frames(folder: Path, count: int, height: int, width: int) -> list[Path]:
    """``count`` sensor-model frames as 16-bit millimetre PNGs in ``folder/depth/``."""
    (folder / "depth").mkdir(parents=True, exist_ok=True)
    source = RenderedBodySource(
        test_length=count, seed=1, noise=DepthSensorNoise(), yaw_range=(-90.0, 90.0)
    )
    frames = source.dataset("test", height, width)
    paths = []
    for index in range(count):
        metres = frames[index]["image"][0].numpy()
        path = folder / "depth" / f"frame{index:05d}.png"
        Image.fromarray(np.round(metres * 1000).astype(np.uint16)).save(path)
        paths.append(path)
    return paths


def _model(ckpt_path: str | None) -> BodyPartClassifier:
    if ckpt_path:
        return BodyPartClassifier.load_from_checkpoint(ckpt_path, map_location="cpu").eval()
    features = DepthComparisonFeatures(num_features=128, max_offset=200.0)
    return BodyPartClassifier(feature_extractor=features, hidden=[128], joint_frames=0).eval()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-path", default=None, help="a BodyPartClassifier checkpoint")
    parser.add_argument("--frames-dir", default=None, help="DepthFolder root; default: rendered")
    parser.add_argument("--frames", type=int, default=200, help="frames to render and time")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (both runtimes)")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        if args.frames_dir:
            paths = sorted(Path(args.frames_dir, "depth").glob("*.png"))[: args.frames]
        else:
            paths = write_frames(Path(scratch), args.frames, args.height, args.width)
        height, width = read_depth(paths[0]).shape
        model = _model(args.ckpt_path)
        example = torch.from_numpy(np.stack([read_depth(p) for p in paths[:2]]))[:, None]
        onnx_path = export_model(
            exportable(copy.deepcopy(model)), (example,), Path(scratch) / "m.onnx"
        )

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        frames = [read_depth(path)[None, None] for path in paths]

        def onnx_parts(depth: np.ndarray) -> np.ndarray:
            logits = session.run(None, {name: depth})[0][0]  # 31 x H x W
            person = depth[0, 0] > 0
            parts = np.full(person.shape, -1)
            parts[person] = logits[:, person].argmax(axis=0)  # the person's pixels only
            return parts

        onnx_parts(frames[0])  # warm-up
        start = time.perf_counter()
        for path in paths:
            onnx_parts(read_depth(path)[None, None])
        with_reading = time.perf_counter() - start
        start = time.perf_counter()
        predicted = [onnx_parts(depth) for depth in frames]
        onnx_seconds = time.perf_counter() - start

        tensors = [torch.from_numpy(depth) for depth in frames]
        model.predict_parts(tensors[0])
        start = time.perf_counter()
        reference = [model.predict_parts(depth)[0].numpy() for depth in tensors]
        torch_seconds = time.perf_counter() - start
        reference = [np.where(d[0, 0] > 0, r, -1) for d, r in zip(frames, reference, strict=True)]

    foreground = np.concatenate([depth[0, 0].ravel() > 0 for depth in frames])
    agree = np.concatenate([a.ravel() for a in predicted]) == np.concatenate(
        [r.ravel() for r in reference]
    )
    count = len(paths)
    result = {
        "frames": count,
        "height": height,
        "width": width,
        "threads": args.threads,
        "checkpoint": args.ckpt_path,
        "foreground_fraction": float(foreground.mean()),
        "onnx_fps_with_png_reading": count / with_reading,
        "onnx_fps": count / onnx_seconds,
        "pytorch_predict_parts_fps": count / torch_seconds,
        "parts_agreeing_with_pytorch": float(agree[foreground].mean()),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    print(f"Body-part inference on {count} frames of {height} x {width}, {args.threads} thread(s)")
    print(f"  person pixels: {100 * result['foreground_fraction']:.1f} % of each frame")
    print(
        f"  ONNX (onnxruntime), reading the PNG too:  {result['onnx_fps_with_png_reading']:7.1f} frames/s"
    )
    print(f"  ONNX (onnxruntime), frames in memory:     {result['onnx_fps']:7.1f} frames/s")
    print(
        f"  PyTorch predict_parts, frames in memory:  {result['pytorch_predict_parts_fps']:7.1f} frames/s"
    )
    print(f"  parts agreeing with PyTorch: {100 * result['parts_agreeing_with_pytorch']:.3f} %")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

"""What the Kinect-v1-like sensor model does to rendered people: pixels each effect removes.

Renders people (facing the camera within 90 degrees, as in ``configs/body_parts.yaml``)
and passes them through :class:`~lightning_synth.rendering.sensor.DepthSensorNoise`
with all effects, with each effect alone, and with the defaults of earlier versions
(edge dropout 0.8 on both sides of every depth step, random dropout, Nguyen's axial
noise, quantisation at the image's own focal length, 0.4-8 m). Prints the fraction of
the person's pixels each removes and the depth error of the kept ones, and with
``--picture`` draws a rendered frame, its sensor-model frame and what each effect adds
(the person alone, as in training, and in front of a wall 1 m behind, where the
projector's shadow shows).

    python benchmarks/sensor_model.py --picture docs/sensor_model.png
"""

from __future__ import annotations

import argparse
import json

import torch

from lightning_synth.rendering.body import BodyRenderer
from lightning_synth.rendering.sensor import DepthSensorNoise

#: Every effect off: each row of the table turns one on.
OFF = {
    "axial_noise": False,
    "quantize": False,
    "edge_dropout": False,
    "grazing_dropout": False,
    "random_dropout": False,
    "range_limits": False,
    "projector_shadows": False,
    "lateral_noise": False,
}
EFFECTS = {
    "projector shadows": {"projector_shadows": True},
    "out of range (0.8-4 m)": {"range_limits": True},
    "lateral noise, edges, flying pixels": {"lateral_noise": True},
    "edge dropout (0.1)": {"edge_dropout": True},
    "grazing angles (> 75 deg)": {"grazing_dropout": True},
    "axial noise + quantisation": {"axial_noise": True, "quantize": True},
}
PREVIOUS = {
    "edge_prob": 0.8,
    "random_dropout": True,
    "min_depth": 0.4,
    "max_depth": 8.0,
    "axial_model": "nguyen",
    "native_width": None,
    "projector_shadows": False,
    "lateral_noise": False,
}


def _sensors() -> dict[str, DepthSensorNoise]:
    sensors = {"all effects (default)": DepthSensorNoise()}
    sensors.update({name: DepthSensorNoise(**{**OFF, **on}) for name, on in EFFECTS.items()})
    sensors["earlier defaults"] = DepthSensorNoise(**PREVIOUS)
    return sensors


def measure(height: int, width: int, frames: int) -> dict[str, dict[str, float]]:
    """Per sensor: fraction of person pixels removed and mean |error| (mm) of the kept."""
    frame = BodyRenderer(height, width, seed=1, yaw_range=(-90.0, 90.0)).render(range(frames))
    result = {}
    for name, sensor in _sensors().items():
        noisy, valid = sensor(frame.depth, frame.intrinsics)
        error = (noisy - frame.depth)[valid].abs()
        result[name] = {
            "removed": 1 - float(valid.sum() / frame.valid.sum()),
            "mean_abs_error_mm": 1000 * float(error.mean()) if len(error) else float("nan"),
        }
    return result


def picture(path: str, seed: int = 3, candidates: int = 24) -> None:
    """Draw the clean frame, the sensor frame and each effect's contribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    renderer = BodyRenderer(240, 320, seed=seed, yaw_range=(-30.0, 30.0), mirror=False)
    frames = renderer.render(range(candidates))
    # The frame where the projector's shadow shows most inside the body.
    shadow = DepthSensorNoise().shadow_mask(frames.depth, frames.intrinsics)
    pick = int(shadow.flatten(1).sum(1).argmax())
    depth, intrinsics = frames.depth[pick : pick + 1], frames.intrinsics[pick : pick + 1]
    wall = torch.where(depth > 0, depth, depth[depth > 0].median() + 1.0)

    def grey(image: torch.Tensor, near: float, far: float) -> torch.Tensor:
        shade = 1 - 0.8 * (image - near) / (far - near)
        return torch.where(image > 0, shade.clamp(0, 1), 0.0)[..., None].expand(-1, -1, 3)

    def removed(clean: torch.Tensor, valid: torch.Tensor, near: float, far: float):
        rgb = grey(clean, near, far).clone()
        lost = (clean > 0) & ~valid
        rgb[lost] = torch.tensor([1.0, 0.1, 0.1])
        return rgb, float(lost.sum() / (clean > 0).sum())

    sensors = _sensors()
    near, far = float(depth[depth > 0].min()), float(wall.max())
    generator = [torch.Generator().manual_seed(0)]
    tiles = [("rendered (clean)", grey(depth[0], near, far))]
    noisy, _ = sensors["all effects (default)"](depth, intrinsics, generator)
    tiles.append(("sensor model (all effects)", grey(noisy[0], near, far)))
    for name in EFFECTS:
        # Range and axial noise remove nothing from a person within 0.8-4 m.
        if name in ("axial noise + quantisation", "out of range (0.8-4 m)"):
            continue
        _, valid = sensors[name](depth, intrinsics, [torch.Generator().manual_seed(0)])
        rgb, lost = removed(depth[0], valid[0], near, far)
        tiles.append((f"{name.split(',')[0]}: -{100 * lost:.1f}%", rgb))
    lateral, valid = sensors["lateral noise, edges, flying pixels"](
        depth, intrinsics, [torch.Generator().manual_seed(0)]
    )
    moved = valid & ((lateral - depth).abs() > 0.01)
    rgb = grey(lateral[0], near, far).clone()
    rgb[moved[0]] = torch.tensor([0.1, 0.5, 1.0])
    tiles.append(("lateral: depth taken across a step", rgb))
    error, valid = sensors["axial noise + quantisation"](
        depth, intrinsics, [torch.Generator().manual_seed(0)]
    )
    tiles.append(("axial noise + quantisation (error)", (error - depth)[0] * valid[0]))
    noisy_wall, valid_wall = sensors["all effects (default)"](wall, intrinsics, generator)
    tiles.append(("with a wall 1 m behind: sensor", grey(noisy_wall[0], near, far)))
    _, valid = sensors["projector shadows"](wall, intrinsics, [torch.Generator().manual_seed(0)])
    rgb, _ = removed(wall[0], valid[0], near, far)
    tiles.append(("with a wall: projector shadow", rgb))

    # Show the person's surroundings only (the frame is mostly empty).
    ys, xs = (depth[0] > 0).nonzero().unbind(1)
    top, bottom = max(int(ys.min()) - 12, 0), min(int(ys.max()) + 13, depth.shape[1])
    left, right = max(int(xs.min()) - 12, 0), min(int(xs.max()) + 13, depth.shape[2])
    tiles = [(title, image[top:bottom, left:right]) for title, image in tiles]
    columns = 5
    rows = -(-len(tiles) // columns)
    aspect = (bottom - top) / (right - left)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * aspect * rows + 0.6))
    for axis in axes.flat:
        axis.axis("off")
    for axis, (title, image) in zip(axes.flat, tiles, strict=False):
        if image.ndim == 2:
            shown = axis.imshow(1000 * image.numpy(), cmap="coolwarm", vmin=-25, vmax=25)
            figure.colorbar(shown, ax=axis, fraction=0.035, label="mm")
        else:
            axis.imshow(image.numpy())
        axis.set_title(title, fontsize=8)
    figure.suptitle(
        "Kinect-v1-like sensor model, a person at 240 x 320 (cropped). Red: depth lost; "
        "blue: depth taken from across a depth step.\nThe projector sits 7.5 cm right of "
        "the camera: its shadow falls left of depth steps.",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="frames per resolution")
    parser.add_argument("--sizes", default="120x160,240x320", help="HxW, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="intra-op CPU threads")
    parser.add_argument("--picture", default=None, help="write the picture (PNG) here")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {}
    for size in args.sizes.split(","):
        height, width = (int(v) for v in size.split("x"))
        result[size] = measure(height, width, args.frames)
    names = list(next(iter(result.values())))
    print("| sensor model | " + " | ".join(f"{s}: removed, mean abs error" for s in result) + " |")
    print("|---" * (len(result) + 1) + "|")
    for name in names:
        cells = [
            f"{100 * r[name]['removed']:.1f}%, {r[name]['mean_abs_error_mm']:.1f} mm"
            for r in result.values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.picture:
        picture(args.picture)
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()

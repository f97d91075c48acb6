"""``CameraNoise``: the noise a camera makes, after Brooks et al. (2019).

"Unprocessing images for learned raw denoising" (CVPR 2019) inverts a camera's
processing to bring an sRGB photograph back to the sensor, adds the sensor's noise there,
and processes it again. Noise made this way is what real photographs carry and white
Gaussian noise is not: signal-dependent (shot noise), stronger in the shadows (the gamma
and tone curves stretch them), colour-dependent (white balance and colour matrix mix and
scale the channels) and spatially correlated (demosaicing interpolates it; JPEG
quantises it in 8 x 8 blocks). The steps, each switchable, each parameter a range that
every image draws from:

1. inverse tone curve (smoothstep) and inverse gamma (2.2): sRGB to linear light;
2. inverse colour matrix: linear sRGB to camera RGB (a random mix of four cameras'
   XYZ-to-camera matrices, as the paper);
3. inverse white balance and brightness gains (highlights kept from clipping);
4. mosaic to a Bayer pattern (one colour per pixel);
5. shot and read noise (:class:`~lightning_synth.rendering.noise.PoissonGaussianNoise`);
6. white balance, bilinear demosaicing, colour matrix, gamma and tone curve;
7. in-camera noise reduction (not in the paper; off by default): the processed noise
   ``process(raw + noise) - process(raw)`` low-passed, its luminance and its colour
   apart, as cameras smooth colour noise far more than luminance noise;
8. JPEG at a random quality.

``detail="clean"`` (the default) adds the processed noise to the clean photograph, so the
clean image stays the exact target of a denoiser, and the camera's own demosaicing (finer
than bilinear) is not replaced by a blurrier one the network would learn to undo; JPEG
then contributes what it does to the noise, ``jpeg(x + noise) - jpeg(x)``, not the
compression of the scene itself (a real pair's reference is a JPEG of the same scene).
``detail="pipeline"`` adds the noise to ``process(raw)`` and compresses the result, which
is the paper's ``process(raw + noise)`` (plus JPEG) when noise reduction is off. Gray
images go through in RGB and come back as luminance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from lightning_synth.errors import InputError
from lightning_synth.rendering.noise import (
    NoiseModel,
    PoissonGaussianNoise,
    Range,
    as_range,
    uniform,
)

__all__ = [
    "CameraNoise",
    "BAYER_PATTERNS",
    "mosaic",
    "demosaic",
    "jpeg_round_trip",
    "gaussian_blur",
    "smoothstep",
    "inverse_smoothstep",
]

#: Bayer patterns by name: the colour (0 R, 1 G, 2 B) at rows/columns (even, even),
#: (even, odd), (odd, even), (odd, odd).
BAYER_PATTERNS: dict[str, tuple[int, int, int, int]] = {
    "rggb": (0, 1, 1, 2),
    "bggr": (2, 1, 1, 0),
    "grbg": (1, 0, 2, 1),
    "gbrg": (1, 2, 0, 1),
}

# XYZ-to-camera matrices of four cameras, and linear-sRGB-to-XYZ (D65), from Brooks et al.
_XYZ_TO_CAMERAS = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.613, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.838, -0.263, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.097, 0.1581, 0.5181)),
)
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_LUMINANCE = (0.2125, 0.7154, 0.0721)  # ITU-R 709, as the image readers use
_GAMMA = 2.2


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    """The global tone curve ``3x^2 - 2x^3`` of Brooks et al."""
    x = x.clamp(0, 1)
    return x * x * (3.0 - 2.0 * x)


def inverse_smoothstep(y: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`smoothstep` on [0, 1]."""
    y = y.clamp(0, 1)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)


def _site_colours(pattern: str, height: int, width: int, device: torch.device) -> torch.Tensor:
    """``H x W`` long tensor: the colour each photosite records."""
    if pattern not in BAYER_PATTERNS:
        raise InputError(f"Bayer pattern must be one of {sorted(BAYER_PATTERNS)}, got {pattern!r}")
    table = torch.tensor(BAYER_PATTERNS[pattern], device=device).view(2, 2)
    rows = torch.arange(height, device=device) % 2
    cols = torch.arange(width, device=device) % 2
    return table[rows[:, None], cols[None, :]]


def mosaic(images: torch.Tensor, pattern: str = "rggb") -> torch.Tensor:
    """The Bayer mosaic ``B x 1 x H x W`` of RGB ``images`` (one colour per pixel).

    Args:
        images: ``B x 3 x H x W``.
        pattern: ``rggb``, ``bggr``, ``grbg`` or ``gbrg`` (the colours of the top-left 2 x 2).
    """
    sites = _site_colours(pattern, images.shape[-2], images.shape[-1], images.device)
    index = sites.expand(images.shape[0], 1, -1, -1)
    return torch.gather(images, 1, index)


_GREEN_KERNEL = ((0.0, 0.25, 0.0), (0.25, 1.0, 0.25), (0.0, 0.25, 0.0))
_RED_BLUE_KERNEL = ((0.25, 0.5, 0.25), (0.5, 1.0, 0.5), (0.25, 0.5, 0.25))


def demosaic(raw: torch.Tensor, pattern: str = "rggb") -> torch.Tensor:
    """Bilinear demosaicing: ``B x 3 x H x W`` RGB from a ``B x 1 x H x W`` Bayer mosaic.

    Each colour is known at its own photosites and interpolated from the nearest ones
    elsewhere (exact on images of constant colour). Borders are mirrored, which keeps the
    pattern's parity.

    Args:
        raw: the mosaic.
        pattern: its Bayer pattern (see :func:`mosaic`).
    """
    height, width = raw.shape[-2:]
    if height < 2 or width < 2:
        raise InputError(f"a Bayer mosaic needs at least 2 x 2 pixels, got {height} x {width}")
    sites = _site_colours(pattern, height, width, raw.device)
    masks = torch.stack([sites == colour for colour in range(3)]).to(raw.dtype)  # 3 x H x W
    sparse = raw * masks[None]  # B x 3 x H x W, zeros where a colour is not recorded
    kernels = torch.tensor(
        (_RED_BLUE_KERNEL, _GREEN_KERNEL, _RED_BLUE_KERNEL), dtype=raw.dtype, device=raw.device
    )
    padded = F.pad(sparse, (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernels[:, None], groups=3)


def jpeg_round_trip(images: torch.Tensor, quality: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Encode each image as JPEG at its ``quality`` and decode it again (libjpeg, 4:2:0).

    The codec runs on the CPU; the result comes back on the images' device and dtype.

    Args:
        images: ``B x C x H x W`` in [0, 1], C 1 or 3.
        quality: one JPEG quality (1-100) per image.
    """
    qualities = [int(q) for q in quality]
    if len(qualities) != len(images):
        raise ValueError(f"got {len(qualities)} qualities for {len(images)} images")
    if any(not 1 <= q <= 100 for q in qualities):
        raise InputError(f"JPEG quality must be within 1-100, got {qualities}")
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    decoded = [
        decode_jpeg(encode_jpeg(image, quality=q))
        for image, q in zip(pixels, qualities, strict=True)
    ]
    out = torch.stack(decoded).to(device=images.device, dtype=images.dtype)
    return out / 255.0


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of ``B x C x H x W`` blurred by a Gaussian of its own ``sigma`` pixels
    (``B``; 0 leaves the image as it is). Borders are replicated.

    Args:
        images: the batch.
        sigma: standard deviation per image, in pixels.
    """
    out = []
    for image, s in zip(images, sigma.tolist(), strict=True):
        if s <= 0:
            out.append(image)
            continue
        radius = max(1, int(3 * s + 0.5))
        taps = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
        kernel = torch.exp(-0.5 * (taps / s) ** 2)
        kernel = kernel / kernel.sum()
        x = image[:, None]  # channels as a batch of one-channel images
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
        out.append(x[:, 0])
    return torch.stack(out)


class CameraNoise(NoiseModel):
    """Camera noise made as a camera makes it (Brooks et al. 2019, plus JPEG).

    Args:
        tone_curve: undo and redo the smoothstep tone curve.
        gamma: undo and redo the 2.2 gamma.
        color_matrix: go to camera RGB with a random colour matrix and back.
        white_balance: undo and redo random white-balance and brightness gains.
        red_gain: red white-balance gain (the paper: 1.9-2.4).
        blue_gain: blue white-balance gain (the paper: 1.5-1.9).
        brightness: the inverse of the brightness gain, as a range (the paper draws it from
            N(0.8, 0.1), about 0.6-1.0); darker raw images get relatively more noise.
        bayer: mosaic to a Bayer pattern and demosaic (bilinear); off, the noise is added
            to each colour channel at every pixel.
        pattern: the Bayer pattern, or ``random`` for one of the four per image.
        shot: shot-noise variance per unit of (linear, raw) signal, drawn log-uniformly
            (the paper: 1e-4 to 1.2e-2).
        read: read-noise variance range; ``None`` ties it to ``shot`` as the paper fits.
        luma_blur: standard deviation in pixels of the Gaussian low-pass of the processed
            noise's luminance (in-camera noise reduction; 0: none, the paper).
        chroma_blur: the same for the noise's colour (each channel minus the luminance).
        jpeg_quality: JPEG quality range (integers, drawn uniformly); ``None``: no JPEG.
        detail: ``clean`` adds the processed noise to the clean image (the default; see
            the module's docstring); ``pipeline`` returns the processed raw image.
        clip: clip the result to [0, 1].
        seed: seed of the generator used when ``forward`` gets none.
    """

    def __init__(
        self,
        tone_curve: bool = True,
        gamma: bool = True,
        color_matrix: bool = True,
        white_balance: bool = True,
        red_gain: Range = (1.9, 2.4),
        blue_gain: Range = (1.5, 1.9),
        brightness: Range = (0.6, 1.0),
        bayer: bool = True,
        pattern: Literal["rggb", "bggr", "grbg", "gbrg", "random"] = "rggb",
        shot: Range = (1e-4, 1.2e-2),
        read: Range | None = None,
        luma_blur: Range = 0.0,
        chroma_blur: Range = 0.0,
        jpeg_quality: tuple[int, int] | None = (80, 100),
        detail: Literal["clean", "pipeline"] = "clean",
        clip: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(clip=clip, seed=seed)
        if pattern != "random" and pattern not in BAYER_PATTERNS:
            raise InputError(f"pattern must be 'random' or one of {sorted(BAYER_PATTERNS)}")
        if detail not in ("clean", "pipeline"):
            raise InputError(f"detail must be 'clean' or 'pipeline', got {detail!r}")
        self.tone_curve, self.gamma = bool(tone_curve), bool(gamma)
        self.color_matrix, self.white_balance = bool(color_matrix), bool(white_balance)
        self.red_gain = as_range(red_gain, "red_gain", low=1e-3)
        self.blue_gain = as_range(blue_gain, "blue_gain", low=1e-3)
        self.brightness = as_range(brightness, "brightness", low=1e-3)
        self.bayer, self.pattern = bool(bayer), pattern
        self.sensor = PoissonGaussianNoise(shot=shot, read=read, clip=False)
        self.luma_blur = as_range(luma_blur, "luma_blur")
        self.chroma_blur = as_range(chroma_blur, "chroma_blur")
        if jpeg_quality is None:
            self.jpeg_quality = None
        else:
            low, high = (int(q) for q in as_range(jpeg_quality, "jpeg_quality", low=1))
            if high > 100:
                raise InputError(f"jpeg_quality must lie within 1-100, got {jpeg_quality}")
            self.jpeg_quality = (low, high)
        self.detail = detail

    # -- the steps ----------------------------------------------------------------------------
    def _colour_matrices(
        self, count: int, generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """``count x 3 x 3`` linear-sRGB-to-camera matrices, rows summing to 1."""
        weights = uniform((1e-8, 1.0), count * len(_XYZ_TO_CAMERAS), generator, device)
        weights = weights.view(count, -1, 1, 1)
        cameras = torch.tensor(_XYZ_TO_CAMERAS, device=device)
        xyz_to_camera = (weights * cameras).sum(1) / weights.sum(1)
        rgb_to_camera = xyz_to_camera @ torch.tensor(_RGB_TO_XYZ, device=device)
        return rgb_to_camera / rgb_to_camera.sum(-1, keepdim=True)

    def _gains(self, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """``count x 3`` white-balance times brightness gains (R, G, B)."""
        red = uniform(self.red_gain, count, generator, device)
        blue = uniform(self.blue_gain, count, generator, device)
        brightness = 1.0 / uniform(self.brightness, count, generator, device)
        return torch.stack([red, torch.ones_like(red), blue], 1) * brightness[:, None]

    def _patterns(self, count: int, generator: torch.Generator) -> list[str]:
        names = sorted(BAYER_PATTERNS)
        draws = torch.randint(len(names), (count,), generator=generator, device=generator.device)
        if self.pattern != "random":
            return [self.pattern] * count
        return [names[int(i)] for i in draws]

    def unprocess(
        self, images: torch.Tensor, matrix: torch.Tensor, gains: torch.Tensor
    ) -> torch.Tensor:
        """sRGB ``B x 3 x H x W`` to linear camera RGB (before the mosaic)."""
        x = images.clamp(0, 1)
        if self.tone_curve:
            x = inverse_smoothstep(x)
        if self.gamma:
            x = x.clamp_min(1e-8) ** _GAMMA
        if self.color_matrix:
            x = torch.einsum("bij,bjhw->bihw", matrix.to(x.dtype), x)
        if self.white_balance:
            # Brooks et al.'s safe inversion: near white, the gains fade to 1 so that
            # highlights are not clipped in the raw image and then lose their colour.
            inverse = (1.0 / gains).to(x.dtype)[:, :, None, None]
            gray = x.mean(1, keepdim=True)
            fade = ((gray - 0.9).clamp_min(0) / 0.1) ** 2
            x = x * torch.maximum(fade + (1 - fade) * inverse, inverse)
        return x.clamp(0, 1)

    def process(
        self,
        raw: torch.Tensor,
        matrix: torch.Tensor,
        gains: torch.Tensor,
        patterns: list[str],
    ) -> torch.Tensor:
        """Linear camera RGB (``B x 3``) or a mosaic (``B x 1``) back to sRGB ``B x 3``."""
        x = raw
        mosaicked = x.shape[1] == 1
        if mosaicked:
            sites = torch.stack([_site_colours(p, *x.shape[-2:], x.device) for p in patterns])
        if self.white_balance:
            if mosaicked:  # the gain of the colour each photosite records
                scale = gains.to(x.dtype).gather(1, sites.flatten(1)).view_as(x)
            else:
                scale = gains.to(x.dtype)[:, :, None, None]
            x = (x * scale).clamp(0, 1)
        if mosaicked:
            if len(set(patterns)) == 1:
                x = demosaic(x, patterns[0])
            else:
                x = torch.cat([demosaic(x[i : i + 1], p) for i, p in enumerate(patterns)])
        if self.color_matrix:
            x = torch.einsum("bij,bjhw->bihw", torch.linalg.inv(matrix).to(x.dtype), x)
        x = x.clamp(0, 1)
        if self.gamma:
            x = x.clamp_min(1e-8) ** (1.0 / _GAMMA)
        if self.tone_curve:
            x = smoothstep(x)
        return x

    @staticmethod
    def reduce_noise(
        noise: torch.Tensor, luma_blur: torch.Tensor, chroma_blur: torch.Tensor
    ) -> torch.Tensor:
        """``noise`` (``B x 3 x H x W``) with its luminance and colour parts low-passed by
        Gaussians of ``luma_blur`` and ``chroma_blur`` pixels (``B`` each; 0: kept)."""
        weights = torch.tensor(_LUMINANCE, dtype=noise.dtype, device=noise.device)
        luma = (noise * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
        chroma = noise - luma
        return gaussian_blur(luma, luma_blur) + gaussian_blur(chroma, chroma_blur)

    # -- the whole pipeline ------------------------------------------------------------------------
    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        gray = images.shape[1] == 1
        if images.shape[1] not in (1, 3):
            raise InputError(f"CameraNoise needs 1- or 3-channel images, got {images.shape[1]}")
        rgb = images.expand(-1, 3, -1, -1) if gray else images
        count, device = len(images), images.device
        # Every draw happens whatever the switches, so turning one step off leaves the
        # others' random numbers unchanged.
        matrix = self._colour_matrices(count, generator, device)
        gains = self._gains(count, generator, device)
        patterns = self._patterns(count, generator)
        shot, read = self.sensor.variances(count, generator, device)
        luma_blur = uniform(self.luma_blur, count, generator, device)
        chroma_blur = uniform(self.chroma_blur, count, generator, device)
        quality_draw = uniform((0.0, 1.0), count, generator, device)
        raw = self.unprocess(rgb, matrix, gains)
        if self.bayer:
            raw = torch.cat([mosaic(raw[i : i + 1], p) for i, p in enumerate(patterns)])
        noise = self.sensor_noise(raw, shot, read, generator)
        clean = self.process(raw, matrix, gains, patterns)
        noise = self.process(raw + noise, matrix, gains, patterns) - clean
        if self.luma_blur[1] > 0 or self.chroma_blur[1] > 0:
            noise = self.reduce_noise(noise, luma_blur, chroma_blur)
        noisy = (rgb if self.detail == "clean" else clean) + noise
        noisy = noisy.clamp(0, 1)
        if self.jpeg_quality is not None:
            low, high = self.jpeg_quality
            quality = (low + quality_draw * (high - low + 1)).floor().clamp(max=high)
            qualities = quality.tolist()
            compressed = jpeg_round_trip(noisy, qualities)
            if self.detail == "clean":
                # What JPEG does to the noise alone: the clean photograph stays the target,
                # as a real pair's reference (itself a JPEG of the scene) shares the
                # compression of the scene with its noisy shot.
                noisy = rgb + (compressed - jpeg_round_trip(rgb, qualities))
            else:
                noisy = compressed
        if gray:
            weights = torch.tensor(_LUMINANCE, dtype=noisy.dtype, device=device).view(1, 3, 1, 1)
            noisy = (noisy * weights).sum(1, keepdim=True)
        return noisy

    def sensor_noise(
        self, raw: torch.Tensor, shot: torch.Tensor, read: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Zero-mean noise of variance ``shot * raw + read`` (Gaussian approximation)."""
        shot = shot.view(-1, 1, 1, 1).to(raw.dtype)
        read = read.view(-1, 1, 1, 1).to(raw.dtype)
        return (shot * raw.clamp_min(0) + read).sqrt() * self.normal(raw, generator)

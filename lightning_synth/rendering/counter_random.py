"""Counter-based random numbers: a pure function of ``(seed, index, k)``, whole batches at once.

A renderer must give frame ``i`` the same parameters whichever batch it is drawn in.
One ``torch.Generator`` seeded per frame does that, but costs a generator and a few
small draws per frame, which on a GPU are kernel launches and host work per frame.
Here the ``k``-th number of stream ``i`` is a hash of ``(seed, i, k)``, so a batch of
streams is a few dozen elementwise integer operations on the device, whatever its size.

The hash is ``lowbias32`` (xor-shift, multiply, xor-shift, multiply, xor-shift) with the
lower-bias constants listed in Chris Wellons' hash-prospector, chained three times. Every step is a bijection of 32-bit words, so for one
seed the streams of indices below 2**32 never coincide, and within a stream no two
numbers coincide. Words live in int64 tensors below 2**32 and the multipliers are below
2**31, so no product overflows (signed overflow is undefined behaviour in the kernels).
Integers are exact, so the numbers are the same on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["hash32", "counter_uniforms", "box_muller"]

_MASK = 0xFFFFFFFF
_MULTIPLIERS = (0x21F0AAAD, 0x735A2D97)  # both below 2**31
#: Constants that make the two key words and the counter differ (golden-ratio and
#: MurmurHash3 finaliser constants; any fixed odd words would do).
_SALT = (0x9E3779B9, 0x85EBCA6B, 0xC2B2AE35)


def hash32(x: torch.Tensor) -> torch.Tensor:
    """``lowbias32`` of each word: a bijection of [0, 2**32) with low bias.

    Args:
        x: int64 tensor with values in [0, 2**32).
    """
    x = x ^ (x >> 16)
    x = (x * _MULTIPLIERS[0]) & _MASK
    x = x ^ (x >> 15)
    x = (x * _MULTIPLIERS[1]) & _MASK
    return x ^ (x >> 15)


def _indices(indices: torch.Tensor | Sequence[int], device: torch.device | str) -> torch.Tensor:
    if isinstance(indices, torch.Tensor):
        return indices.to(device=device, dtype=torch.int64).flatten()
    return torch.tensor(list(indices), dtype=torch.int64, device=device)


def _stream_words(seed: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 32-bit key words per stream; each a bijection of the index's low word."""
    seed &= (1 << 64) - 1
    seed_low, seed_high = seed & _MASK, seed >> 32
    low, high = index & _MASK, (index >> 32) & _MASK
    first = hash32(hash32(low ^ seed_low) ^ high)
    second = hash32(hash32(low ^ (seed_high ^ _SALT[0])) ^ (high ^ _SALT[1]))
    return first, second


def counter_uniforms(
    seed: int,
    indices: torch.Tensor | Sequence[int],
    count: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``count`` uniform numbers in (0, 1) per index; row ``r`` depends only on
    ``(seed, indices[r])``, column ``k`` is the stream's ``k``-th number.

    Args:
        seed: the seed (any integer; its low 64 bits count).
        indices: stream indices (integers; the low 64 bits count).
        count: numbers per stream.
        device: where to compute and return them.
        dtype: floating dtype of the result (32 random bits, so float64 keeps them all).

    Returns:
        ``(len(indices), count)`` numbers, strictly between 0 and 1.
    """
    index = _indices(indices, device)
    first, second = _stream_words(seed, index)
    counter = hash32(torch.arange(count, dtype=torch.int64, device=index.device) ^ _SALT[2])
    words = hash32(hash32(first[:, None] ^ counter) ^ second[:, None])
    return ((words.to(torch.float64) + 0.5) * 2.0**-32).to(dtype)


def box_muller(uniforms: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers from pairs of independent uniforms in (0, 1).

    Args:
        uniforms: ``(..., 2 k)``; the first ``k`` give the radius, the last ``k`` the angle.

    Returns:
        ``(..., k)`` standard normal numbers.
    """
    count = uniforms.shape[-1] // 2
    radius = torch.sqrt(-2.0 * torch.log(uniforms[..., :count]))
    return radius * torch.cos((2.0 * math.pi) * uniforms[..., count : 2 * count])

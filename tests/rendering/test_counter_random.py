"""Counter-based random numbers: a function of (seed, index, k), uniform and independent."""

from __future__ import annotations

import math

import torch

from lightning_synth.rendering.counter_random import box_muller, counter_uniforms, hash32


def test_hash32_is_a_bijection_of_32_bit_words() -> None:
    words = torch.arange(1 << 20, dtype=torch.int64) * 4093  # spread over the 32-bit range
    hashed = hash32(words)
    assert hashed.min() >= 0 and hashed.max() < 2**32
    assert hashed.unique().numel() == words.numel()
    # Avalanche: flipping one input bit flips about half of the output bits.
    flipped = hash32(words ^ 1) ^ hashed
    bits = sum(((flipped >> b) & 1).float().mean() for b in range(32))
    assert 14 < float(bits) < 18


def test_a_stream_depends_only_on_seed_and_index() -> None:
    batch = counter_uniforms(7, [3, 1_000_000, 2**40 + 5], 50)
    alone = counter_uniforms(7, torch.tensor([2**40 + 5]), 50)
    assert torch.equal(batch[2], alone[0])
    assert not torch.equal(counter_uniforms(8, [3], 50)[0], batch[0])
    assert not torch.equal(counter_uniforms(7, [5], 50)[0], counter_uniforms(7, [2**32 + 5], 50)[0])
    # Prefix-stable: more numbers per stream extend it without changing the first ones.
    assert torch.equal(counter_uniforms(7, [3], 80)[0, :50], batch[0])
    # Distinct streams for distinct frames (a bijection of the index for one seed).
    firsts = counter_uniforms(0, range(20_000), 2)
    assert firsts.unique(dim=0).shape[0] == 20_000


def test_uniforms_are_uniform_and_uncorrelated() -> None:
    draws = counter_uniforms(0, range(4000), 64)  # 256,000 numbers
    assert 0 < float(draws.min()) and float(draws.max()) < 1
    assert abs(float(draws.mean()) - 0.5) < 0.003
    assert abs(float(draws.var()) - 1 / 12) < 0.002
    # Chi-square over 100 bins: 99 degrees of freedom, p = 0.001 at about 149.
    counts = torch.histc(draws, bins=100, min=0, max=1)
    expected = draws.numel() / 100
    assert float(((counts - expected) ** 2 / expected).sum()) < 149
    centred = draws - 0.5
    for a, b in ((centred[:, :-1], centred[:, 1:]), (centred[:-1], centred[1:])):
        correlation = float((a * b).mean() / (a.std() * b.std()))
        assert abs(correlation) < 0.01, "numbers along a stream and across streams"


def test_box_muller_gives_standard_normals() -> None:
    normals = box_muller(counter_uniforms(1, range(5000), 40))
    assert normals.shape == (5000, 20)
    assert abs(float(normals.mean())) < 0.01
    assert abs(float(normals.std()) - 1) < 0.01
    # Tail mass beyond 2 sigma: 4.55 %.
    assert abs(float((normals.abs() > 2).float().mean()) - math.erfc(2 / math.sqrt(2))) < 0.003

"""MixedDomainDataModule: batch composition, DDP shards, formats, hidden labels."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, REAL, RENDERED
from lightning_synth.datamodules import (
    DomainSource,
    MixedDomainDataModule,
    MixedDomainSampler,
    to_format,
)
from lightning_synth.datamodules.mixed import InterleavedDataset


class _Constant(Dataset):
    """``length`` images of one shape whose pixels encode their index."""

    def __init__(self, length: int, channels: int, size: int) -> None:
        self.length, self.channels, self.size = length, channels, size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.full((self.channels, self.size, self.size), index / self.length), index % 10


class _Source(DomainSource):
    def __init__(self, lengths: dict[str, int], channels: int, size: int) -> None:
        self.lengths, self.channels, self.size = lengths, channels, size

    def dataset(self, stage):
        return _Constant(self.lengths[stage], self.channels, self.size)


def _datamodule(**kwargs) -> MixedDomainDataModule:
    rendered = _Source({"train": 200, "val": 30, "test": 40}, channels=3, size=32)
    real = _Source({"train": 25, "val": 10, "test": 20}, channels=1, size=8)
    options = {"batch_size": 8, "real_fraction": 0.25, "num_workers": 0, "image_size": 16}
    options.update(kwargs)
    return MixedDomainDataModule(rendered, real, **options)


def test_every_training_batch_has_the_configured_real_share() -> None:
    datamodule = _datamodule()
    batches = list(datamodule.train_dataloader())
    # one pass over 200 rendered images at 6 per batch
    assert len(batches) == 33
    for batch in batches:
        assert batch[IMAGE].shape == (8, 3, 16, 16)
        assert (batch[DOMAIN] == REAL).sum() == 2
        assert (batch[DOMAIN] == RENDERED).sum() == 6


def test_hidden_real_labels_stay_visible_for_evaluation() -> None:
    datamodule = _datamodule(hide_real_labels=True)
    train = next(iter(datamodule.train_dataloader()))
    assert (train[LABEL][train[DOMAIN] == REAL] == IGNORE_LABEL).all()
    assert (train[LABEL][train[DOMAIN] == RENDERED] != IGNORE_LABEL).all()
    val = next(iter(datamodule.val_dataloader()))
    assert (val[LABEL] != IGNORE_LABEL).all()


def test_ddp_shards_are_disjoint_and_keep_the_composition() -> None:
    shards = [
        list(MixedDomainSampler(100, 40, 10, 0.3, seed=1, num_replicas=2, rank=rank))
        for rank in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1])
    rendered = [set(i for i in shard if i < 100) for shard in shards]
    assert not rendered[0] & rendered[1], "two processes trained on the same rendered image"
    for shard in shards:
        for start in range(0, len(shard), 10):
            assert sum(i >= 100 for i in shard[start : start + 10]) == 3


def test_sampler_reshuffles_each_epoch_and_is_reproducible() -> None:
    sampler = MixedDomainSampler(50, 10, 5, 0.2, seed=3)
    first = list(sampler)
    assert list(MixedDomainSampler(50, 10, 5, 0.2, seed=3)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_a_resumed_epoch_goes_on_where_the_checkpoint_left_it() -> None:
    def sampler(epoch: int = 0, rank: int = 0) -> MixedDomainSampler:
        made = MixedDomainSampler(100, 40, 10, 0.3, seed=1, num_replicas=2, rank=rank)
        made.set_epoch(epoch)
        return made

    for rank in (0, 1):
        resumed = sampler(rank=rank)
        resumed.resume(epoch=0, batches=2)
        assert list(resumed) == list(sampler(rank=rank))[20:]
        assert list(resumed) == list(sampler(rank=rank))[20:]  # every pass of that epoch
        resumed.set_epoch(1)
        assert list(resumed) == list(sampler(1, rank))  # the next epoch is whole
    later = sampler()
    later.resume(epoch=1, batches=3)
    assert list(later) == list(sampler())  # epoch 0 is not the checkpoint's epoch
    later.set_epoch(1)
    assert list(later) == list(sampler(1))[30:]
    done = sampler()
    done.resume(epoch=0, batches=len(list(done)) // 10)  # the whole epoch was taken
    assert list(done) == list(sampler())


def test_evaluation_interleaves_domains_so_any_prefix_has_both() -> None:
    datamodule = _datamodule()
    first = next(iter(datamodule.val_dataloader()))
    assert set(first[DOMAIN].tolist()) == {RENDERED, REAL}
    merged = InterleavedDataset(
        datamodule.domain_dataset("test", RENDERED), datamodule.domain_dataset("test", REAL)
    )
    assert len(merged) == 60
    domains = [merged[i][DOMAIN].item() for i in range(len(merged))]
    assert domains.count(REAL) == 20


def test_predict_runs_over_the_real_test_set() -> None:
    datamodule = _datamodule()
    batches = list(datamodule.predict_dataloader())
    assert sum(len(b[DOMAIN]) for b in batches) == 20
    assert all((b[DOMAIN] == REAL).all() for b in batches)


def test_format_converts_channels_and_size() -> None:
    gray = torch.rand(1, 8, 8)
    assert to_format(gray, 32, 3).shape == (3, 32, 32)
    colour = torch.rand(3, 40, 40)
    out = to_format(colour, 16, 1)
    assert out.shape == (1, 16, 16) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="C x H x W"):
        to_format(torch.rand(8, 8), 16, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"real_fraction": 1.5}, "real_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"image_size": 4}, "image_size"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        _datamodule(**kwargs)


class _Bars(DomainSource):
    """A vertical bar, the same "digit" framed two ways: ``wide`` is light on dark in an
    MNIST-like 28 x 28 frame with margins; ``tight`` is dark on light and fills 16 x 16."""

    def __init__(self, framing: str) -> None:
        self.framing = framing

    def dataset(self, stage):
        if self.framing == "wide":
            image = torch.zeros(1, 28, 28)
            image[0, 4:24, 10:18] = 1.0  # 20 high, 8 wide
        else:
            image = torch.ones(1, 16, 16)
            image[0, :15, 5:11] = 0.0  # 15 high, 6 wide
        return [{IMAGE: image, LABEL: torch.tensor(7)}] * {"train": 8, "val": 4, "test": 4}[stage]


def test_canonical_framing_frames_both_domains_alike_in_every_split() -> None:
    def data(framing: str) -> MixedDomainDataModule:
        return MixedDomainDataModule(
            _Bars("wide"), _Bars("tight"), image_size=28, channels=1, batch_size=4,
            real_fraction=0.5, num_workers=0, framing=framing,
        )  # fmt: skip

    def gap(batch: dict) -> float:
        rendered = batch[IMAGE][batch[DOMAIN] == RENDERED][0]
        real = batch[IMAGE][batch[DOMAIN] == REAL][0]
        return float((rendered - (1 - real)).abs().mean())  # the real bar is dark on light

    framed, plain = data("canonical"), data("none")
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert gap(next(iter(getattr(framed, loader)()))) < 0.02
        assert gap(next(iter(getattr(plain, loader)()))) > 0.1
    real = next(iter(framed.predict_dataloader()))[IMAGE][0]
    assert torch.equal(real, next(iter(framed.val_dataloader()))[IMAGE][1])
    dark = (real[0] < 0.5).float()
    assert dark.sum(0).max() == 20 and dark.sum(1).max() == 8  # the box, aspect kept
    with pytest.raises(ValueError, match="framing"):
        data("tight")


def test_sources_may_yield_sample_dicts_with_more_keys_or_pairs() -> None:
    class Samples(DomainSource):
        def dataset(self, stage):
            return [{IMAGE: torch.rand(1, 8, 8), LABEL: torch.tensor(3), "weight": torch.ones(())}]

    class Pairs(DomainSource):
        def dataset(self, stage):
            return [(torch.rand(3, 8, 8), 4)]

    class Broken(DomainSource):
        def dataset(self, stage):
            return [torch.rand(1, 8, 8)]

    dataset = MixedDomainDataModule(Samples(), Pairs(), image_size=8, channels=1).domain_dataset
    sample = dataset("val", RENDERED)[0]
    assert sample["weight"] == 1 and sample[IMAGE].shape == (1, 8, 8) and sample[DOMAIN] == 0
    pair = dataset("val", REAL)[0]
    assert set(pair) == {IMAGE, LABEL, DOMAIN} and pair[LABEL] == 4 and pair[DOMAIN] == REAL
    broken = MixedDomainDataModule(Broken(), Pairs(), image_size=8, channels=1)
    with pytest.raises(TypeError, match="items must be dicts"):
        broken.domain_dataset("val", RENDERED)[0]

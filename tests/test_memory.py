"""Keeping freed memory: glibc stops handing image-sized blocks back to the kernel."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lightning_synth.memory import _glibc, keep_freed_memory, keep_freed_memory_from_env

_RENDER_FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    from lightning_synth.memory import keep_freed_memory
    from lightning_synth.rendering.body import BodyRenderer
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    torch.set_num_threads(1)
    renderer = BodyRenderer(120, 160)
    for start in range(0, 32, 8):  # the heap grows to its working size
        renderer.render(range(start, start + 8))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for start in range(32, 64, 8):
        renderer.render(range(start, start + 8))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _RENDER_FAULTS, mode],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(_glibc() is None, reason="mallopt tuning is glibc-only")
def test_kept_memory_is_reused_without_page_faults() -> None:
    default, kept = _faults("default"), _faults("keep")
    # Measured: about 7,000 page faults for 4 batches by default (each batch faults its
    # freed images back in), none with the setting.
    assert default > 2_000 and kept < default / 20, (default, kept)


def test_switch_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTNING_SYNTH_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory_from_env() is False
    monkeypatch.setenv("LIGHTNING_SYNTH_KEEP_FREED_MEMORY", "1")
    assert keep_freed_memory_from_env() is (_glibc() is not None)


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="trim_threshold_mib"):
        keep_freed_memory(-1)

"""Process-group hygiene for DDP runs, in every process that imports the package."""

from __future__ import annotations

import sys

__all__ = ["close_process_group"]


def close_process_group() -> None:
    """Shut a DDP process group down before exit.

    Left to interpreter teardown, gloo's threads are destroyed while still joinable and
    the process aborts ("terminate called without an active exception") after a run
    that succeeded, now and then, so the launcher reports a failure. Lightning closes
    only NCCL groups at exit; the package registers this at exit for every process that
    imports it, ``ddp_spawn`` workers included. Without a group it does nothing (and
    never imports torch).
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

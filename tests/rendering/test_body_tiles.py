"""The fused Triton ray cast (``culling="tiles"``) draws what the default draws.

On CPU the kernel runs in Triton's interpreter, which is chosen when Triton is imported,
so those checks run in a fresh Python process with ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lightning_synth.rendering.body import BodyRenderer

pytest.importorskip("triton")

_INTERPRETED_CHECK = textwrap.dedent(
    """
    import torch
    from lightning_synth.rendering.body import BodyRenderer
    from lightning_synth.rendering.body_render import raycast_capsules
    from test_body import random_capsule_scene

    args = random_capsule_scene(3, 24, 40, 56)  # tiles cut through the image's edges
    depth, index = raycast_capsules(*args)
    tiled_depth, tiled_index = raycast_capsules(*args, culling="tiles")
    assert (index >= 0).float().mean() > 0.3, "a busy scene"
    assert (tiled_index == index).float().mean() > 0.999, "the same primitive nearly everywhere"
    assert (tiled_depth - depth).abs().max() < 1e-4

    spans = BodyRenderer(30, 40, seed=5).render(range(3))
    tiles = BodyRenderer(30, 40, seed=5, culling="tiles").render(range(3))
    assert spans.valid.sum() > 100
    assert (tiles.valid == spans.valid).float().mean() > 0.999
    both = tiles.valid & spans.valid
    assert (tiles.depth - spans.depth)[both].abs().max() < 1e-4
    assert (tiles.parts == spans.parts)[both].float().mean() > 0.999
    torch.testing.assert_close(tiles.joints, spans.joints)
    print("tiles agree")
    """
)


def test_tiles_draw_what_spans_draw_in_the_interpreter() -> None:
    here = os.path.dirname(__file__)
    path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-c", _INTERPRETED_CHECK],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "tiles agree" in result.stdout, result.stderr[-3000:]


def test_tiles_refuse_a_device_they_cannot_run_on() -> None:
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("here tiles can run")
    with pytest.raises(ValueError, match="culling='tiles' needs Triton and a CUDA device"):
        BodyRenderer(24, 32, culling="tiles")
    with pytest.raises(ValueError, match="culling must be"):
        BodyRenderer(24, 32, culling="pixels")  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiles_on_gpu_draw_what_spans_draw() -> None:
    spans = BodyRenderer(120, 160, seed=9, device="cuda").render(range(16))
    tiles = BodyRenderer(120, 160, seed=9, device="cuda", culling="tiles").render(range(16))
    assert (tiles.valid == spans.valid).float().mean() > 0.999
    both = tiles.valid & spans.valid
    assert (tiles.depth - spans.depth)[both].abs().max() < 1e-4
    assert (tiles.parts == spans.parts)[both].float().mean() > 0.999


def test_tiles_kernel_compiles_for_a_hopper_gpu() -> None:
    """Compile the kernel to a cubin for sm_90 (H100/H200) without a GPU: Triton's own
    compiler chain (TTIR, TTGIR, LLVM, PTX, ptxas) catches what the interpreter lets pass,
    e.g. types that do not unify across the primitive loop."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from lightning_synth.rendering.body_render_tiles import TILE_H, TILE_W, _compiled_kernel

    source = ASTSource(
        fn=_compiled_kernel(),
        signature={
            "table_ptr": "*fp32",
            "boxes_ptr": "*i32",
            "depth_ptr": "*fp32",
            "index_ptr": "*i32",
            "prims": "i32",
            "height": "i32",
            "width": "i32",
            "TILE_H": "constexpr",
            "TILE_W": "constexpr",
        },
        constexprs={"TILE_H": TILE_H, "TILE_W": TILE_W},
    )
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": True}
    )
    assert len(compiled.asm["cubin"]) > 1000
    assert compiled.metadata.shared == 0, "registers only: no shared memory"

"""The speed benchmarks that need no data run end to end at tiny sizes.

They import private helpers of the renderer (the dense reference ray cast), so a change
of those helpers must not leave a benchmark broken until someone next measures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> dict:
    out = Path(args[args.index("--json-out") + 1])
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.read_text())


def test_render_body_agrees_with_the_dense_reference(tmp_path: Path) -> None:
    result = _run(
        "render_body.py",
        *("--height", "48", "--width", "64", "--batch-size", "4", "--num-frames", "8"),
        *("--threads", "1", "--json-out", str(tmp_path / "render.json")),
    )
    assert result["foreground_mismatch_vs_reference"] == 0.0
    assert result["max_depth_diff_vs_reference_m"] < 1e-4
    assert result["render_fps"] > 0 and result["sensor_noise_fps"] > 0


def test_body_parts_speed_reports_every_rate(tmp_path: Path) -> None:
    result = _run(
        "body_parts_speed.py",
        *("--height", "48", "--width", "64", "--batch-size", "2", "--frames", "2"),
        *("--threads", "1", "--json-out", str(tmp_path / "speed.json")),
    )
    assert result["keep_freed_memory"] in (True, False)
    assert set(result["train_fps"]) == {"depth_features", "fcn"}
    assert all(v > 0 for v in result["render_to_train_ratio"].values())
    assert len(result["inference_fps"]) == 3

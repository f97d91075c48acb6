"""TensorBoard for real: a tiny fit, then the tensorboard server's HTTP data API."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CONFIGS, FAST_TRAINER
from PIL import Image

QUICK = str(CONFIGS / "quickstart.yaml")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def tensorboard_server():
    servers = []

    def start(logdir: Path) -> str:
        port = _free_port()
        command = [
            sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
            "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false",
            "--reload_interval", "1",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        servers.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"tensorboard exited: {process.stderr.read().decode()[-2000:]}")
            try:
                runs = _get(f"{base}/data/runs")
                if runs:
                    return base
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError("tensorboard did not serve the run within 90 s")

    yield start
    for process in servers:
        process.terminate()
        process.wait(timeout=30)


def test_scalars_and_prediction_grid_reach_the_tensorboard_server(
    tmp_path: Path, run_cli, tensorboard_server
) -> None:
    run_dir = run_cli(
        "fit",
        f"--config={QUICK}",
        *FAST_TRAINER,
        "--trainer.log_every_n_steps=1",
        "--data.init_args.rendered.init_args.train_length=64",
        "--data.init_args.rendered.init_args.val_length=16",
        "--data.init_args.rendered.init_args.test_length=16",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
    )
    base = tensorboard_server(tmp_path / "runs")
    deadline = time.monotonic() + 60
    while True:
        tags = _get(f"{base}/data/plugin/scalars/tags")
        images = _get(f"{base}/data/plugin/images/tags")
        run = f"{run_dir.parent.name}/{run_dir.name}"
        scalar_tags = set(tags.get(run, {}))
        image_tags = set(images.get(run, {}))
        if (
            {"val/real_acc", "val/rendered_acc"} <= scalar_tags
            and image_tags
            or time.monotonic() > deadline
        ):
            break
        time.sleep(1)
    assert {"train/loss", "val/loss", "val/real_acc", "val/rendered_acc"} <= scalar_tags
    assert "val/predictions" in image_tags
    values = _get(f"{base}/data/plugin/scalars/scalars?run={run}&tag=val/real_acc")
    assert values and 0.0 <= values[-1][2] <= 1.0
    samples = _get(f"{base}/data/plugin/images/images?run={run}&tag=val/predictions")
    assert samples
    with urllib.request.urlopen(
        f"{base}/data/plugin/images/individualImage?{samples[-1]['query']}", timeout=10
    ) as response:
        grid = Image.open(io.BytesIO(response.read()))
    # the first validation batch (8 images) drawn as one row of 64-pixel tiles
    assert grid.width > 8 * 64 and grid.height > 64


def test_hparams_tab_compares_runs_by_the_best_monitored_metric(tmp_path: Path, run_cli) -> None:
    """No ``hp_metric`` placeholder at -1; the hyper-parameters carry the best value of the
    metric the task keeps its best checkpoint by."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from lightning_synth.tasks import ImageClassifier

    run_dir = run_cli(
        "fit",
        f"--config={QUICK}",
        *FAST_TRAINER,
        "--trainer.max_epochs=2",
        "--model.init_args.lr=0.0123",
        "--data.init_args.rendered.init_args.train_length=64",
        "--data.init_args.rendered.init_args.val_length=16",
        "--data.init_args.rendered.init_args.test_length=16",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
    )
    task = ImageClassifier(in_channels=1)
    monitor, best_of = task.monitor, max if task.mode == "max" else min
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    assert "hp_metric" not in events.Tags()["scalars"]
    per_epoch = [event.value for event in events.Scalars(monitor)]
    assert len(per_epoch) == 2
    (best,) = [event.value for event in events.Scalars(f"best/{monitor}")]
    assert best == pytest.approx(best_of(per_epoch))

    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert [info.name.tag for info in experiment.experiment.metric_infos] == [f"best/{monitor}"]
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert session.session_start_info.hparams["lr"].number_value == pytest.approx(0.0123)

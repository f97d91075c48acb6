"""The command line as a user meets it: entry points, config round trip, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, FAST_TRAINER, REPO
from PIL import Image

import lightning_synth
from lightning_synth.callbacks import FAILURE_FILE
from lightning_synth.cli import main

QUICK = str(CONFIGS / "quickstart.yaml")
SMALL_DATA = [
    "--data.init_args.rendered.init_args.train_length=64",
    "--data.init_args.rendered.init_args.val_length=16",
    "--data.init_args.rendered.init_args.test_length=16",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
]


def test_console_script_and_module_print_the_version() -> None:
    script = Path(sys.executable).with_name("lightning-synth")
    for command in (
        [str(script), "--version"],
        [sys.executable, "-m", "lightning_synth", "--version"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert result.returncode == 0, result.stderr
        assert lightning_synth.__version__ in result.stdout


def test_cli_keeps_freed_memory_unless_switched_off(monkeypatch) -> None:
    import lightning_synth.memory as memory

    applied: list[bool] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: applied.append(True) or True)
    for switch, expected in (("1", [True]), ("0", [])):
        applied.clear()
        monkeypatch.setenv("LIGHTNING_SYNTH_KEEP_FREED_MEMORY", switch)
        with pytest.raises(SystemExit):
            main(["--version"])
        assert applied == expected


def test_print_config_round_trips(tmp_path: Path, capsys, run_cli) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--config={QUICK}", "--model.init_args.lr=0.0123", "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    assert config["model"]["class_path"] == "lightning_synth.tasks.ImageClassifier"
    assert config["model"]["init_args"]["lr"] == 0.0123
    assert config["data"]["init_args"]["real"]["class_path"].endswith("SklearnDigits")
    # the printed config is itself a config that runs and prints the same thing
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    with pytest.raises(SystemExit):
        main(["fit", f"--config={saved}", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == config
    run_dir = run_cli("fit", f"--config={saved}", *FAST_TRAINER, *SMALL_DATA)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    # test_after_fit says which checkpoint it tested and how it was chosen
    out = capsys.readouterr().out
    assert "Test results of best-" in out and "the best by val/select_im" in out
    assert "no real labels used" in out


def _fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_config_typo_names_the_key_and_leaves_no_run(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "typo.yaml"
    config = yaml.safe_load(Path(QUICK).read_text())
    config["model"]["init_args"]["learning_rate"] = 0.1
    bad.write_text(yaml.safe_dump(config))
    error = _fails(capsys, "fit", f"--config={bad}")
    assert "learning_rate" in error
    wrong_type = _fails(capsys, "fit", f"--config={QUICK}", "--model.init_args.lr=fast")
    assert "lr" in wrong_type and "fast" in wrong_type
    missing = _fails(capsys, "fit", "--config=does-not-exist.yaml")
    assert "does-not-exist.yaml" in missing
    assert not (tmp_path / "runs").exists()


def _folder_args(root: Path) -> list[str]:
    return [
        f"--config={QUICK}",
        *FAST_TRAINER,
        *SMALL_DATA,
        "--data.init_args.real=DigitFolder",
        f"--data.init_args.real.init_args.root={root}",
    ]


def _write_digits(root: Path, classes: range, per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for label in classes:
        folder = root / str(label)
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 255, size=(12, 12), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")


def test_missing_real_folder_is_named(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    error = _fails(capsys, "fit", *_folder_args(tmp_path / "no-such-folder"))
    assert "no-such-folder" in error
    assert not (tmp_path / "runs").exists()


def test_empty_class_folder_is_named(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _write_digits(tmp_path / "digits", range(9))
    (tmp_path / "digits" / "9").mkdir()
    error = _fails(capsys, "fit", *_folder_args(tmp_path / "digits"))
    assert "9" in error and "empty" in error.lower()
    assert not (tmp_path / "runs").exists()


def test_corrupt_image_is_named_before_training(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _write_digits(tmp_path / "digits", range(10))
    broken = tmp_path / "digits" / "4" / "1.png"
    broken.write_bytes(broken.read_bytes()[:40])
    error = _fails(capsys, "fit", *_folder_args(tmp_path / "digits"))
    assert "1.png" in error
    runs = list((tmp_path / "runs").glob("*/version_*"))
    assert not any((run / "checkpoints").exists() for run in runs)


def test_crash_mid_run_marks_the_run_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    """A file that breaks only while training (no verification) leaves a FAILED marker."""
    monkeypatch.chdir(tmp_path)
    _write_digits(tmp_path / "digits", range(10), per_class=4)
    for path in (tmp_path / "digits").glob("*/*.png"):
        path.write_bytes(b"not a png")
    args = [*_folder_args(tmp_path / "digits"), "--data.init_args.real.init_args.verify=none"]
    error = _fails(capsys, "fit", *args)
    assert ".png" in error
    (run_dir,) = (tmp_path / "runs").glob("*/version_*")
    assert (run_dir / FAILURE_FILE).is_file()
    assert not list(run_dir.glob("checkpoints/*.ckpt"))

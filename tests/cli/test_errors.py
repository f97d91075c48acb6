"""Errors as a user meets them: the first line names the problem; bugs keep their traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, FAST_TRAINER
from lightning.pytorch import LightningDataModule

from lightning_synth.cli import main
from lightning_synth.errors import InputError

QUICK = str(CONFIGS / "quickstart.yaml")


class PickyData(LightningDataModule):
    """A DataModule that rejects a value the way the project's own classes do.

    Args:
        size: must be positive.
        buggy: raise a plain ``ValueError`` instead, as a bug deep inside would.
    """

    def __init__(self, size: int = 1, buggy: bool = False) -> None:
        super().__init__()
        if buggy:
            raise ValueError("shapes (3,) and (4,) not aligned")
        if size < 1:
            raise InputError(f"size must be positive, got {size}")


def _first_line(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[0]


def test_bad_values_found_while_parsing_are_named_first(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    first = _first_line(capsys, "fit", f"--config={QUICK}", "--model.init_args.lr=fast")
    assert (
        first
        == "lightning-synth: error: model.init_args.lr (ImageClassifier): expected float, got 'fast'"
    )
    first = _first_line(capsys, "fit", f"--config={QUICK}", "--trainer.max_epochs=x")
    assert first == "lightning-synth: error: trainer.max_epochs: expected int, got 'x'"
    typo = tmp_path / "typo.yaml"
    config = yaml.safe_load(Path(QUICK).read_text())
    config["model"]["init_args"]["learning_rate"] = 0.1
    typo.write_text(yaml.safe_dump(config))
    first = _first_line(capsys, "fit", f"--config={typo}")
    assert first.startswith("lightning-synth: error: model.init_args (ImageClassifier): ")
    assert "learning_rate" in first
    assert not (tmp_path / "runs").exists()


def test_a_constructor_input_error_is_unwrapped(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    data = ["--data=test_errors.PickyData", "--data.init_args.size=-4"]
    first = _first_line(capsys, "fit", f"--config={QUICK}", *data)
    assert first == "lightning-synth: error: size must be positive, got -4"


def test_a_bad_value_of_a_project_datamodule_is_named_first(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    first = _first_line(capsys, "fit", f"--config={QUICK}", "--data.init_args.batch_size=-4")
    assert first == "lightning-synth: error: batch_size must be positive, got -4"


@pytest.mark.parametrize(
    "adaptation",
    [
        '{"class_path": "MMD", "init_args": {"weight": -1}}',
        '[{"class_path": "CORAL"}, {"class_path": "MMD", "init_args": {"weight": -1}}]',
    ],
)
def test_a_bad_adaptation_method_alone_or_in_a_list_is_named_first(
    tmp_path: Path, monkeypatch, capsys, adaptation: str
) -> None:
    monkeypatch.chdir(tmp_path)
    first = _first_line(
        capsys, "fit", f"--config={QUICK}", f"--model.init_args.adaptation={adaptation}"
    )
    assert first == "lightning-synth: error: weight must be >= 0 (0 turns the method off), got -1.0"


def test_a_bug_keeps_its_traceback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = ["--data=test_errors.PickyData", "--data.init_args.buggy=true"]
    with pytest.raises(ValueError, match="not aligned"):
        main(["fit", f"--config={QUICK}", *data])


def _checkpoints(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    truncated = folder / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(100)}, "epoch": 0}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    text = folder / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    weights = folder / "weights.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, weights)
    other_task = folder / "body.ckpt"
    torch.save(
        {
            "state_dict": {},
            "hyper_parameters": {"_class_path": "lightning_synth.tasks.BodyPartClassifier"},
        },
        other_task,
    )
    return {
        "truncated.ckpt": truncated,
        "notes.ckpt": text,
        "weights.pth": weights,
        "BodyPartClassifier": other_task,
    }


@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_a_corrupt_or_foreign_checkpoint_is_named_in_one_line(
    tmp_path: Path, monkeypatch, capsys, subcommand: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for named, path in _checkpoints(tmp_path / "files").items():
        first = _first_line(
            capsys, subcommand, f"--config={QUICK}", *FAST_TRAINER, f"--ckpt_path={path}"
        )
        assert first.startswith(f"lightning-synth: error: {path}"), first
        assert named in first
    missing = _first_line(
        capsys, subcommand, f"--config={QUICK}", f"--ckpt_path={tmp_path / 'gone.ckpt'}"
    )
    assert "gone.ckpt" in missing and "does not exist" in missing
    assert not (tmp_path / "runs").exists()

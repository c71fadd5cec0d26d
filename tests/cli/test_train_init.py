"""`train-color --init`: fine-tuning a colorizer checkpoint (the shipped default, or any run's model)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mangacolor import checkpoint
from mangacolor.cli import app
from mangacolor.models import create_model
from tests.conftest import toy_colorizer

runner = CliRunner()
TRAIN = ["--d-width", "4", "--batch-size", "2", "--crop-size", "32", "--sample-every", "0", "--device", "cpu"]


@pytest.fixture
def half_checkpoint(tmp_path):
    """A toy U-Net stored in float16, as the shipped default is."""
    torch.manual_seed(3)
    model = create_model("unet", base_width=4, depth=3)
    return checkpoint.save(tmp_path / "start.safetensors", model, {"working_size": 32}, half=True)


def _train(*args: str):
    return runner.invoke(app, ["train-color", *args])


def test_init_starts_from_the_checkpoint_and_keeps_its_architecture(color_folder, tmp_path, half_checkpoint):
    run = tmp_path / "run"
    result = _train(
        str(color_folder), str(run), "--init", str(half_checkpoint), "--steps", "1", "--lr-g", "1e-12", *TRAIN
    )
    assert result.exit_code == 0, result.output
    start, tuned = load_file(half_checkpoint), load_file(run / "model.safetensors")
    convs = [k for k in start if k.endswith(".weight") and start[k].ndim == 4]
    assert convs and all(torch.allclose(start[k].float(), tuned[k], atol=1e-9) for k in convs)  # lr 1e-12
    info = checkpoint.read_info(run / "model.safetensors")
    assert (info.arch, info.config["base_width"], info.config["depth"]) == ("unet", 4, 3)
    assert info.provenance["init"] == "start.safetensors"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["base_width"] == 4 and config["init_weights"] == str(half_checkpoint.absolute())

    fresh = _train(str(color_folder), str(tmp_path / "fresh"), "--width", "4", "--depth", "3", "--steps", "1", *TRAIN)
    assert fresh.exit_code == 0  # without --init the same options start elsewhere
    other = load_file(tmp_path / "fresh" / "model.safetensors")
    assert not any(torch.allclose(start[k].float(), other[k], atol=1e-3) for k in convs)


def test_a_resume_does_not_read_the_init_checkpoint_again(color_folder, tmp_path, half_checkpoint):
    run = tmp_path / "run"
    first = _train(str(color_folder), str(run), "--init", str(half_checkpoint), "--steps", "1", *TRAIN)
    assert first.exit_code == 0, first.output
    half_checkpoint.unlink()  # moved or deleted since: the run's own state is what a resume needs
    again = _train("--resume", str(run), "--steps", "2")
    assert again.exit_code == 0, again.output
    assert "initialised from" not in again.output


@pytest.mark.parametrize("option", [["--width", "8"], ["--arch", "unet-attn"], ["--model-config", '{"depth": 4}']])
def test_init_refuses_options_that_contradict_the_checkpoint(color_folder, tmp_path, half_checkpoint, option):
    result = _train(str(color_folder), str(tmp_path / "run"), "--init", str(half_checkpoint), *option, *TRAIN)
    assert result.exit_code == 2 and f"leave out {option[0]}" in result.stderr
    assert not (tmp_path / "run").exists()


def test_init_refuses_what_is_not_a_colorizer(color_folder, tmp_path, scan_checkpoint):
    scan = _train(str(color_folder), str(tmp_path / "a"), "--init", str(scan_checkpoint), *TRAIN)
    assert scan.exit_code == 2 and "not a colorizer" in scan.stderr
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    bad = _train(str(color_folder), str(tmp_path / "b"), "--init", str(junk), *TRAIN)
    assert bad.exit_code == 2 and "junk.safetensors" in bad.stderr and "Traceback" not in bad.output
    missing = _train(str(color_folder), str(tmp_path / "c"), "--init", str(tmp_path / "nope.safetensors"), *TRAIN)
    assert missing.exit_code == 2 and "nope.safetensors" in missing.stderr
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))


def test_init_and_encoder_weights_exclude_each_other(color_folder, tmp_path, half_checkpoint):
    result = _train(
        str(color_folder), str(tmp_path / "run"), "--init", str(half_checkpoint), "--encoder-weights", "r.pth", *TRAIN
    )
    assert result.exit_code == 2 and "leave out --encoder-weights" in result.stderr


def test_init_gives_an_encoder_model_weights_worth_freezing(color_folder, tmp_path):
    _, start, _ = toy_colorizer("resnet-unet", tmp_path)
    run = tmp_path / "run"
    args = ["--init", str(start), "--freeze-encoder", "--steps", "2", "--lr-g", "1e-2", "--input", "lines"]
    result = _train(str(color_folder), str(run), *args, *TRAIN[:4], "--crop-size", "64", *TRAIN[6:])
    assert result.exit_code == 0, result.output
    assert "trains from scratch" not in result.output
    before, after = load_file(start), load_file(run / "model.safetensors")
    frozen = [k for k in before if k.startswith("encoder.") and k.endswith("conv1.weight")]
    trained = [k for k in before if k.startswith("decoder") and k.endswith(".weight") and before[k].ndim == 4]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert trained and not all(torch.equal(before[k], after[k]) for k in trained)

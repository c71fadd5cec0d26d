"""examples/train_default.sh at toy size: both runs, time-limited slices, resume, and the pair it ships."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from mangacolor import checkpoint
from mangacolor.imageio import write_image
from mangacolor.inference import load_colorizer
from tests.conftest import drawing

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_default.sh"
TOY = {
    "STEPS": "3",
    "WIDTH": "4",
    "DEPTH": "3",
    "SIZE": "32",
    "LOAD": "48",
    "BATCH": "2",
    "WORKERS": "0",
    "EXTRA": "--d-width 8",
}


def _run(data: Path, runs: Path, *options: str, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MANGACOLOR": f"{sys.executable} -m mangacolor", "DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    env.update(TOY, **settings)
    cmd = ["bash", str(SCRIPT), str(data), str(runs), *options]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def colour(tmp_path):
    for i in range(6):
        write_image(tmp_path / "colour" / f"d{i}.png", drawing(48, 48, seed=i))
    return tmp_path / "colour"


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_slices_then_the_pair(colour, tmp_path):
    runs = tmp_path / "runs"
    options = ("--model-config", '{"norm": "instance"}')  # options after RUNS keep their quoting
    first = _run(colour, runs, *options, TIME_LIMIT="0.0001")  # stops after the first step of each run
    assert first.returncode == 75, first.stderr[-2000:]
    assert "luma: stopped and saved" in first.stderr and "lines: stopped and saved" in first.stderr
    assert not (runs / "default.safetensors").exists()
    for name in ("luma", "lines"):
        assert (runs / name / "resume.pt").exists() and (runs / f"{name}.log").exists()

    done = _run(colour, runs)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(runs / "default.safetensors"), str(runs / "default_lines.safetensors")]
    for name, kind in (("luma", "luma"), ("lines", "lines")):
        config = json.loads((runs / name / "config.json").read_text())
        assert config["input_kind"] == kind and config["model"]["base_width"] == 4
        assert config["discriminator"]["base_width"] == 8  # EXTRA reaches both new runs
        assert config["model"]["norm"] == "instance"  # and so do the options after RUNS
        assert "resumed at step 1" in (runs / f"{name}.log").read_text()  # the second call went on
    with safe_open(str(runs / "default.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert {t for t in dtypes if t.is_floating_point} == {torch.float16}  # shipped in half precision
    translator = load_colorizer(runs / "default.safetensors", runs / "default_lines.safetensors", device="cpu")
    main, lines = translator.translators  # a PageRouter: line art goes to the line model
    assert main.info.path.name == "default.safetensors" and lines.info.path.name == "default_lines.safetensors"
    assert not list(runs.glob("*.tmp"))


def test_usage_and_failed_runs(colour, tmp_path):
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert usage.returncode == 2 and "Usage:" in usage.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = _run(empty, tmp_path / "runs")
    assert failed.returncode == 1
    assert "luma: failed with status 2" in failed.stderr and "no images" in failed.stderr.lower()
    assert not (tmp_path / "runs" / "default.safetensors").exists()
    one = _run(colour, tmp_path / "one", LINES="nope")  # only the line run can fail on it
    assert one.returncode == 1
    assert "lines: failed with status 2" in one.stderr and "--lines-method must be one of" in one.stderr
    assert "luma: finished" in one.stderr  # the other run went on to its end
    assert (tmp_path / "one" / "luma" / "model.safetensors").exists()
    assert not (tmp_path / "one" / "default.safetensors").exists()


def test_init_fine_tunes_a_checkpoint_in_both_runs(colour, tmp_path, toy_checkpoint):
    runs = tmp_path / "runs"
    done = _run(colour, runs, INIT=str(toy_checkpoint), WIDTH="16", DEPTH="5", STEPS="1")  # WIDTH, DEPTH unused
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("default", "default_lines"):
        info = checkpoint.read_info(runs / f"{name}.safetensors")
        assert (info.config["base_width"], info.config["depth"]) == (4, 3)
        assert info.provenance["init"] == toy_checkpoint.name

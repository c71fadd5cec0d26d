"""`mangacolor colorize`, `models` and `train-color` in-process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mangacolor import checkpoint
from mangacolor.cli import app
from mangacolor.color import luma
from mangacolor.imageio import read_image, write_image
from mangacolor.models import create_model, list_models
from tests.conftest import drawing, toy_colorizer

runner = CliRunner()


@pytest.fixture
def pages(tmp_path):
    root = tmp_path / "pages"
    for i in range(2):
        write_image(root / f"p{i}.png", luma(drawing(seed=i)))
    return root


def test_colorize_writes_paths_on_stdout_and_resumes(pages, tmp_path, toy_checkpoint):
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(pages), str(out), "--model", str(toy_checkpoint)])
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.split()) == [str(out / "p0.png"), str(out / "p1.png")]
    again = runner.invoke(app, ["colorize", str(pages), str(out), "-m", str(toy_checkpoint), "--json"])
    assert again.exit_code == 0
    summary = json.loads(again.stdout)
    assert summary["skipped"] == 2 and summary["done"] == 0
    assert sorted((f["path"], f["status"]) for f in summary["files"]) == [
        (str(pages / "p0.png"), "skipped"),
        (str(pages / "p1.png"), "skipped"),
    ]


def test_colorize_failure_exit_code_and_summary(pages, tmp_path, toy_checkpoint):
    (pages / "[ch1]_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "o"), "-m", str(toy_checkpoint), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["done"] == 2 and summary["failed"] == 1
    assert summary["failures"][0]["path"].endswith("[ch1]_bad.png")
    files = {Path(f["path"]).name: f for f in summary["files"]}
    assert files["[ch1]_bad.png"]["status"] == "failed" and files["[ch1]_bad.png"]["reason"]
    assert files["p0.png"] | {"path": Path(files["p0.png"]["path"]).name} == {
        "path": "p0.png",
        "status": "done",
        "outputs": [str(tmp_path / "o" / "p0.png")],
        "reason": "",
    }
    assert "[ch1]_bad.png" in result.stderr  # file names are not eaten as markup


def test_colorize_bad_checkpoint_is_one_line_error(pages, tmp_path):
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"junk")
    result = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "o"), "-m", str(fake)])
    assert result.exit_code == 2
    assert "fake.safetensors" in result.stderr and "Traceback" not in result.output


def test_colorize_options(pages, tmp_path, toy_checkpoint):
    out = tmp_path / "o"
    args = ["colorize", str(pages), str(out), "-m", str(toy_checkpoint), "--size", "64", "--merge", "none"]
    result = runner.invoke(app, [*args, "--format", "WEBP", "--batch-size", "2", "--device", "cpu"])  # any case
    assert result.exit_code == 0, result.output
    assert read_image(out / "p0.webp").shape == (48, 64, 3)
    bad = runner.invoke(app, ["colorize", str(pages), str(out), "-m", str(toy_checkpoint), "--merge", "lab"])
    assert bad.exit_code == 2 and "--merge" in bad.stderr
    bad = runner.invoke(
        app, ["colorize", str(pages), str(tmp_path / "o2"), "-m", str(toy_checkpoint), "--format", "gif"]
    )
    assert bad.exit_code == 2 and "'--format': must be one of" in bad.stderr and not (tmp_path / "o2").exists()


def test_colorize_missing_input(tmp_path, toy_checkpoint):
    result = runner.invoke(app, ["colorize", str(tmp_path / "nope"), str(tmp_path / "o"), "-m", str(toy_checkpoint)])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_colorize_refuses_a_reference_the_model_cannot_use(pages, tmp_path, toy_checkpoint):
    ref = pages / "p0.png"
    result = runner.invoke(
        app, ["colorize", str(pages), str(tmp_path / "o"), "-m", str(toy_checkpoint), "--reference", str(ref)]
    )
    assert result.exit_code == 2 and "--reference is for reference-style models" in result.stderr
    assert not (tmp_path / "o").exists()


def test_colorize_empty_folder_warns(tmp_path, toy_checkpoint):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["colorize", str(tmp_path / "empty"), str(tmp_path / "o"), "-m", str(toy_checkpoint)])
    assert result.exit_code == 0 and "no images found" in result.stderr


def test_colorize_onto_its_own_input_is_refused(pages, toy_checkpoint):
    before = (pages / "p0.png").read_bytes()
    result = runner.invoke(app, ["colorize", str(pages), str(pages), "-m", str(toy_checkpoint), "--overwrite"])
    assert result.exit_code == 2 and "the output folder is the input folder" in result.stderr
    assert (pages / "p0.png").read_bytes() == before


def test_colorize_line_model_and_the_default_line_model(pages, tmp_path, toy_checkpoint, monkeypatch):
    line_page = np.full((48, 64), 255, np.uint8)
    cv2.circle(line_page, (32, 24), 15, 0, 1)
    write_image(pages / "lines.png", line_page)
    _, other, _ = toy_colorizer("unet-attn", tmp_path)
    out = tmp_path / "o"
    result = runner.invoke(
        app, ["colorize", str(pages), str(out), "-m", str(toy_checkpoint), "--line-model", str(other)]
    )
    assert result.exit_code == 0, result.output
    assert "1 line-art page(s) went to the line-art model, 2 other page(s) to the main model" in result.stderr
    assert "line-art model" in result.stderr and "unet-attn" in result.stderr
    assert read_image(out / "lines.png").shape == (48, 64, 3)

    # the default model picks up a shipped line-art companion; an explicit --model does not
    monkeypatch.setenv("MANGACOLOR_DEFAULT_MODEL", str(toy_checkpoint))
    monkeypatch.setenv("MANGACOLOR_DEFAULT_LINE_MODEL", str(other))
    paired = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "d")])
    assert paired.exit_code == 0 and "1 line-art page(s)" in paired.stderr
    assert (tmp_path / "d" / "lines.png").read_bytes() == (out / "lines.png").read_bytes()
    alone = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "m"), "-m", str(toy_checkpoint)])
    assert alone.exit_code == 0 and "line-art" not in alone.stderr
    monkeypatch.setenv("MANGACOLOR_DEFAULT_LINE_MODEL", str(tmp_path / "absent.safetensors"))
    single = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "s")])  # none shipped: one model
    assert single.exit_code == 0 and "line-art" not in single.stderr

    scan = checkpoint.save(tmp_path / "scan.safetensors", create_model("cyclegan-resnet", base_width=4, n_blocks=1))
    bad = runner.invoke(
        app, ["colorize", str(pages), str(tmp_path / "b"), "-m", str(toy_checkpoint), "--line-model", str(scan)]
    )
    assert bad.exit_code == 2 and "scan.safetensors: a scan model, not a colorizer" in bad.stderr
    assert not (tmp_path / "b").exists()


def test_models_lists_and_inspects(toy_checkpoint):
    listed = runner.invoke(app, ["models", "--json"])
    names = {m["name"] for m in json.loads(listed.stdout)}
    assert {"unet", "patchgan"} <= names
    info = runner.invoke(app, ["models", str(toy_checkpoint), "--json"])
    data = json.loads(info.stdout)
    assert data["arch"] == "unet" and data["config"]["base_width"] == 4
    assert data["provenance"]["working_size"] == 32


def test_train_color_then_colorize(color_folder, tmp_path):
    run = tmp_path / "run"
    args = ["train-color", str(color_folder), str(run), "--width", "4", "--depth", "3", "--d-width", "4"]
    args += [
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--crop-size",
        "32",
        "--log-every",
        "2",
        "--sample-every",
        "2",
    ]
    result = runner.invoke(app, [*args, "--val-fraction", "0.25", "--seed", "1"])
    assert result.exit_code == 0, result.output
    ckpt = run / "model.safetensors"
    assert result.stdout.strip() == str(ckpt)
    assert (run / "config.json").exists() and (run / "best.safetensors").exists()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4]
    assert {"loss_d", "loss_g_l1", "loss_g_gan", "images_per_s", "val_l1"} <= set(metrics[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    # crops of 48 x 64 images at their own size: the model works on pages at that scale, not the crop's
    assert checkpoint.read_info(ckpt).provenance["working_size"] == 64
    gray = tmp_path / "gray"
    write_image(gray / "page.png", luma(drawing(90, 70)))
    out = runner.invoke(app, ["colorize", str(gray), str(tmp_path / "col"), "-m", str(ckpt)])
    assert out.exit_code == 0, out.output
    assert read_image(tmp_path / "col" / "page.png").shape == (90, 70, 3)


def test_train_color_rejects_bad_crop_and_empty_folder(color_folder, tmp_path):
    result = runner.invoke(
        app, ["train-color", str(color_folder), str(tmp_path / "r"), "--depth", "3", "--crop-size", "30"]
    )
    assert result.exit_code == 2 and "multiple of 8" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["train-color", str(empty), str(tmp_path / "r2"), "--steps", "1"])
    assert result.exit_code == 2 and "no images found" in result.stderr


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip()


def test_train_color_resume_from_a_moved_run_folder_and_another_directory(color_folder, tmp_path, monkeypatch):
    """Paths in config.json are absolute and --resume uses the folder it is given."""
    monkeypatch.chdir(color_folder.parent)
    toy = ["--width", "4", "--depth", "3", "--d-width", "4", "--batch-size", "2", "--crop-size", "32"]
    result = runner.invoke(app, ["train-color", color_folder.name, "run", "--steps", "2", "--save-every", "1", *toy])
    assert result.exit_code == 0, result.output
    assert json.loads((color_folder.parent / "run" / "config.json").read_text())["data"] == str(color_folder)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    (color_folder.parent / "run").rename(moved)
    monkeypatch.chdir(moved.parent)
    again = runner.invoke(app, ["train-color", "--resume", str(moved)])
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == str(moved / "model.safetensors")
    assert "resumed at step 2" in again.stderr  # library log messages reach the console


@pytest.mark.parametrize("command", ["train-color", "train-scan"])
def test_bad_stages_are_one_line_errors(color_folder, tmp_path, command):
    folders = [str(color_folder)] * (2 if command == "train-scan" else 1)
    result = runner.invoke(app, [command, *folders, str(tmp_path / "r"), "--stages", "32,x"])
    assert result.exit_code == 2 and "--stages must be sizes separated by commas" in result.stderr
    assert "Traceback" not in result.output


def test_train_color_refuses_a_used_run_folder(color_folder, tmp_path):
    args = ["train-color", str(color_folder), str(tmp_path / "run"), "--width", "4", "--depth", "3", "--d-width", "4"]
    args += ["--steps", "1", "--batch-size", "2", "--crop-size", "32", "--sample-every", "0"]
    assert runner.invoke(app, args).exit_code == 0
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already holds a training run; continue it with --resume" in again.stderr
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics  # nothing appended


def test_train_color_width_sets_the_resnet_unet_stem(color_folder, tmp_path):
    toy = '{"layers": [1, 1, 1, 1], "decoder_widths": [16, 16, 8, 8, 8]}'
    args = ["train-color", str(color_folder), str(tmp_path / "r"), "--arch", "resnet-unet", "--width", "4"]
    args += ["--model-config", toy, "--d-width", "4", "--steps", "1", "--batch-size", "2", "--crop-size", "32"]
    result = runner.invoke(app, [*args, "--sample-every", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from mangacolor.checkpoint import read_info

    assert read_info(tmp_path / "r" / "model.safetensors").config["width"] == 4


@pytest.mark.parametrize("arch", [s.name for s in list_models("colorize")])
def test_colorize_command_with_each_architecture(arch, tmp_path):
    """`mangacolor colorize` loads each architecture's toy checkpoint with no flags but its own."""
    model, ckpt, reference = toy_colorizer(arch, tmp_path)
    write_image(tmp_path / "in" / "page.png", luma(drawing(50, 70, seed=1)))
    args = ["colorize", str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(ckpt), "--candidates"]
    if reference is not None:
        write_image(tmp_path / "style.png", reference)
        args += ["--reference", str(tmp_path / "style.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    k = getattr(model, "num_outputs", 1)
    expected = ["page.png"] if k == 1 else [f"page_c{i}.png" for i in range(k)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == expected
    assert read_image(tmp_path / "out" / expected[0]).shape == (50, 70, 3)


def test_paths_with_square_brackets_are_printed_as_text(pages, tmp_path, toy_checkpoint):
    odd = tmp_path / "[" / "x] [red]y"  # "[/x]" and "[red]" would be Rich markup if not escaped
    odd.mkdir(parents=True)
    model = odd / "model.safetensors"
    model.write_bytes(toy_checkpoint.read_bytes())
    result = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "out"), "-m", str(model)])
    assert result.exit_code == 0, result.output
    assert "[red]y/model.safetensors" in " ".join(result.stderr.split())


def test_colorize_options_are_checked_before_the_model_loads(pages, tmp_path, toy_checkpoint, scan_checkpoint):
    missing = str(tmp_path / "missing.safetensors")
    for option, value in (("--merge", "bogus"), ("--device", "cuda:5"), ("--device", "tpu")):
        result = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "o"), "-m", missing, option, value])
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, result.output
    page = str(pages / "p0.png")
    result = runner.invoke(
        app, ["colorize", page, str(tmp_path / "o.png"), "-m", str(toy_checkpoint), "--format", "jpg"]
    )
    # Typer's error box wraps the message at the terminal width, where the path's length falls
    assert result.exit_code == 2 and "named as a .png file" in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "o.png").exists()
    result = runner.invoke(
        app, ["colorize", page, str(tmp_path / "o.jpeg"), "-m", str(toy_checkpoint), "--format", "jpg"]
    )
    assert result.exit_code == 0 and (tmp_path / "o.jpeg").is_file()
    result = runner.invoke(
        app, ["colorize", page, str(tmp_path / "s.png"), "-m", str(scan_checkpoint), "--reference", page]
    )
    assert result.exit_code == 2 and "a scan model, not a colorizer" in result.stderr
    torch_file = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, torch_file)
    result = runner.invoke(app, ["colorize", page, str(tmp_path / "t.png"), "-m", str(torch_file)])
    assert result.exit_code == 2 and "a PyTorch .pth/.pt file, not a .safetensors checkpoint" in result.stderr


def test_colorize_stopped_by_sigterm_leaves_only_whole_files(tmp_path, toy_checkpoint):
    pages = tmp_path / "many"
    for i in range(150):
        write_image(pages / f"p{i:03d}.png", luma(drawing(96, 128, seed=i)))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "mangacolor",
        "colorize",
        str(pages),
        str(out),
        "-m",
        str(toy_checkpoint),
        "--size",
        "96",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.png"))) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the signal")
    assert proc.returncode == 143 and "stopped by SIGTERM" in err, err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    written = sorted(out.glob("*.png"))
    assert 0 < len(written) < 150
    for path in written:
        assert read_image(path).shape == (96, 128, 3)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and len(list(out.glob("*.png"))) == 150

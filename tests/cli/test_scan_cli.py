"""`mangacolor train-scan` and `scan` in-process, and the scan -> train-color round trip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mangacolor.checkpoint import read_info
from mangacolor.cli import app
from mangacolor.color import luma
from mangacolor.data import PairedFolderSource
from mangacolor.imageio import read_image, write_image
from tests.conftest import drawing, toy_colorizer

runner = CliRunner()

TOY = ["--width", "4", "--blocks", "1", "--d-width", "4", "--crop-size", "32", "--batch-size", "2"]
TOY += ["--epoch-length", "4", "--log-every", "1", "--sample-every", "0", "--device", "cpu"]


@pytest.fixture
def folders(tmp_path):
    """Unpaired 'scans' and colour art; the colour images have odd sizes and a nested folder."""
    scans, colors = tmp_path / "scans", tmp_path / "colors"
    for i in range(3):
        gray = luma(drawing(seed=40 + i))
        gray[1::4, 1::4] = 0  # a dot pattern, so scans are not luma
        write_image(scans / f"s{i}.png", gray)
    for i in range(4):
        write_image(colors / f"art_{i}.png", drawing(45 + i, 61, seed=i))
    write_image(colors / "sub" / "art_x.webp", drawing(50, 50, seed=9))
    return scans, colors


def test_train_scan_writes_the_scan_generator_and_resumes(folders, tmp_path):
    scans, colors = folders
    run = tmp_path / "run"
    args = ["train-scan", str(scans), str(colors), str(run), "--steps", "2", *TOY]
    stopped = runner.invoke(app, [*args, "--time-limit", "0.000001"])  # stops after step 1, saved
    assert stopped.exit_code == 75 and f"--resume {run}" in stopped.stderr, stopped.output
    assert (run / "latest.safetensors").exists() and not (run / "model.safetensors").exists()
    result = runner.invoke(app, ["train-scan", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run / "model.safetensors")
    info = read_info(run / "model.safetensors")
    assert info.task == "scan" and info.provenance["steps"] == 2 and info.provenance["color_files"] == 5
    config = json.loads((run / "config.json").read_text())
    assert config["cycle_weight"] == 10.0 and config["identity_weight"] == 0.5 and config["gan_loss"] == "lsgan"
    assert (run / "samples" / "step_0000002.png").exists()
    again = runner.invoke(app, ["train-scan", "--resume", str(run)])
    assert again.exit_code == 0, again.output  # resuming a finished run just re-exports it
    assert read_info(run / "model.safetensors").provenance["steps"] == 2


def test_train_scan_errors_are_one_line(folders, tmp_path):
    scans, colors = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["train-scan", str(empty), str(colors), str(tmp_path / "r"), *TOY])
    assert result.exit_code == 2 and "empty: no images" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["train-scan", "--resume", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "config.json" in result.stderr


def test_scan_folder_same_names_full_resolution_grey(folders, tmp_path, scan_checkpoint):
    _, colors = folders
    out = tmp_path / "out"
    result = runner.invoke(app, ["scan", str(scan_checkpoint), str(colors), str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(result.stdout.split())
    assert written == sorted([str(out / f"art_{i}.png") for i in range(4)] + [str(out / "sub" / "art_x.png")])
    for i in range(4):
        img = read_image(out / f"art_{i}.png", mode=None)
        assert img.shape == (45 + i, 61) and img.dtype == np.uint8  # greyscale, input's own size
    again = runner.invoke(app, ["scan", str(scan_checkpoint), str(colors), str(out), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["skipped"] == 5
    sized = runner.invoke(app, ["scan", str(scan_checkpoint), str(colors), str(tmp_path / "o2"), "--size", "32"])
    assert sized.exit_code == 0, sized.output
    assert read_image(tmp_path / "o2" / "art_3.png", mode=None).shape == (48, 61)  # upsampled back


def test_scan_bad_files_and_wrong_model(folders, tmp_path, scan_checkpoint, toy_checkpoint):
    _, colors = folders
    (colors / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = runner.invoke(app, ["scan", str(scan_checkpoint), str(colors), str(tmp_path / "o"), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["done"] == 5 and summary["failed"] == 1 and summary["failures"][0]["path"].endswith("broken.png")
    assert sorted(f["status"] for f in summary["files"]) == ["done"] * 5 + ["failed"]
    assert all(len(f["outputs"]) == 1 for f in summary["files"] if f["status"] == "done")
    wrong = runner.invoke(app, ["scan", str(toy_checkpoint), str(colors), str(tmp_path / "o3")])
    assert wrong.exit_code == 2 and "not a scan generator" in wrong.stderr
    backwards = runner.invoke(app, ["colorize", str(colors), str(tmp_path / "o4"), "-m", str(scan_checkpoint)])
    assert backwards.exit_code == 2 and "not a colorizer" in backwards.stderr


def test_scan_refuses_a_reference_colorizer_as_the_wrong_model(folders, tmp_path):
    """The task is checked first: scan has no --reference, so it must not ask for one."""
    _, colors = folders
    _, ckpt, _ = toy_colorizer("reference-unet", tmp_path)
    for extra in ([], ["--size", "2"]):
        result = runner.invoke(app, ["scan", str(ckpt), str(colors), str(tmp_path / "o"), *extra])
        assert result.exit_code == 2 and "not a scan generator" in result.stderr, result.output
        assert "--reference" not in result.stderr and "--size" not in result.stderr


def test_scan_output_feeds_train_color(folders, tmp_path, scan_checkpoint):
    """scan COLOR OUT, then train-color COLOR RUN --input-dir OUT: every colour image finds its scan."""
    _, colors = folders
    out = tmp_path / "synthetic"
    assert runner.invoke(app, ["scan", str(scan_checkpoint), str(colors), str(out)]).exit_code == 0
    source = PairedFolderSource(out, colors)
    assert len(source) == 5
    x, y = source.load(0)
    assert x.ndim == 2 and x.shape == y.shape[:2]
    run = tmp_path / "color_run"
    args = ["train-color", str(colors), str(run), "--input-dir", str(out), "--width", "4", "--depth", "3"]
    args += ["--d-width", "4", "--steps", "2", "--batch-size", "2", "--crop-size", "32", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--sample-every", "0", "--log-every", "1"])
    assert result.exit_code == 0, result.output
    info = read_info(run / "model.safetensors")
    assert info.provenance["input"] == "paired:synthetic" and info.provenance["data_files"] == 5
    colorized = runner.invoke(app, ["colorize", str(out), str(tmp_path / "col"), "-m", str(run / "model.safetensors")])
    assert colorized.exit_code == 0, colorized.output
    assert cv2.imread(str(tmp_path / "col" / "art_0.png")).shape == (45, 61, 3)
    mix_args = [*args[:2], str(tmp_path / "mix_run"), *args[3:], "--input", "mix", "--sample-every", "0"]
    mixed = runner.invoke(app, mix_args)
    assert mixed.exit_code == 0, mixed.output  # half the crops line art of the colour images
    assert read_info(tmp_path / "mix_run" / "model.safetensors").provenance["input"] == "paired:synthetic+lines"
    lines = runner.invoke(app, [*args[:2], str(tmp_path / "lines_run"), *args[3:], "--input", "lines"])
    assert lines.exit_code == 2 and "--input mix" in lines.stderr
    assert not (tmp_path / "lines_run").exists()  # refused before the run folder is made
    unknown = runner.invoke(app, [*args[:2], str(tmp_path / "bad_run"), *args[3:], "--input", "scan"])
    assert unknown.exit_code == 2 and "--input must be one of" in unknown.stderr
    assert not (tmp_path / "bad_run").exists()


def test_scan_takes_a_page_of_one_pixel_and_keeps_a_named_ending(scan_checkpoint, tmp_path):
    pages = tmp_path / "pages"
    write_image(pages / "dot.png", np.full((1, 1, 3), 90, np.uint8))  # padded up to a size the network takes
    write_image(pages / "page.png", drawing(32, 32))
    result = runner.invoke(app, ["scan", str(scan_checkpoint), str(pages), str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["done"] == 2
    assert read_image(tmp_path / "out" / "dot.png", mode=None).shape == (1, 1)
    named = tmp_path / "named.jpg"
    result = runner.invoke(app, ["scan", str(scan_checkpoint), str(pages / "page.png"), str(named)])
    assert result.exit_code == 0, result.output
    assert named.exists() and not named.with_suffix(".png").exists()


def test_scan_model_path_with_square_brackets(folders, tmp_path, scan_checkpoint):
    """The model's path is printed as text: ``[/x]`` in a folder name is not a Rich closing tag."""
    _, colors = folders
    ckpt = tmp_path / "[/x]" / "scan.safetensors"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(scan_checkpoint.read_bytes())
    result = runner.invoke(app, ["scan", str(ckpt), str(colors / "art_0.png"), str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").exists()

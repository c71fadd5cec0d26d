"""`mangacolor evaluate` in-process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mangacolor.cli import app
from mangacolor.imageio import read_image, write_image
from tests.conftest import drawing

runner = CliRunner()


@pytest.fixture
def folders(tmp_path):
    truth, pred, inputs = tmp_path / "truth", tmp_path / "pred", tmp_path / "inputs"
    for i in range(3):
        image = drawing(32, 48, seed=i)
        write_image(truth / f"[p]{i}.png", image)
        write_image(inputs / f"[p]{i}.png", np.zeros((32, 48), np.uint8))  # black: visible on the sheet
        write_image(pred / f"[p]{i}_c0.webp", np.clip(image.astype(int) + 8, 0, 255).astype(np.uint8))
    return pred, truth, inputs


def test_evaluate_prints_json_and_writes_sheet(folders, tmp_path):
    pred, truth, inputs = folders
    sheet = tmp_path / "sheet.png"
    args = ["evaluate", str(pred), str(truth), "--no-fid", "--no-lpips", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--sheet", str(sheet), "--inputs", str(inputs), "--sheet-count", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["evaluated"] == 3 and report["missing"] == [] and report["unreadable"] == []
    assert 20 < report["mean"]["psnr"] < 40 and 0.5 < report["mean"]["ssim"] <= 1.0
    assert report["mean"]["fid"] is None and report["notes"]["fid"] == "not asked for"
    assert [row["name"] for row in report["images"]] == ["[p]0", "[p]1", "[p]2"]
    assert "colourfulness ratio" in result.stderr and "[p]0" in result.stderr  # names are not eaten as markup
    image = read_image(sheet)
    assert image.shape[0] == 22 + 2 * (192 + 4) + 4
    assert image[22 + 96, 4 + 144].max() == 0  # the input column shows the --inputs file


def test_evaluate_missing_and_corrupt_exit_1(folders):
    pred, truth, _ = folders
    (pred / "[p]0_c0.webp").unlink()
    (pred / "[p]1_c0.webp").write_bytes(b"RIFF....WEBPVP8 broken")
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), "--no-fid", "--no-lpips"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["evaluated"] == 1 and report["missing"] == ["[p]0"]
    assert report["unreadable"][0]["path"].endswith("[p]1_c0.webp")
    assert "missing: [p]0" in result.stderr and "[p]1_c0.webp" in result.stderr


def test_evaluate_without_matches_is_one_line_error(folders, tmp_path):
    _, truth, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["evaluate", str(empty), str(truth), "--no-fid", "--no-lpips"])
    assert result.exit_code == 2
    assert "no prediction matches" in result.stderr and "Traceback" not in result.output


def test_evaluate_missing_vgg_file_is_an_error(folders, tmp_path):
    pytest.importorskip("lpips")
    pred, truth, _ = folders
    result = runner.invoke(
        app, ["evaluate", str(pred), str(truth), "--no-fid", "--vgg-weights", str(tmp_path / "nope.pth")]
    )
    assert result.exit_code == 2
    assert "nope.pth" in result.stderr


def test_evaluate_refuses_a_sheet_it_cannot_write_before_scoring(folders, tmp_path):
    pred, truth, _ = folders
    (tmp_path / "blocker").write_text("x")
    sheet = tmp_path / "blocker" / "sheet.png"
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), "--no-fid", "--no-lpips", "--sheet", str(sheet)])
    assert result.exit_code == 2 and "cannot write the contact sheet here" in result.stderr
    assert result.stdout == ""


def test_evaluate_refuses_a_sheet_that_would_overwrite_an_evaluated_image(folders):
    pred, truth, inputs = folders
    args = ["evaluate", str(pred), str(truth), "--no-fid", "--no-lpips", "--inputs", str(inputs)]
    for target in (truth / "[p]0.png", pred / "[p]1_c0.webp", inputs / "[p]2.png"):
        before = target.read_bytes()
        result = runner.invoke(app, [*args, "--sheet", str(target)])
        assert result.exit_code == 2 and "would overwrite an image being evaluated" in result.stderr
        assert target.read_bytes() == before
    result = runner.invoke(app, [*args, "--sheet", str(pred / "sheet.png")])  # the next run would read it
    assert result.exit_code == 2 and "where the next evaluation would read it" in result.stderr
    result = runner.invoke(app, [*args, "--sheet", str(pred.parent / "sheet.png")])  # beside the folders: fine
    assert result.exit_code == 0 and (pred.parent / "sheet.png").is_file()


def test_evaluate_with_every_pair_unreadable_exits_2(folders):
    pred, truth, _ = folders
    for i in range(3):
        (pred / f"[p]{i}_c0.webp").write_bytes(b"not a picture")
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), "--no-fid", "--no-lpips"])
    assert result.exit_code == 2 and "nothing could be compared" in result.stderr
    report = json.loads(result.stdout)  # the report still says which files could not be read
    assert report["evaluated"] == 0 and len(report["unreadable"]) == 3

"""`mangacolor prepare ...` in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mangacolor.cli import app
from mangacolor.imageio import read_image, write_image
from tests.conftest import drawing

runner = CliRunner()


def _images(root: Path, n: int = 3) -> Path:
    for i in range(n):
        boxed = np.zeros((56, 56, 3), np.uint8)
        boxed[8:48] = drawing(40, 56, seed=i)
        write_image(root / f"p{i}.png", boxed)
    return root


def test_crop_then_lines_chain(tmp_path):
    src = _images(tmp_path / "in")
    crop = runner.invoke(
        app, ["prepare", "crop", str(src), str(tmp_path / "crop"), "--color", "black", "--workers", "1"]
    )
    assert crop.exit_code == 0, crop.output
    assert sorted(crop.stdout.split()) == [str(tmp_path / "crop" / f"p{i}.png") for i in range(3)]
    assert read_image(tmp_path / "crop" / "p0.png").shape == (40, 56, 3)
    lines = runner.invoke(
        app,
        [
            "prepare",
            "lines",
            str(tmp_path / "crop"),
            str(tmp_path / "lines"),
            "--method",
            "xdog",
            "--threshold",
            "0.5",
            "--json",
            "--workers",
            "2",
        ],
    )
    assert lines.exit_code == 0, lines.output
    assert json.loads(lines.stdout)["done"] == 3
    out = read_image(tmp_path / "lines" / "p1.png", mode=None)
    assert out.shape == (40, 56) and set(np.unique(out)) <= {0, 255}
    gray = runner.invoke(app, ["prepare", "lines", str(tmp_path / "crop"), str(tmp_path / "gray"), "--gray"])
    assert gray.exit_code == 0 and read_image(tmp_path / "gray" / "p2.png", mode=None).ndim == 2
    again = runner.invoke(app, ["prepare", "lines", str(tmp_path / "crop"), str(tmp_path / "gray"), "--gray", "--json"])
    assert json.loads(again.stdout)["skipped"] == 3


def test_failures_exit_1_and_bad_options_exit_2(tmp_path):
    src = _images(tmp_path / "in", 2)
    (src / "broken.png").write_bytes(b"garbage")
    result = runner.invoke(app, ["prepare", "lines", str(src), str(tmp_path / "out"), "--json", "--workers", "1"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["done"] == 2 and summary["failed"] == 1 and "broken.png" in summary["failures"][0]["path"]
    assert "broken.png" in result.stderr
    bad = runner.invoke(app, ["prepare", "crop", str(src), str(tmp_path / "o2"), "--shard", "3/2"])
    assert bad.exit_code == 2 and "--shard" in bad.stderr
    bad = runner.invoke(app, ["prepare", "lines", str(src), str(tmp_path / "o3"), "--method", "blur", "--phi", "3"])
    assert bad.exit_code == 2 and "phi" in bad.stderr
    bad = runner.invoke(app, ["prepare", "lines", str(src), str(tmp_path / "o4"), "--gray", "--sigma", "2"])
    assert bad.exit_code == 2 and "--gray:" in bad.stderr and "--method" not in bad.stderr
    bad = runner.invoke(app, ["prepare", "lines", str(src), str(tmp_path / "o5"), "--format", "gif"])
    assert bad.exit_code == 2 and "'--format': must be one of same, png, jpg, webp" in bad.stderr
    assert not (tmp_path / "o5").exists()  # refused while the options are read, before anything runs


def test_format_in_any_case(tmp_path):
    src = _images(tmp_path / "in", 1)
    for given, suffix in (("JPEG", ".jpg"), (".WebP", ".webp")):
        out = tmp_path / given
        result = runner.invoke(app, ["prepare", "lines", str(src), str(out), "--format", given, "--workers", "1"])
        assert result.exit_code == 0, result.output
        assert [p.suffix for p in out.iterdir()] == [suffix]


def test_pair_hconcat_split(tmp_path):
    bw, color = tmp_path / "bw", tmp_path / "color"
    for name in ("a", "b", "lonely"):
        write_image(bw / f"{name}.png", drawing(seed=1)[..., 0])
    for name in ("a", "b"):
        write_image(color / f"{name}.jpg", drawing(seed=1))
    pair = runner.invoke(app, ["prepare", "pair", str(bw), str(color), str(tmp_path / "p"), "--json"])
    assert pair.exit_code == 0, pair.output
    assert json.loads(pair.stdout)["unmatched_bw"] == 1 and "lonely" in pair.stderr
    cat = runner.invoke(
        app, ["prepare", "hconcat", str(tmp_path / "p" / "A"), str(tmp_path / "p" / "B"), str(tmp_path / "ab")]
    )
    assert cat.exit_code == 0 and read_image(tmp_path / "ab" / "a.png").shape == (48, 128, 3)
    split = runner.invoke(app, ["prepare", "split", str(tmp_path / "ab"), str(tmp_path / "back")])
    assert split.exit_code == 0
    assert np.array_equal(read_image(tmp_path / "back" / "B" / "b.png"), read_image(tmp_path / "p" / "B" / "b.png"))


def test_filter(tmp_path):
    root = tmp_path / "dump"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "posts.json").write_text(
        json.dumps({"id": 7, "rating": "g", "tag_string": "cat", "file_ext": "png"})
        + "\n{broken\n"
        + json.dumps({"id": 8, "rating": "g", "tag_string": "catgirl"})
        + "\n"
    )
    for post_id in (7, 8):
        (root / "512px" / f"{post_id:04d}").mkdir(parents=True)
        (root / "512px" / f"{post_id:04d}" / f"{post_id}.jpg").write_bytes(b"x")
    result = runner.invoke(app, ["prepare", "filter", str(root), str(tmp_path / "out"), "--tag", "cat", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["filter"]["selected"] == 1 and summary["filter"]["malformed"] == 1
    assert "posts.json:2" in result.stderr
    assert (tmp_path / "out" / "0007" / "7.jpg").exists() and not (tmp_path / "out" / "0008").exists()

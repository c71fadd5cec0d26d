"""`mangacolor prepare ...` in-process."""

from __future__ import annotations

import json
import re
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
    files = {Path(f["path"]).name: f for f in summary["files"]}  # every file's outcome, not just the failures
    assert sorted(files) == ["broken.png", "p0.png", "p1.png"]
    assert (
        files["broken.png"]["status"] == "failed"
        and files["broken.png"]["reason"]
        and not files["broken.png"]["outputs"]
    )
    for name in ("p0.png", "p1.png"):
        assert files[name]["status"] == "done" and [Path(o).name for o in files[name]["outputs"]] == [name]
        assert Path(files[name]["outputs"][0]).is_file()
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
        assert [p.suffix for p in out.iterdir() if not p.name.startswith(".")] == [suffix]


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
    assert "files" not in summary  # a dump's posts are listed in the manifest, not on stdout
    assert "posts.json:2" in result.stderr
    assert (tmp_path / "out" / "0007" / "7.jpg").exists() and not (tmp_path / "out" / "0008").exists()


def _pages(tmp_path: Path) -> tuple[Path, Path]:
    bw, color = tmp_path / "bw", tmp_path / "color"
    write_image(bw / "a.png", drawing(seed=1)[..., 0])
    write_image(color / "a.png", drawing(seed=1))
    return bw, color


def test_bad_option_values_are_usage_errors_naming_the_option(tmp_path):
    bw, color = _pages(tmp_path)
    out = tmp_path / "out"

    def refused(*args: str) -> str:
        result = runner.invoke(app, ["prepare", *args])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and not out.exists()  # refused before anything runs
        return " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())  # the text of Rich's error panel

    for value in ("99999999999", "40000", "40000x512", "0", "big"):
        message = refused("pair", str(bw), str(color), str(out), "--resize", value)
        assert "'--resize': must be WxH or a long side N, each side 1 to 16384" in message
    message = refused("crop", str(color), str(out), "--color", "red")
    assert "'--color': must be one of both, black, white" in message and "('both'" not in message
    for value in ("foo", "gray"):
        message = refused("lines", str(color), str(out), "--method", value)
        assert "'--method': must be one of blur, sketch, xdog" in message
    assert "--gray" in refused("lines", str(color), str(out), "--method", "gray")


def test_names_that_are_not_utf8_are_listed_and_printed(tmp_path):
    import os

    bw, color = _pages(tmp_path)
    odd = os.fsdecode(b"caf\xe9")
    write_image(bw / f"{odd}.png", drawing(seed=2)[..., 0])  # no partner: listed in unmatched.txt
    write_image(bw / f"{odd}2.png", drawing(seed=2)[..., 0])
    write_image(color / f"{odd}2.png", drawing(seed=2))  # a pair: its outputs are printed on stdout
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", "pair", str(bw), str(color), str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert os.fsencode(out / "A" / f"{odd}2.png") in result.stdout_bytes.splitlines()
    assert b"caf\xe9.png" in (out / "unmatched.txt").read_bytes()
    joined = runner.invoke(app, ["prepare", "hconcat", str(bw), str(color), str(tmp_path / "ab"), "--json"])
    assert joined.exit_code == 0, joined.output
    assert json.loads(joined.stdout)["unmatched_A"] == 1


def test_a_report_file_that_cannot_be_written_is_one_line(tmp_path):
    bw, color = _pages(tmp_path)
    write_image(bw / "lonely.png", drawing(seed=2)[..., 0])
    out = tmp_path / "out"
    (out / "unmatched.txt").mkdir(parents=True)
    for command in ("pair", "hconcat"):
        result = runner.invoke(app, ["prepare", command, str(bw), str(color), str(out)])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"error: {out / 'unmatched.txt'}: cannot write: Is a directory" in result.stderr


def test_filter_goes_on_past_unreadable_metadata(tmp_path, monkeypatch):
    from mangacolor.prepare import danbooru
    from tests.conftest import deny_listing

    root = tmp_path / "dump"
    for name, post_id in (("a.json", 7), ("locked/b.json", 8), ("unreadable.json", 9)):
        (root / "metadata" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "metadata" / name).write_text(json.dumps({"id": post_id, "tag_string": "cat"}) + "\n")
        (root / "512px" / f"{post_id:04d}").mkdir(parents=True)
        (root / "512px" / f"{post_id:04d}" / f"{post_id}.jpg").write_bytes(b"x")
    deny_listing(monkeypatch, "locked")

    def fake_open(path, *args, **kwargs):
        if Path(path).name == "unreadable.json":
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(danbooru, "open", fake_open, raising=False)
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", "filter", str(root), str(out), "--json", "--workers", "1"])
    assert result.exit_code == 1, result.output
    failed = {Path(f["path"]).name: f["reason"] for f in json.loads(result.stdout)["failures"]}
    assert set(failed) == {"locked", "unreadable.json"}
    assert [json.loads(line)["id"] for line in (out / "manifest.jsonl").read_text().splitlines()] == [7]
    assert (out / "filter.json").is_file()


def test_help_texts_keep_their_brackets():
    """Rich reads ``[l]`` in a help text as markup and drops it: no help may depend on brackets."""
    result = runner.invoke(app, ["prepare", "filter", "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0 and "*.jsonl" in " ".join(result.output.replace("│", " ").split())

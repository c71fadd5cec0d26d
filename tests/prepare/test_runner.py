"""The shared folder driver: workers, shards, resume, bad files, via the crop and lines stages."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mangacolor.errors import MangacolorError
from mangacolor.imageio import list_images, write_image
from mangacolor.prepare.aligned import split_folder
from mangacolor.prepare.borders import CropConfig, crop_folder
from mangacolor.prepare.lines import LinesConfig, lines_folder
from mangacolor.prepare.pair import pair_folders
from mangacolor.prepare.runner import Job, RunOptions, iter_results, parse_shard, shard_of
from mangacolor.report import FileResult
from tests.conftest import deny_listing, drawing


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Nine small colour drawings in two folders, some letterboxed in black."""
    root = tmp_path / "in"
    for i in range(9):
        img = drawing(40 if i % 2 else 48, 56, seed=i)
        if i % 2:
            boxed = np.zeros((56, 56, 3), np.uint8)
            boxed[8:48] = img
            img = boxed
        write_image(root / ("sub" if i >= 6 else "") / f"im{i}.png", img)
    return root


def _outputs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in list_images(root)}


def test_worker_count_invariance(images, tmp_path):
    one = lines_folder(images, tmp_path / "w1", LinesConfig("xdog"), RunOptions(workers=1))
    two = lines_folder(images, tmp_path / "w2", LinesConfig("xdog"), RunOptions(workers=2, chunksize=2))
    assert one.counts["done"] == two.counts["done"] == 9
    assert _outputs(tmp_path / "w1") == _outputs(tmp_path / "w2")
    c1 = crop_folder(images, tmp_path / "c1", options=RunOptions(workers=1))
    c2 = crop_folder(images, tmp_path / "c2", options=RunOptions(workers=2, chunksize=1))
    assert c1.counts == c2.counts
    assert _outputs(tmp_path / "c1") == _outputs(tmp_path / "c2")


def test_shards_cover_every_file_once(images, tmp_path):
    seen: list[str] = []
    for i in (1, 2, 3):
        out = tmp_path / f"s{i}"
        report = crop_folder(images, out, options=RunOptions(workers=1, shard=(i, 3)))
        assert report.counts["done"] == len(_outputs(out))
        seen += list(_outputs(out))
    assert sorted(seen) == sorted(_outputs(images)) and len(seen) == 9
    keys = [f"f{i}.png" for i in range(300)]
    counts = [sum(shard_of(k, 3) == s for k in keys) for s in (1, 2, 3)]
    assert sum(counts) == 300 and min(counts) > 70


def test_shards_take_file_names_that_are_not_utf8(images, tmp_path):
    name = os.fsdecode(b"\xff\xfepage.png")  # a Latin-1 name on a UTF-8 system
    (images / name).write_bytes((images / "im0.png").read_bytes())
    done = [crop_folder(images, tmp_path / f"s{i}", options=RunOptions(workers=1, shard=(i, 2))) for i in (1, 2)]
    assert sum(r.counts["done"] for r in done) == 10 and not any(r.failed for r in done)


def test_a_folder_named_like_an_output_is_not_a_finished_output(images, tmp_path):
    out = tmp_path / "out"
    (out / "im0.png").mkdir(parents=True)
    report = crop_folder(images, out, options=RunOptions(workers=1))
    assert report.counts["done"] == 8 and report.failed == 1 and not report.counts["skipped"]
    assert report.failures[0].path.endswith("im0.png") and "Is a directory" in report.failures[0].reason


def test_resume_after_partial_run_and_overwrite(images, tmp_path):
    out = tmp_path / "out"
    crop_folder(images, out, options=RunOptions(workers=1, shard=(1, 2)))  # an "interrupted" first run
    partial = _outputs(out)
    assert 0 < len(partial) < 9
    (out / ".im0.png.123.tmp").write_bytes(b"left over by a killed run")
    report = crop_folder(images, out, options=RunOptions(workers=2))
    assert report.counts["skipped"] == len(partial) and report.counts["done"] == 9 - len(partial)
    assert report.skip_reasons["output exists"] == len(partial)
    assert _outputs(out) == _outputs_of_fresh_run(images, tmp_path / "fresh")
    again = crop_folder(images, out, options=RunOptions(workers=2, overwrite=True))
    assert again.counts["done"] == 9


def _outputs_of_fresh_run(images: Path, out: Path) -> dict[str, bytes]:
    crop_folder(images, out, options=RunOptions(workers=1))
    return _outputs(out)


def test_bad_files_are_reported_and_the_batch_goes_on(images, tmp_path):
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (images / "text.jpg").write_text("hello")
    good = images / "im0.png"
    (images / "truncated.png").write_bytes(good.read_bytes()[:200])
    report = lines_folder(images, tmp_path / "out", options=RunOptions(workers=2))
    assert report.counts["done"] == 9 and report.failed == 3
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert set(reasons) == {"corrupt.png", "text.jpg", "truncated.png"}
    assert all(reasons.values())


def test_crop_min_size_skips(images, tmp_path):
    report = crop_folder(images, tmp_path / "out", CropConfig(color="black", min_size=45), RunOptions(workers=1))
    assert report.counts["done"] == 5 and report.counts["skipped"] == 4  # the letterboxed ones are 40 high
    assert any("min-size" in reason for reason in report.skip_reasons)


def test_options_validation(images):
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) == (1, 1)
    for bad in ("0/4", "5/4", "a/b", "3"):
        with pytest.raises(MangacolorError):
            parse_shard(bad)
    with pytest.raises(MangacolorError, match="inside"):
        crop_folder(images, images / "out")


def test_outputs_that_would_collide_fail_the_later_file(tmp_path):
    root = tmp_path / "in"
    write_image(root / "a.jpg", drawing(seed=1))
    write_image(root / "a.png", drawing(seed=2))
    write_image(root / "b.png", drawing(seed=3))
    report = lines_folder(root, tmp_path / "out", options=RunOptions(workers=1))
    assert report.counts["done"] == 2 and report.failed == 1
    assert report.failures[0].path.endswith("a.png") and "same output as a.jpg" in report.failures[0].reason
    again = lines_folder(root, tmp_path / "out", options=RunOptions(workers=1))
    assert again.counts["skipped"] == 2 and again.failed == 1  # still reported, never skipped as done
    same = crop_folder(root, tmp_path / "same", options=RunOptions(workers=1))  # --format same: no collision
    assert same.counts["done"] == 3
    halves = split_folder(root, tmp_path / "split", options=RunOptions(workers=1))  # A|B images, written as png
    assert halves.counts["done"] == 2 and halves.failed == 1 and "same output as a.jpg" in halves.failures[0].reason


def test_unlistable_folder_fails_and_the_batch_goes_on(images, tmp_path, monkeypatch):
    deny_listing(monkeypatch, "sub")
    for stage in (crop_folder, split_folder):
        report = stage(images, tmp_path / stage.__name__, options=RunOptions(workers=1))
        assert report.counts["done"] == 6 and report.failed == 1
        assert report.failures[0].path.endswith("sub") and "cannot list folder" in report.failures[0].reason


def test_output_folder_that_cannot_be_made(images, tmp_path):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(MangacolorError, match="cannot create the output folder"):
            lines_folder(images, out, options=RunOptions(workers=1))


def test_a_missing_input_leaves_no_output_folder(tmp_path):
    missing, out = tmp_path / "nope", tmp_path / "out"
    for run in (
        lambda: lines_folder(missing, out, options=RunOptions(workers=1)),
        lambda: split_folder(missing, out, RunOptions(workers=1)),
        lambda: pair_folders(missing, tmp_path, out, RunOptions(workers=1)),
    ):
        with pytest.raises(MangacolorError, match="nope: no such file or directory"):
            run()
        assert not out.exists()


@dataclass(frozen=True)
class _CrashOn:
    """A task whose worker process dies on one file (like a decoder crash)."""

    name: str

    def __call__(self, job: Job) -> FileResult:
        if Path(job.source).name == self.name:
            os._exit(3)
        return FileResult(job.source, "done")


def test_a_dying_worker_fails_only_its_files(images):
    jobs = [Job(str(p), (), p.name) for p in sorted(images.rglob("*.png"))]
    results = [r for _, r in iter_results(jobs, _CrashOn("im4.png"), RunOptions(workers=2, chunksize=2))]
    assert [Path(r.path).name for r in results] == [Path(j.source).name for j in jobs]
    failed = [Path(r.path).name for r in results if r.status == "failed"]
    assert "im4.png" in failed and len(failed) <= 4  # its chunk, maybe the one running beside it
    assert sum(r.status == "done" for r in results) >= 5

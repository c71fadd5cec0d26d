"""Danbooru metadata of both generations, hand-written, edge cases included; the filter stage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mangacolor.errors import MangacolorError
from mangacolor.prepare.danbooru import TagFilter, filter_posts, image_path, parse_post, read_metadata, resolve_image
from mangacolor.prepare.runner import RunOptions


def _old_tags(*names_categories: tuple[str, str]) -> list[dict[str, str]]:
    return [{"id": str(i), "name": n, "category": c} for i, (n, c) in enumerate(names_categories, 1)]


# Danbooru2017-2020: every value a string, tags as objects.
OLD_LINES = [
    json.dumps(
        {
            "id": "1001",
            "created_at": "2015-01-01 00:00:00 UTC",
            "uploader_id": "7",
            "score": "5",
            "source": "",
            "md5": "0123456789abcdef0123456789abcdef",
            "rating": "s",
            "image_width": "800",
            "image_height": "600",
            "is_deleted": "false",
            "is_banned": "false",
            "file_ext": "png",
            "file_size": "12345",
            "tags": _old_tags(("cat", "0"), ("1girl", "0"), ("hatsune_miku", "4"), ("someone", "1")),
            "pools": [],
            "favs": ["1", "2"],
        }
    ),
    json.dumps(
        {
            "id": "1002",
            "rating": "s",
            "image_width": "800",
            "image_height": "600",
            "is_deleted": "false",
            "file_ext": "jpg",
            "tags": _old_tags(("catgirl", "0"), ("1girl", "0")),
        }
    ),
    json.dumps(
        {
            "id": "1003",
            "rating": "s",
            "image_width": "800",
            "image_height": "600",
            "is_deleted": "true",
            "file_ext": "jpg",
            "tags": _old_tags(("cat", "0")),
        }
    ),
    json.dumps(
        {
            "id": "1004",
            "rating": "x",
            "image_width": "800",
            "image_height": "600",
            "is_deleted": "false",
            "file_ext": "jpg",
            "tags": _old_tags(("cat", "0"), ("monochrome", "0")),
        }
    ),
    json.dumps({"id": "1005", "tags": _old_tags(("cat", "0"))}),  # missing rating, size, ext, deleted flag
    json.dumps(
        {
            "id": "1006",
            "rating": "q",
            "image_width": "120",
            "image_height": "90",
            "is_deleted": "false",
            "file_ext": "jpg",
            "tags": _old_tags(("cat", "0")),
        }
    ),
    '{"id": "1007", "rating": "s", "tags": [',  # truncated JSON
    "",  # blank line: ignored
    "[1, 2, 3]",  # not an object
    json.dumps({"id": "abc", "tags": []}),  # bad id
    json.dumps({"rating": "s", "tags": _old_tags(("cat", "0"))}),  # missing id
]

# Danbooru2021+: API style, numeric values, space-separated tag strings.
NEW_LINES = [
    json.dumps(
        {
            "id": 2001,
            "created_at": "2021-03-01T00:00:00.000-05:00",
            "uploader_id": 9,
            "score": 12,
            "md5": "fedcba9876543210fedcba9876543210",
            "rating": "g",
            "image_width": 1200,
            "image_height": 900,
            "is_deleted": False,
            "is_banned": False,
            "file_ext": "png",
            "file_size": 99999,
            "tag_string": "cat 1girl solo hatsune_miku artist_x",
            "tag_string_general": "cat 1girl solo",
            "tag_string_character": "hatsune_miku",
            "tag_string_copyright": "vocaloid",
            "tag_string_artist": "artist_x",
            "tag_string_meta": "",
            "tag_count": 5,
        }
    ),
    json.dumps(
        {
            "id": "2002",
            "md5": "x",
            "rating": "s",
            "image_width": "640",
            "image_height": "640",
            "is_deleted": False,
            "file_ext": "jpg",
            "tag_string": "cat",
            "tag_string_general": "cat",
        }
    ),
    json.dumps(
        {
            "id": 2003,
            "rating": "g",
            "image_width": 900,
            "image_height": 900,
            "is_deleted": True,
            "file_ext": "jpg",
            "tag_string": "cat",
            "tag_string_general": "cat",
        }
    ),
    json.dumps(
        {
            "id": 2004,
            "rating": "e",
            "image_width": 900,
            "image_height": 900,
            "is_deleted": False,
            "file_ext": "jpg",
            "tag_string": "cat monochrome",
            "tag_string_general": "cat monochrome",
        }
    ),
    json.dumps(
        {
            "id": 2005,
            "rating": "g",
            "image_width": 900,
            "image_height": 900,
            "is_deleted": False,
            "file_ext": "jpg",
            "tag_string": "catgirl",
            "tag_string_general": "catgirl",
        }
    ),
    json.dumps(
        {
            "id": 2006,
            "rating": "general",
            "image_width": 900,
            "image_height": 900,
            "file_ext": "webp",
            "tag_string_general": "cat",
            "tag_string_character": "cat",
        }
    ),  # no tag_string, word rating
    "not json at all",
    json.dumps({"id": 2008, "rating": None, "tag_string": None}),  # nulls everywhere but a usable id
]

ALL_IDS_WITH_IMAGES = [1001, 1002, 1003, 1004, 1005, 1006, 2001, 2002, 2003, 2004, 2005, 2006]


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    """A dump root with metadata of both generations and 512px images for most posts."""
    root = tmp_path / "danbooru"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "2020000000000000.json").write_text("\n".join(OLD_LINES) + "\n")
    (root / "metadata" / "posts000000000000.json").write_text("\n".join(NEW_LINES) + "\n")
    for post_id in ALL_IDS_WITH_IMAGES:
        if post_id == 1005:
            continue  # in the metadata but not in the dump
        path = root / "512px" / f"{post_id % 1000:04d}" / f"{post_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"jpeg bytes of {post_id}".encode())
    return root


def test_parse_old_generation():
    post = parse_post(json.loads(OLD_LINES[0]))
    assert post.id == 1001 and post.rating == "s" and (post.width, post.height) == (800, 600)
    assert post.tags == {"cat", "1girl", "hatsune_miku", "someone"}
    assert post.tags_by_category["character"] == {"hatsune_miku"}
    assert post.tags_by_category["artist"] == {"someone"}
    assert post.file_ext == "png" and not post.is_deleted
    assert parse_post(json.loads(OLD_LINES[2])).is_deleted
    assert parse_post(json.loads(OLD_LINES[3])).rating is None  # unknown rating
    sparse = parse_post(json.loads(OLD_LINES[4]))
    assert sparse.rating is None and sparse.width is None and sparse.file_ext is None


def test_parse_new_generation():
    post = parse_post(json.loads(NEW_LINES[0]))
    assert post.id == 2001 and post.rating == "g" and post.md5.startswith("fedcba")
    assert post.tags == {"cat", "1girl", "solo", "hatsune_miku", "artist_x"}
    assert post.tags_by_category["copyright"] == {"vocaloid"}
    assert parse_post(json.loads(NEW_LINES[1])).id == 2002  # string id
    no_tag_string = parse_post(json.loads(NEW_LINES[5]))
    assert no_tag_string.tags == {"cat"} and no_tag_string.rating == "g"


def test_malformed_lines_are_reported_with_file_and_line(dump):
    lines = list(read_metadata([dump / "metadata"]))
    bad = [(line.file.name, line.line, line.error) for line in lines if line.post is None]
    assert [(name, number) for name, number, _ in bad] == [
        ("2020000000000000.json", 7),
        ("2020000000000000.json", 9),
        ("2020000000000000.json", 10),
        ("2020000000000000.json", 11),
        ("posts000000000000.json", 7),
    ]
    assert "invalid JSON" in bad[0][2] and "JSON object" in bad[1][2] and "'id'" in bad[2][2]
    assert parse_post({"id": 2008}).tags == frozenset()


def test_exact_tag_matching():
    crit = TagFilter(tags=frozenset({"cat"}))
    assert crit.match(parse_post(json.loads(OLD_LINES[0])))[0]
    assert not crit.match(parse_post(json.loads(OLD_LINES[1])))[0]  # catgirl is not cat
    assert not crit.match(parse_post(json.loads(NEW_LINES[4])))[0]
    in_character = TagFilter(tags=frozenset({"cat"}), categories=frozenset({"character"}))
    assert not in_character.match(parse_post(json.loads(NEW_LINES[0])))[0]
    assert in_character.match(parse_post(json.loads(NEW_LINES[5])))[0]


def _manifest(out: Path, name: str = "manifest.jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def test_filter_stage(dump, tmp_path):
    out = tmp_path / "out"
    report = filter_posts([dump / "metadata"], dump, out, TagFilter(tags=frozenset({"cat"})), RunOptions(workers=1))
    ids = [r["id"] for r in _manifest(out)]
    # Deleted (1003, 2003) and catgirl-only posts (1002, 2005) are out; 1005 has no image in the dump.
    assert ids == [1001, 1004, 1006, 2001, 2002, 2004, 2006]
    assert (out / "0001" / "1001.jpg").read_bytes() == b"jpeg bytes of 1001"
    assert len(report.malformed) == 5 and report.rejected["deleted"] == 2
    assert report.batch.skip_reasons["image not in the dump"] == 1
    first = _manifest(out)[0]
    assert first["file"] == "0001/1001.jpg" and first["metadata"].endswith("2020000000000000.json:1")
    assert first["matched"] == {"tags": ["cat"], "any_tags": []}
    summary = json.loads((out / "filter.json").read_text())
    assert summary["criteria"]["tags"] == ["cat"] and summary["malformed"] == 5


def test_filter_refuses_to_mix_two_selections_in_one_folder(dump, tmp_path):
    from mangacolor.errors import MangacolorError

    out, one = tmp_path / "out", RunOptions(workers=1)
    cat = TagFilter(tags=frozenset({"cat"}))
    filter_posts([dump / "metadata"], dump, out, cat, one)
    again = filter_posts([dump / "metadata"], dump, out, cat, one)  # the same selection resumes
    assert again.batch.counts["skipped"] == 8 and again.batch.counts["done"] == 0  # 7 copies, 1 not in the dump
    with pytest.raises(
        MangacolorError, match=r"made by `prepare filter` with subset='512px' \(now subset='original'\)"
    ):
        filter_posts([dump / "metadata"], dump, out, cat, one, subset="original")  # would keep the 512px copies
    with pytest.raises(MangacolorError, match="criteria="):
        filter_posts([dump / "metadata"], dump, out, TagFilter(tags=frozenset({"solo"})), one)
    redone = filter_posts(
        [dump / "metadata"], dump, out, TagFilter(tags=frozenset({"solo"})), RunOptions(workers=1, overwrite=True)
    )
    assert (
        redone.batch.failed == 0
        and filter_posts([dump / "metadata"], dump, out, TagFilter(tags=frozenset({"solo"})), one).batch.counts["done"]
        == 0
    )


def test_filter_options(dump, tmp_path):
    def ids(criteria: TagFilter, **kw) -> list[int]:
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        filter_posts([dump / "metadata"], dump, out, criteria, RunOptions(workers=1), **kw)
        return [r["id"] for r in _manifest(out)]

    cat = frozenset({"cat"})
    assert ids(TagFilter(tags=cat, ratings=frozenset({"g", "s"}))) == [1001, 2001, 2002, 2006]
    assert ids(TagFilter(tags=cat, exclude_tags=frozenset({"monochrome"}))) == [1001, 1006, 2001, 2002, 2006]
    assert ids(TagFilter(any_tags=frozenset({"solo", "catgirl"}))) == [1002, 2001, 2005]
    assert ids(TagFilter(tags=cat, min_size=600)) == [1001, 1004, 2001, 2002, 2004, 2006]
    assert ids(TagFilter(tags=cat), max_files=2) == [1001, 1004]
    assert ids(TagFilter(tags=cat, include_deleted=True))[:3] == [1001, 1003, 1004]


def test_filter_shards_partition_and_link(dump, tmp_path):
    whole = tmp_path / "whole"
    filter_posts([dump / "metadata"], dump, whole, TagFilter(), RunOptions(workers=1))
    all_ids = [r["id"] for r in _manifest(whole)]
    parts = []
    for i in (1, 2, 3):
        out = tmp_path / "sharded"
        filter_posts([dump / "metadata"], dump, out, TagFilter(), RunOptions(workers=2, shard=(i, 3)), link=True)
        parts.append([r["id"] for r in _manifest(out, f"manifest.shard-{i}-of-3.jsonl")])
    assert sorted(sum(parts, [])) == sorted(all_ids) and len(sum(parts, [])) == len(all_ids)
    src = dump / "512px" / "0001" / "1001.jpg"
    assert os.stat(tmp_path / "sharded" / "0001" / "1001.jpg").st_ino == os.stat(src).st_ino


def test_filter_link_goes_past_a_killed_runs_temporary_file(dump, tmp_path):
    """A killed run's ``.NAME.PID.tmp``, under a process id used again, must not make the link fail."""
    out = tmp_path / "out"
    (out / "0001").mkdir(parents=True)
    leftover = out / "0001" / f".1001.jpg.{os.getpid()}.tmp"
    leftover.write_bytes(b"partial")
    report = filter_posts([dump / "metadata"], dump, out, TagFilter(), RunOptions(workers=1), link=True)
    assert report.batch.failed == 0
    assert os.stat(out / "0001" / "1001.jpg").st_ino == os.stat(dump / "512px" / "0001" / "1001.jpg").st_ino
    assert not leftover.exists()


def test_image_path_layouts():
    post = parse_post({"id": 123456, "file_ext": "png", "md5": "abc"})
    assert image_path(post, "/d") == Path("/d/512px/0456/123456.jpg")
    assert image_path(post, "/d", "original") == Path("/d/original/0456/123456.png")
    assert image_path(post, "/d", "original", "{root}/{md5}.{ext}") == Path("/d/abc.png")


@pytest.mark.parametrize("layout", ["{root}/{nope}", "{root}/{id[0]}", "{root}/{md5.upper.x}", "{root}/{"])
def test_a_bad_layout_is_one_error(dump, tmp_path, layout):
    with pytest.raises(MangacolorError, match="--layout .* is not a valid pattern"):
        filter_posts([dump / "metadata"], dump, tmp_path / "out", TagFilter(), RunOptions(workers=1), layout=layout)


def test_category_limits_required_tags_but_not_exclusions():
    post = parse_post(
        {"id": 7, "tag_string_character": "hatsune_miku", "tag_string_general": "comic 1girl", "rating": "g"}
    )
    miku = frozenset({"hatsune_miku"})
    in_character = TagFilter(tags=miku, categories=frozenset({"character"}))
    assert in_character.match(post)[0]
    # An excluded tag is looked up among all tags: a comic is out whatever --category says.
    no_comics = TagFilter(tags=miku, categories=frozenset({"character"}), exclude_tags=frozenset({"comic"}))
    assert no_comics.match(post) == (False, "excluded tag")
    flat = parse_post({"id": 8, "tag_string": "hatsune_miku 1girl"})  # no per-category strings
    assert in_character.match(flat) == (False, "no tag categories in the metadata")


def test_numbers_must_be_whole():
    assert parse_post({"id": "12", "image_width": "512.0", "image_height": 300.0}).width == 512
    assert parse_post({"id": 12, "image_height": 300.0}).height == 300
    assert parse_post({"id": 12, "image_width": "512.5"}).width is None
    with pytest.raises(ValueError, match="whole number"):
        parse_post({"id": 4.7})
    with pytest.raises(ValueError, match="whole number"):
        parse_post({"id": "abc"})


def test_extensionless_metadata_files_and_non_image_posts(tmp_path):
    meta = tmp_path / "metadata"
    meta.mkdir()
    records = [
        {"id": "5", "file_ext": "png", "tags": _old_tags(("cat", "0")), "rating": "s"},
        {"id": "6", "file_ext": "mp4", "tags": _old_tags(("cat", "0")), "rating": "s"},
        {"id": "7", "file_ext": "zip", "tags": _old_tags(("cat", "0")), "rating": "s"},
    ]
    (meta / "2017000000000001").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (meta / "README").write_text("not metadata\n")
    for post_id, ext in ((5, "png"), (6, "mp4"), (7, "zip")):
        path = tmp_path / "original" / f"{post_id:04d}" / f"{post_id}.{ext}"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    out = tmp_path / "out"
    report = filter_posts([meta], tmp_path, out, TagFilter(tags=frozenset({"cat"})), RunOptions(workers=1), "original")
    assert [r["id"] for r in _manifest(out)] == [5] and not report.malformed  # README was not read
    assert report.rejected["not an image (file_ext mp4)"] == 1 and report.rejected["not an image (file_ext zip)"] == 1


def test_corrupt_gzip_and_unwritable_output(dump, tmp_path):
    import gzip

    data = gzip.compress(("\n".join(OLD_LINES) + "\n").encode() * 50)
    broken = bytearray(data)
    for i in range(40, 60):
        broken[len(broken) // 2 + i] ^= 0xFF  # damage inside the deflate stream
    (tmp_path / "bad.jsonl.gz").write_bytes(bytes(broken))
    report = filter_posts([tmp_path / "bad.jsonl.gz"], dump, tmp_path / "out", TagFilter(), RunOptions(workers=1))
    assert report.batch.failed == 1 and report.batch.counts["done"] >= 1  # posts before the break are kept
    failure = report.batch.failures[0]
    assert failure.path.endswith("bad.jsonl.gz") and "cannot read further" in failure.reason
    assert not any("cannot read further" in m for m in report.malformed)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MangacolorError, match="afile: cannot create the output folder"):
        filter_posts([dump / "metadata"], dump, tmp_path / "afile", TagFilter(), RunOptions(workers=1))


def test_a_post_listed_twice_without_its_image_is_counted_once(dump, tmp_path):
    line = next(x for x in OLD_LINES if '"1005"' in x)
    meta = tmp_path / "twice.json"
    meta.write_text(line + "\n" + line + "\n")
    report = filter_posts([meta], dump, tmp_path / "out", TagFilter(), RunOptions(workers=1))
    assert report.batch.skip_reasons["image not in the dump"] == 1 and report.rejected["duplicate id"] == 1


def test_unknown_ending_matches_an_image_file_only(tmp_path):
    for name in ("12.json", "12.mp4", "12.webp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "13.png").mkdir()  # a folder named like an image is not a match either
    assert resolve_image(tmp_path / "12.*") == tmp_path / "12.webp"
    assert resolve_image(tmp_path / "13.*") is None


def _refuse_to_open(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make opening metadata files called ``name`` fail as an unreadable file does (tests run as root)."""
    from mangacolor.prepare import danbooru

    def fake_open(path, *args, **kwargs):
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(danbooru, "open", fake_open, raising=False)


def test_a_metadata_file_that_cannot_be_opened_fails_alone(dump, tmp_path, monkeypatch):
    _refuse_to_open(monkeypatch, "2020000000000000.json")
    out = tmp_path / "out"
    report = filter_posts([dump / "metadata"], dump, out, TagFilter(tags=frozenset({"cat"})), RunOptions(workers=1))
    assert report.batch.failed == 1
    failure = report.batch.failures[0]
    assert failure.path.endswith("2020000000000000.json") and "cannot open metadata file: Permission denied" in (
        failure.reason
    )
    assert [r["id"] for r in _manifest(out)] == [2001, 2002, 2004, 2006]  # the other file's posts
    summary = json.loads((out / "filter.json").read_text())
    assert summary["files"]["failed"] == 1 and summary["selected"] == 4


def test_an_unlistable_metadata_folder_fails_and_the_rest_is_read(dump, tmp_path, monkeypatch):
    from tests.conftest import deny_listing

    locked = dump / "metadata" / "locked"
    locked.mkdir()
    (locked / "more.jsonl").write_text(NEW_LINES[0] + "\n")
    deny_listing(monkeypatch, "locked")
    out = tmp_path / "out"
    report = filter_posts([dump / "metadata"], dump, out, TagFilter(tags=frozenset({"cat"})), RunOptions(workers=1))
    assert report.batch.failed == 1
    failure = report.batch.failures[0]
    assert failure.path == str(locked) and "cannot list metadata folder: Permission denied" in failure.reason
    assert len(_manifest(out)) == 7 and (out / "filter.json").is_file()
    records = list(read_metadata([dump / "metadata"]))
    assert [(r.file, r.line) for r in records if r.whole_file] == [(locked, 0)]


def test_crop_reports_metadata_it_cannot_read_and_crops_the_rest(dump, tmp_path, monkeypatch):
    import numpy as np

    from mangacolor.imageio import write_image
    from mangacolor.prepare.borders import CropConfig, crop_folder
    from tests.conftest import deny_listing

    boxed = np.zeros((32, 32, 3), np.uint8)
    boxed[8:24] = 200
    write_image(tmp_path / "in" / "2001.png", boxed)
    (dump / "metadata" / "locked").mkdir()
    deny_listing(monkeypatch, "locked")
    _refuse_to_open(monkeypatch, "2020000000000000.json")
    report = crop_folder(
        tmp_path / "in", tmp_path / "out", CropConfig(), RunOptions(workers=1), metadata=[dump / "metadata"]
    )
    assert report.counts["done"] == 1 and report.failed == 2
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert "cannot list metadata folder" in reasons["locked"]
    assert "cannot open metadata file" in reasons["2020000000000000.json"]


def test_manifest_and_summary_write_errors_are_one_error(dump, tmp_path, monkeypatch):
    import errno

    from mangacolor.errors import FileError

    cat = TagFilter(tags=frozenset({"cat"}))
    for name in ("manifest.jsonl", "filter.json"):  # a folder in the way
        out = tmp_path / name.split(".")[0]
        (out / name).mkdir(parents=True)
        with pytest.raises(FileError, match=rf"{name}: cannot write: Is a directory$"):
            filter_posts([dump / "metadata"], dump, out, cat, RunOptions(workers=1), link=True)
        assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".growing"))]  # no temporary file left

    class FullDisk:
        """A text file on a full disk: writes are buffered, the flush fails."""

        def __init__(self, fh):
            self._fh = fh

        def write(self, text):
            return len(text)

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._fh, name)

    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        fh = real_fdopen(fd, mode, *args, **kwargs)
        return FullDisk(fh) if mode == "w" else fh

    out = tmp_path / "full"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"id": 1}\n')
    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(FileError, match=r"manifest\.jsonl: cannot write: No space left on device$"):
        filter_posts([dump / "metadata"], dump, out, cat, RunOptions(workers=1), link=True)
    assert (out / "manifest.jsonl").read_text() == '{"id": 1}\n'  # the earlier manifest is kept whole
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".growing"))]

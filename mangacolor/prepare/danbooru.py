"""Danbooru dump metadata: parse both generations of post records and select posts by tags.

Two metadata generations exist (JSON lines, one post per line):

* Danbooru2017-2020 (gwern's releases): every value is a string; ``"tags"`` is a list of
  ``{"id", "name", "category"}`` with category ``"0"`` general, ``"1"`` artist, ``"3"`` copyright,
  ``"4"`` character, ``"5"`` meta; ``"rating"`` is ``s`` (safe), ``q`` or ``e``; ``image_width``,
  ``image_height``, ``file_ext``, ``is_deleted`` (``"true"`` / ``"false"``).
* Danbooru2021 and later (the Danbooru API's post objects): numeric ids, ``tag_string`` and
  ``tag_string_general`` / ``_artist`` / ``_copyright`` / ``_character`` / ``_meta``
  (space-separated), ``rating`` in ``g`` / ``s`` / ``q`` / ``e``, ``md5``, ``file_ext``, booleans.

Tags match exactly (``cat`` never matches ``catgirl``). Images live at
``<root>/<original|512px>/<id % 1000, 4 digits>/<id>.<ext>`` by default (the 512px subset is
always ``.jpg``).
"""

from __future__ import annotations

import errno
import gzip
import itertools
import json
import os
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mangacolor.errors import FileError, MangacolorError
from mangacolor.imageio import atomic_write_bytes, is_image_path, sweep_stale_temps
from mangacolor.prepare.runner import (
    Job,
    RunOptions,
    close_record,
    iter_results,
    make_output_root,
    record_settings,
    shard_of,
)
from mangacolor.report import BatchReport, FileResult

CATEGORIES = ("general", "artist", "copyright", "character", "meta")
"""Tag categories, named as in the Danbooru API."""

_CATEGORY_BY_NUMBER = {"0": "general", "1": "artist", "3": "copyright", "4": "character", "5": "meta"}

RATINGS = ("g", "s", "q", "e")
"""Rating letters: general, sensitive (``s`` was "safe" before 2021), questionable, explicit."""

_RATING_WORDS = {"general": "g", "safe": "s", "sensitive": "s", "questionable": "q", "explicit": "e"}

DEFAULT_LAYOUT = "{root}/{subset}/{bucket}/{id}.{ext}"
"""Where a post's image lies; fields: root, subset (``original`` / ``512px``), bucket (id % 1000,
four digits), id, ext, md5."""

METADATA_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


class MalformedPost(ValueError):
    """A metadata line that is not a usable post record."""


@dataclass(frozen=True)
class Post:
    """One post, in the same form for both metadata generations.

    Attributes:
        id: post id.
        tags: every tag name.
        tags_by_category: tag names per category (empty when the metadata has no categories).
        rating: rating letter (``g``, ``s``, ``q``, ``e``) or ``None`` when missing or unknown.
        width, height: original image size, or ``None`` when missing.
        file_ext: original file ending without the dot, or ``None``.
        md5: the file's MD5, or ``None``.
        is_deleted: the post was deleted.
    """

    id: int
    tags: frozenset[str] = frozenset()
    tags_by_category: dict[str, frozenset[str]] = field(default_factory=dict)
    rating: str | None = None
    width: int | None = None
    height: int | None = None
    file_ext: str | None = None
    md5: str | None = None
    is_deleted: bool = False


def _int(value: Any, name: str, required: bool = False) -> int | None:
    if value is None or value == "":
        if required:
            raise MalformedPost(f"missing {name!r}")
        return None
    if isinstance(value, bool):
        raise MalformedPost(f"{name!r} is not a number: {value!r}")
    try:
        number = float(value) if isinstance(value, str) and not value.strip().lstrip("+-").isdigit() else value
        if isinstance(number, float) and not number.is_integer():
            raise ValueError(number)
        return int(number)
    except (TypeError, ValueError, OverflowError):
        if required:
            raise MalformedPost(f"{name!r} is not a whole number: {value!r}") from None
        return None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "t", "1", "yes")
    return bool(value)


def _rating(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    v = _RATING_WORDS.get(v, v)
    return v if v in RATINGS else None


def _split_tags(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    return frozenset()


def parse_post(record: Any) -> Post:
    """A post from one decoded metadata record of either generation.

    Missing optional fields become ``None`` (or empty tags); an unknown rating becomes ``None``.

    Raises:
        MalformedPost: not an object, or no usable ``id``.
    """
    if not isinstance(record, dict):
        raise MalformedPost(f"expected a JSON object, got {type(record).__name__}")
    post_id = _int(record.get("id"), "id", required=True)
    assert post_id is not None
    if post_id < 0:
        raise MalformedPost(f"negative id {post_id}")
    by_category: dict[str, set[str]] = {}
    if isinstance(record.get("tags"), list):  # Danbooru2017-2020
        names = set()
        for tag in record["tags"]:
            if isinstance(tag, dict) and isinstance(tag.get("name"), str):
                names.add(tag["name"])
                category = _CATEGORY_BY_NUMBER.get(str(tag.get("category", "")))
                if category:
                    by_category.setdefault(category, set()).add(tag["name"])
            elif isinstance(tag, str):
                names.add(tag)
        tags = frozenset(names)
    else:  # Danbooru2021+ (API style)
        for category in CATEGORIES:
            found = _split_tags(record.get(f"tag_string_{category}"))
            if found:
                by_category[category] = set(found)
        tags = _split_tags(record.get("tag_string"))
        if not tags and by_category:
            tags = frozenset().union(*by_category.values())
    ext = record.get("file_ext")
    md5 = record.get("md5")
    return Post(
        id=post_id,
        tags=tags,
        tags_by_category={k: frozenset(v) for k, v in by_category.items()},
        rating=_rating(record.get("rating")),
        width=_int(record.get("image_width"), "image_width"),
        height=_int(record.get("image_height"), "image_height"),
        file_ext=ext.strip().lower().lstrip(".") or None if isinstance(ext, str) else None,
        md5=md5 if isinstance(md5, str) and md5 else None,
        is_deleted=_bool(record.get("is_deleted", False)),
    )


@dataclass(frozen=True)
class MetadataLine:
    """One line of a metadata file: a post, or why it could not be read."""

    file: Path
    line: int
    post: Post | None
    error: str = ""

    @property
    def whole_file(self) -> bool:
        """The error is about the whole file or folder (line 0): it could not be opened, read to its end or listed."""
        return self.line == 0

    @property
    def where(self) -> str:
        """``file:line`` for messages."""
        return f"{self.file}:{self.line}"


def _is_metadata_name(name: str) -> bool:
    # Danbooru2017-2020 name their metadata files by number alone (e.g. ``2019000000000000``).
    return name.endswith(METADATA_SUFFIXES) or name.isdigit()


def metadata_files(paths: Iterable[str | Path], on_error: Callable[[Path, str], None] | None = None) -> list[Path]:
    """The metadata files named by ``paths``, sorted.

    Folders are searched for ``*.json``, ``*.jsonl`` (optionally ``.gz``) and the all-digit names of
    the 2017-2020 releases.

    Args:
        paths: metadata files and folders.
        on_error: called with a sub-folder that cannot be listed and the reason, and the search
            goes on; without it such a folder raises.

    Raises:
        MangacolorError: a path does not exist or a folder given cannot be listed (or a
            sub-folder, without ``on_error``), or no metadata file was found.
    """
    paths = list(paths)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(_walk_metadata(p, on_error)))
        elif p.is_file():
            files.append(p)
        else:
            raise MangacolorError(f"{p}: no such metadata file or folder")
    if not files:
        raise MangacolorError(
            f"no metadata files (*.json, *.jsonl, optionally .gz, or all-digit names) in {', '.join(map(str, paths))}"
        )
    return files


def _walk_metadata(root: Path, on_error: Callable[[Path, str], None] | None) -> Iterator[Path]:
    """The metadata files under ``root``; links to folders are not followed (as ``Path.rglob``)."""
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            reason = f"cannot list metadata folder: {exc.strerror or type(exc).__name__}; the files in it were not read"
            if on_error is None or folder == root:
                raise MangacolorError(f"{folder}: {reason}") from None
            on_error(folder, reason)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif _is_metadata_name(entry.name) and entry.is_file():
                    yield Path(entry.path)
            except OSError:  # vanished or unreadable entry: not a metadata file
                continue


def _open_text(path: Path) -> TextIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_metadata(paths: Iterable[str | Path]) -> Iterator[MetadataLine]:
    """Stream every non-blank line of the metadata files as a post or an error (never raises per line).

    A file or sub-folder that cannot be read as a whole (it cannot be opened, a ``.gz`` breaks off,
    a folder cannot be listed) gives one record with line number 0 and the reason, and the stream
    goes on with the next file.

    Raises:
        MangacolorError: a path given does not exist or cannot be listed, or no metadata file was found.
    """
    unlisted: list[tuple[Path, str]] = []
    files = metadata_files(paths, on_error=lambda folder, reason: unlisted.append((folder, reason)))
    for folder, reason in unlisted:
        yield MetadataLine(folder, 0, None, reason)
    for path in files:
        try:
            fh = _open_text(path)
        except OSError as exc:
            yield MetadataLine(
                path, 0, None, f"cannot open metadata file: {exc.strerror or exc}; none of its posts were read"
            )
            continue
        with fh:
            try:
                for number, text in enumerate(fh, start=1):
                    text = text.strip()
                    if not text:
                        continue
                    try:
                        record = json.loads(text)
                    except json.JSONDecodeError as exc:
                        yield MetadataLine(path, number, None, f"invalid JSON: {exc.msg} at column {exc.colno}")
                        continue
                    try:
                        yield MetadataLine(path, number, parse_post(record))
                    except MalformedPost as exc:
                        yield MetadataLine(path, number, None, str(exc))
            except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt .gz and the like
                yield MetadataLine(path, 0, None, f"cannot read further: {exc}; the posts after the break are missing")


@dataclass(frozen=True)
class TagFilter:
    """Which posts to keep.

    Attributes:
        tags: every one of these tags is required.
        any_tags: at least one of these is required (when given).
        exclude_tags: none of these may be present.
        ratings: allowed rating letters (empty: any, including unknown).
        min_size: the original's short side must be at least this (0: any; unknown size fails).
        categories: look the required (``tags``) and ``any_tags`` up only in these categories (empty: all
            tags); excluded tags are always looked up among all of a post's tags.
        include_deleted: keep deleted posts too (off: deleted posts are skipped).
    """

    tags: frozenset[str] = frozenset()
    any_tags: frozenset[str] = frozenset()
    exclude_tags: frozenset[str] = frozenset()
    ratings: frozenset[str] = frozenset()
    min_size: int = 0
    categories: frozenset[str] = frozenset()
    include_deleted: bool = False

    def __post_init__(self) -> None:
        bad = set(self.ratings) - set(RATINGS)
        if bad:
            raise MangacolorError(f"--rating must be among {', '.join(RATINGS)}. Got {', '.join(sorted(bad))}")
        bad = set(self.categories) - set(CATEGORIES)
        if bad:
            raise MangacolorError(f"--category must be among {', '.join(CATEGORIES)}. Got {', '.join(sorted(bad))}")

    def to_json(self) -> dict[str, Any]:
        """The criteria as JSON (sorted lists), for the manifest."""
        return {
            "tags": sorted(self.tags),
            "any_tags": sorted(self.any_tags),
            "exclude_tags": sorted(self.exclude_tags),
            "ratings": sorted(self.ratings),
            "min_size": self.min_size,
            "categories": sorted(self.categories),
            "include_deleted": self.include_deleted,
        }

    def _searched(self, post: Post) -> frozenset[str]:
        if not self.categories:
            return post.tags
        return frozenset().union(*(post.tags_by_category.get(c, frozenset()) for c in self.categories))

    def match(self, post: Post) -> tuple[bool, str | dict[str, list[str]]]:
        """Whether ``post`` passes, with the reason it does not or the tags that made it pass.

        Returns:
            ``(True, {"tags": [...], "any_tags": [...]})`` or ``(False, "reason")``.
        """
        if post.is_deleted and not self.include_deleted:
            return False, "deleted"
        if self.ratings and post.rating not in self.ratings:
            return False, "rating" if post.rating else "rating unknown"
        if self.min_size:
            if post.width is None or post.height is None:
                return False, "size unknown"
            if min(post.width, post.height) < self.min_size:
                return False, "too small"
        if self.exclude_tags & post.tags:
            return False, "excluded tag"
        if self.categories and not post.tags_by_category and (self.tags or self.any_tags):
            return False, "no tag categories in the metadata"
        searched = self._searched(post)
        if not self.tags <= searched:
            return False, "missing a required tag"
        hits = sorted(self.any_tags & searched)
        if self.any_tags and not hits:
            return False, "none of the --any-tag tags"
        return True, {"tags": sorted(self.tags), "any_tags": hits}


def image_path(post: Post, root: str | Path, subset: str = "512px", layout: str = DEFAULT_LAYOUT) -> Path:
    """Where a post's image lies in the dump.

    The 512px subset is always ``.jpg``; for ``original`` the metadata's ``file_ext`` is used
    (``"*"`` when it is missing, to be resolved by :func:`resolve_image`).
    """
    ext = "jpg" if subset == "512px" else (post.file_ext or "*")
    return Path(
        layout.format(
            root=str(root).rstrip("/") or "/",
            subset=subset,
            bucket=f"{post.id % 1000:04d}",
            id=post.id,
            ext=ext,
            md5=post.md5 or "",
        )
    )


def resolve_image(path: Path) -> Path | None:
    """``path`` if it exists; for an unknown ending (``<id>.*``) the first image file that matches; else ``None``."""
    if path.suffix == ".*":
        found = sorted(path.parent.glob(path.name)) if path.parent.is_dir() else []
        matches = [p for p in found if is_image_path(p) and p.is_file()]  # not <id>.mp4 or <id>.json
        return matches[0] if matches else None
    return path if path.is_file() else None


# ----------------------------------------------------------------------------- the filter stage


@dataclass(frozen=True)
class CopyTask:
    """Copy (or hard-link) a post's image into the output folder, atomically."""

    link: bool = False

    def __call__(self, job: Job) -> FileResult:
        src, dst = Path(job.source), Path(job.outputs[0])
        if self.link:
            dst.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale_temps(dst.parent)
            tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
            try:
                tmp.unlink(missing_ok=True)  # a killed run's, under a process id used again
                os.link(src, tmp)
                os.replace(tmp, dst)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                reason = exc.strerror or str(exc)
                if exc.errno == errno.EXDEV:
                    reason = "cannot hard-link across file systems; copy instead (leave out --link)"
                raise FileError(src, f"cannot link to {dst}: {reason}") from None
        else:
            try:
                data = src.read_bytes()
            except OSError as exc:
                raise FileError(src, f"cannot read: {exc.strerror or exc}") from None
            try:
                atomic_write_bytes(dst, data)
            except OSError as exc:
                raise FileError(dst, f"cannot write: {exc.strerror or exc}") from None
        return FileResult(job.source, "done", outputs=[str(dst)])


@dataclass
class FilterReport:
    """Outcome of ``prepare filter``.

    Attributes:
        batch: per-file outcomes of the copies (posts whose image is missing are ``skipped``).
        lines: metadata lines read (blank lines not counted).
        malformed: ``"file:line: reason"`` of every line that is not a usable post.
        rejected: why posts were not selected, counted.
        selected: posts that passed the filter and whose image is in the output.
        manifest: the manifest file written.
    """

    batch: BatchReport = field(default_factory=BatchReport)
    lines: int = 0
    malformed: list[str] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    selected: int = 0
    manifest: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "lines": self.lines,
            "malformed": len(self.malformed),
            "rejected": dict(sorted(self.rejected.items())),
            "selected": self.selected,
            "manifest": str(self.manifest) if self.manifest else None,
            "files": self.batch.to_json(),
        }


def filter_posts(
    metadata: list[str | Path],
    image_root: str | Path,
    output_root: str | Path,
    criteria: TagFilter,
    options: RunOptions | None = None,
    subset: str = "512px",
    layout: str = DEFAULT_LAYOUT,
    link: bool = False,
    max_files: int | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    on_malformed: Callable[[str], None] | None = None,
) -> FilterReport:
    """``prepare filter``: select posts of a Danbooru dump and copy their images into ``output_root``.

    Streams the metadata once; images go to ``OUT/<id % 1000, 4 digits>/<id>.<ext>``. Writes
    ``OUT/manifest.jsonl`` (one line per selected post: id, md5, size, rating, output file, the
    metadata line it came from and the tags that matched) and ``OUT/filter.json`` (the criteria and
    counts, with every malformed line as ``file:line: reason``). With ``--shard i/n`` the names
    become ``manifest.shard-i-of-n.jsonl`` etc. A metadata file that cannot be opened or read to
    its end, and a metadata sub-folder that cannot be listed, are failed results of their own; the
    rest is read and both files are written.

    Args:
        metadata: metadata files or folders.
        image_root: root of the dump (holding ``original/`` and / or ``512px/``).
        output_root: output folder.
        criteria: which posts to keep.
        options: workers, shard (by post id), overwrite.
        subset: ``512px`` or ``original`` (the ``{subset}`` of ``layout``).
        layout: where images lie, see :data:`DEFAULT_LAYOUT`.
        link: hard-link instead of copying.
        max_files: stop after this many selected posts (of this shard).
        on_result: called with each copied file's outcome.
        on_malformed: called with ``"file:line: reason"`` for each malformed metadata line.

    Raises:
        MangacolorError: bad options, no metadata, or an unusable output folder (before any copy).
        FileError: ``manifest.jsonl`` or ``filter.json`` cannot be written.
    """
    options = options or RunOptions()
    output_root = Path(output_root)
    if max_files is not None and max_files < 1:
        raise MangacolorError(f"--max-files must be >= 1. Got {max_files}")
    try:
        layout.format(root="", subset="", bucket="", id=0, ext="", md5="")
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise MangacolorError(f"--layout {layout!r} is not a valid pattern ({exc}); fields: {_LAYOUT_FIELDS}") from None
    unlisted: list[tuple[Path, str]] = []
    files = metadata_files(metadata, on_error=lambda folder, reason: unlisted.append((folder, reason)))
    shard_index, shard_count = options.shard
    suffix = "" if shard_count == 1 else f".shard-{shard_index}-of-{shard_count}"
    report = FilterReport(manifest=output_root / f"manifest{suffix}.jsonl")
    records: dict[int, dict[str, Any]] = {}  # only the jobs in flight: popped as results arrive

    def jobs() -> Iterator[Job]:
        wanted = 0
        seen: set[int] = set()  # one int per selected post: a dump may list a post twice
        folder_errors = (MetadataLine(folder, 0, None, reason) for folder, reason in unlisted)
        for line in itertools.chain(folder_errors, read_metadata(files)):
            if line.whole_file:  # a file or folder could not be read (to its end): the selection is partial
                result = FileResult(str(line.file), "failed", line.error)
                report.batch.add(result)
                if on_result is not None:
                    on_result(result)
                continue
            report.lines += 1
            if line.post is None:
                message = f"{line.where}: {line.error}"
                report.malformed.append(message)
                if on_malformed is not None:
                    on_malformed(message)
                continue
            post = line.post
            if shard_of(str(post.id), shard_count) != shard_index:
                continue
            ok, why = criteria.match(post)
            if ok and post.id in seen:
                ok, why = False, "duplicate id"
            if not ok:
                report.rejected[str(why)] += 1
                continue
            seen.add(post.id)
            if subset != "512px" and post.file_ext and not is_image_path(f"x.{post.file_ext}"):
                report.rejected[f"not an image (file_ext {post.file_ext})"] += 1  # videos, zips, flash
                continue
            expected = image_path(post, image_root, subset, layout)
            src = resolve_image(expected)
            if src is None:
                result = FileResult(str(expected), "skipped", "image not in the dump")
                report.batch.add(result)
                if on_result is not None:
                    on_result(result)
                continue
            dst = output_root / f"{post.id % 1000:04d}" / f"{post.id}{src.suffix.lower()}"
            records[post.id] = {
                "id": post.id,
                "md5": post.md5,
                "file": dst.relative_to(output_root).as_posix(),
                "image_width": post.width,
                "image_height": post.height,
                "rating": post.rating,
                "file_ext": post.file_ext,
                "metadata": line.where,
                "matched": why,
            }
            yield Job(str(src), (str(dst),), str(post.id), post.id)
            wanted += 1
            if max_files is not None and wanted >= max_files:
                return

    make_output_root(output_root)
    # another subset, layout or selection into the folder would keep the earlier copies as done
    settings = {"subset": subset, "layout": layout, "criteria": criteria.to_json()}
    recorded = record_settings(output_root, "filter", settings, options.overwrite)
    unsharded = RunOptions(workers=options.workers, overwrite=options.overwrite, chunksize=options.chunksize)
    manifest = _AtomicTextFile(report.manifest)
    try:
        for job, result in iter_results(jobs(), CopyTask(link), unsharded):
            record = records.pop(job.payload)
            report.batch.add(result)
            if on_result is not None:
                on_result(result)
            if result.status in ("done", "skipped"):
                report.selected += 1
                manifest.write(json.dumps(record, sort_keys=True) + "\n")
        manifest.commit()
    finally:
        manifest.discard()
    # the copies a failed post keeps are not looked for: that would read the whole metadata again
    close_record(recorded, report.batch, output_root, lambda: ())
    summary = {
        "criteria": criteria.to_json(),
        "metadata": [str(f) for f in files],
        "image_root": str(image_root),
        "subset": subset,
        "layout": layout,
        "max_files": max_files,
        "shard": f"{shard_index}/{shard_count}",
        **report.to_json(),
        "malformed_lines": report.malformed,
    }
    summary_path = output_root / f"filter{suffix}.json"
    try:
        atomic_write_bytes(summary_path, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        raise FileError(summary_path, f"cannot write: {exc.strerror or exc}") from None
    return report


class _AtomicTextFile:
    """A UTF-8 text file written through a temporary file beside it and a rename on :meth:`commit`.

    Until then an earlier file of that name is untouched; any failure to write (a folder in the
    way, a full disk) is a :class:`FileError` naming the file, and the temporary file is removed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp: str | None = None
        try:
            # open for the whole scan of a dump (minutes to hours, flushed now and then): not a ``.tmp``
            # name, which a shard writing into the same folder would sweep once it is 2 minutes old
            fd, self._tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".growing", dir=path.parent)
            self._fh: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        except OSError as exc:
            self.discard()
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> FileError:
        return FileError(self.path, f"cannot write: {exc.strerror or exc}")

    def write(self, text: str) -> None:
        """Append ``text``."""
        try:
            self._fh.write(text)
        except OSError as exc:
            raise self._error(exc) from None

    def commit(self) -> None:
        """Flush to disk and rename over ``path``."""
        assert self._tmp is not None
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.chmod(self._tmp, 0o644)  # mkstemp makes 0600
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise self._error(exc) from None
        self._tmp = None

    def discard(self) -> None:
        """Close and remove the temporary file (nothing once committed)."""
        if self._tmp is None:
            return
        try:
            self._fh.close()  # a failing flush (a full disk) still closes the file
        except (OSError, AttributeError):
            pass
        Path(self._tmp).unlink(missing_ok=True)
        self._tmp = None


_LAYOUT_FIELDS = "{root}, {subset}, {bucket}, {id}, {ext}, {md5}"

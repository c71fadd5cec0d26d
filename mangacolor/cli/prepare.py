"""``mangacolor prepare``: dataset-building stages (filter, crop, lines, pair, hconcat, split)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from mangacolor.cli._common import (
    NO_IMAGES,
    batch_progress,
    choice_option,
    console,
    echo_paths,
    exit_for,
    guarded,
    output_format_option,
    print_summary,
)
from mangacolor.errors import MangacolorError
from mangacolor.prepare.borders import BORDER_COLORS
from mangacolor.prepare.danbooru import DEFAULT_LAYOUT
from mangacolor.prepare.lines import METHODS
from mangacolor.report import BatchReport, FileLog, FileResult

prepare_app = typer.Typer(
    name="prepare",
    help="Build training data: select, crop, extract lines, pair, join and split images.",
    no_args_is_help=True,
)

Workers = Annotated[int | None, typer.Option(min=1, help="Worker processes (default: all cores).")]
Shard = Annotated[str | None, typer.Option(help="Do only shard i of n (e.g. 2/4) to split a job across machines.")]
Overwrite = Annotated[bool, typer.Option(help="Redo files whose output exists (default: skip them).")]
Quality = Annotated[int, typer.Option(min=1, max=100, help="JPEG / WebP quality.")]
AsJson = Annotated[
    bool,
    typer.Option(
        "--json", help="Print a JSON summary (counts, failures, every file's outcome) on stdout instead of paths."
    ),
]

SHOW_AT_MOST = 20
"""Unmatched / malformed entries printed on the console (all of them go to a file)."""


def _resize_option(value: str | None) -> str | None:
    """``--resize``: checked while the options are read, so a bad value is a usage error before any work.

    Raises:
        typer.BadParameter: not ``WxH`` or ``N`` with sides in range.
    """
    from mangacolor.prepare.pair import RESIZE_FORMAT, parse_size

    try:
        parse_size(value)
    except MangacolorError:
        raise typer.BadParameter(f"must be {RESIZE_FORMAT}. Got {value!r}") from None
    return value


def _options(workers: int | None, shard: str | None, overwrite: bool):
    from mangacolor.prepare.runner import RunOptions, parse_shard

    return RunOptions(workers=workers, shard=parse_shard(shard), overwrite=overwrite)


class _Reporter:
    """Progress bar on stderr; output paths on stdout, or with ``--json`` every file's outcome kept."""

    def __init__(self, advance: Callable[[], None], as_json: bool, keep_files: bool) -> None:
        self.advance, self.as_json = advance, as_json
        self.files = FileLog(as_json and keep_files)

    def __call__(self, result: FileResult) -> None:
        self.advance()
        self.files.add(result)
        if not self.as_json and result.status == "done":
            echo_paths(result.outputs)


def _no_pairs(output: Path) -> str:
    return f"no pairs matched by name (see {output / 'unmatched.txt'})"


def _finish(
    report: BatchReport,
    title: str,
    reporter: _Reporter,
    extra: dict[str, Any] | None = None,
    empty: str | None = NO_IMAGES,
) -> None:
    print_summary(report, title, empty)
    if reporter.as_json:
        typer.echo(json.dumps({**report.to_json(), **(extra or {}), **reporter.files.to_json()}, indent=2))
    exit_for(report)


def _run(name: str, as_json: bool, body, keep_files: bool = True) -> tuple[Any, _Reporter]:
    """Run ``body(on_result)`` under a progress bar; its result and the reporter (for ``_finish``)."""
    with batch_progress(name) as advance:
        reporter = _Reporter(advance, as_json, keep_files)
        return body(reporter), reporter


def _show_unmatched(matching: Any, labels: tuple[str, str], listing: Path) -> dict[str, Any]:
    sides = ((labels[0], matching.unmatched_a), (labels[1], matching.unmatched_b), ("ambiguous", matching.ambiguous))
    for label, items in sides:
        if not items:
            continue
        console.print(
            f"[yellow]{len(items)} {label} file(s) without a partner[/]"
            if label != "ambiguous"
            else f"[yellow]{len(items)} name(s) with several files on one side, left out[/]"
        )
        for item in items[:SHOW_AT_MOST]:
            console.print(f"  {escape(str(item))}", highlight=False, soft_wrap=True)
        if len(items) > SHOW_AT_MOST:
            console.print(f"  ... all listed in {escape(str(listing))}", highlight=False)
    return {
        f"unmatched_{labels[0]}": len(matching.unmatched_a),
        f"unmatched_{labels[1]}": len(matching.unmatched_b),
        "ambiguous": len(matching.ambiguous),
    }


@prepare_app.command("filter")
@guarded
def filter_cmd(
    root: Annotated[Path, typer.Argument(help="Root of the Danbooru dump (holding 512px/ or original/).")],
    output: Annotated[Path, typer.Argument(help="Output folder: images, manifest.jsonl, filter.json.")],
    metadata: Annotated[
        list[Path] | None,
        typer.Option(
            "--metadata",
            help="Metadata file or folder (*.json, *.jsonl, optionally .gz); repeatable. Default: ROOT/metadata.",
        ),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Required tag (exact); repeatable: all needed.")
    ] = None,
    any_tag: Annotated[
        list[str] | None, typer.Option("--any-tag", help="At least one of these tags; repeatable.")
    ] = None,
    exclude_tag: Annotated[list[str] | None, typer.Option("--exclude-tag", help="Reject posts with this tag.")] = None,
    rating: Annotated[
        list[str] | None, typer.Option("--rating", help="Allowed rating g, s, q or e; repeatable (default: any).")
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category", help="Match tags only in this category (general, artist, copyright, character, meta)."
        ),
    ] = None,
    min_size: Annotated[int, typer.Option(min=0, help="Original's short side at least this (metadata size).")] = 0,
    max_files: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many selected posts (per shard with --shard).")
    ] = None,
    subset: Annotated[str, typer.Option(help="512px or original.")] = "512px",
    layout: Annotated[str, typer.Option(help="Image path pattern.")] = DEFAULT_LAYOUT,
    include_deleted: Annotated[bool, typer.Option(help="Keep deleted posts too.")] = False,
    link: Annotated[bool, typer.Option(help="Hard-link instead of copying (same file system).")] = False,
    workers: Workers = None,
    shard: Shard = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Select Danbooru posts by tags and copy their images; writes manifest.jsonl."""
    from mangacolor.prepare.danbooru import TagFilter, filter_posts

    criteria = TagFilter(
        tags=frozenset(tag or ()),
        any_tags=frozenset(any_tag or ()),
        exclude_tags=frozenset(exclude_tag or ()),
        ratings=frozenset(r.lower() for r in rating or ()),
        min_size=min_size,
        categories=frozenset(c.lower() for c in category or ()),
        include_deleted=include_deleted,
    )
    if subset not in ("512px", "original"):
        raise MangacolorError(f"--subset must be 512px or original. Got {subset!r}")
    shown = []

    def on_malformed(message: str) -> None:
        shown.append(message)
        if len(shown) <= SHOW_AT_MOST:
            console.print(f"[yellow]malformed:[/] {escape(message)}", highlight=False, soft_wrap=True)

    report, reporter = _run(
        "filter",
        as_json,
        lambda on_result: filter_posts(
            metadata or [root / "metadata"],
            root,
            output,
            criteria,
            _options(workers, shard, overwrite),
            subset=subset,
            layout=layout,
            link=link,
            max_files=max_files,
            on_result=on_result,
            on_malformed=on_malformed,
        ),
        keep_files=False,  # a dump has millions of posts: the selected ones are in the manifest
    )
    if len(report.malformed) > SHOW_AT_MOST:
        console.print(f"[yellow]... {len(report.malformed)} malformed lines in all, listed in filter.json[/]")
    console.print(
        f"{report.lines} metadata lines, {len(report.malformed)} malformed, {report.selected} posts selected; "
        f"manifest: {escape(str(report.manifest))}",
        highlight=False,
    )
    for reason, n in sorted(report.rejected.items()):
        console.print(f"not selected {n}: {escape(reason)}", highlight=False)
    _finish(
        report.batch,
        "prepare filter",
        reporter,
        {"filter": {k: v for k, v in report.to_json().items() if k != "files"}},
        empty=None,  # the line above already says how many posts were selected
    )


@prepare_app.command("crop")
@guarded
def crop_cmd(
    input: Annotated[Path, typer.Argument(help="Image or folder (searched recursively).")],
    output: Annotated[Path, typer.Argument(help="Output folder (mirrors the input tree).")],
    color: Annotated[
        str, typer.Option(callback=choice_option(BORDER_COLORS), help="Padding to remove: both, black or white.")
    ] = "both",
    tolerance: Annotated[int, typer.Option(min=0, max=254, help="Largest difference from pure black/white.")] = 24,
    min_size: Annotated[int, typer.Option(min=0, help="Drop images whose short side is smaller after cropping.")] = 0,
    size: Annotated[int | None, typer.Option(min=1, help="Shrink the long side to this (area filter).")] = None,
    metadata: Annotated[
        list[Path] | None,
        typer.Option(
            "--metadata", help="Danbooru metadata or manifest.jsonl: undo the letterbox from the original size."
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", callback=output_format_option, help="same, png, jpg or webp.")
    ] = "same",
    quality: Quality = 95,
    workers: Workers = None,
    shard: Shard = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Remove uniform black or white borders (letterboxes), optionally shrink."""
    from mangacolor.prepare.borders import CropConfig, crop_folder

    try:
        config = CropConfig(color=color, tolerance=tolerance, min_size=min_size, size=size)
    except ValueError as exc:
        raise MangacolorError(str(exc)) from None
    report, reporter = _run(
        "crop",
        as_json,
        lambda on_result: crop_folder(
            input, output, config, _options(workers, shard, overwrite), output_format, quality, metadata, on_result
        ),
    )
    _finish(report, "prepare crop", reporter)


@prepare_app.command("lines")
@guarded
def lines_cmd(
    input: Annotated[Path, typer.Argument(help="Colour image or folder (searched recursively).")],
    output: Annotated[Path, typer.Argument(help="Output folder (mirrors the input tree).")],
    method: Annotated[
        str,
        typer.Option(
            callback=choice_option(METHODS, {"gray": " (for the greyscale page use --gray)"}),
            help="blur, sketch or xdog.",
        ),
    ] = "sketch",
    gray: Annotated[bool, typer.Option("--gray", help="Write the luma (greyscale page) instead of lines.")] = False,
    sigma: Annotated[float | None, typer.Option(help="Gaussian sigma (default: blur 4, sketch 3, xdog 0.8).")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="sketch: clip responses below this share of the max (0.1); xdog: binarise at this level."),
    ] = None,
    k: Annotated[float | None, typer.Option(help="xdog: ratio of the two Gaussians (1.6).")] = None,
    tau: Annotated[float | None, typer.Option(help="xdog: weight of the wide Gaussian (0.98).")] = None,
    phi: Annotated[float | None, typer.Option(help="xdog: steepness of the soft threshold (200).")] = None,
    epsilon: Annotated[float | None, typer.Option(help="xdog: threshold level (0.0).")] = None,
    output_format: Annotated[
        str, typer.Option("--format", callback=output_format_option, help="png, jpg, webp or same.")
    ] = "png",
    quality: Quality = 95,
    workers: Workers = None,
    shard: Shard = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Extract line art (dark lines on white) from colour images."""
    from mangacolor.prepare.lines import LinesConfig, lines_folder

    given = {"sigma": sigma, "threshold": threshold, "k": k, "tau": tau, "phi": phi, "epsilon": epsilon}
    params = {name: value for name, value in given.items() if value is not None}
    mode = "gray" if gray else method
    try:
        config = LinesConfig(mode, params)
    except ValueError as exc:
        raise MangacolorError(f"{'--gray' if gray else '--method ' + mode}: {exc}") from None
    report, reporter = _run(
        "lines",
        as_json,
        lambda on_result: lines_folder(
            input, output, config, _options(workers, shard, overwrite), output_format, quality, on_result
        ),
    )
    _finish(report, "prepare lines", reporter)


@prepare_app.command("pair")
@guarded
def pair_cmd(
    bw: Annotated[Path, typer.Argument(help="Folder of greyscale pages.")],
    color: Annotated[Path, typer.Argument(help="Folder of colour pages with the same names.")],
    output: Annotated[Path, typer.Argument(help="Output folder: A/ (greyscale), B/ (colour), unmatched.txt.")],
    resize: Annotated[
        str | None,
        typer.Option(
            callback=_resize_option,
            help="WxH for both, or N for a long side, at most 16384 (default: greyscale to the colour size).",
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", callback=output_format_option, help="png, jpg, webp or same.")
    ] = "png",
    quality: Quality = 95,
    workers: Workers = None,
    shard: Shard = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Pair greyscale and colour pages that share a name stem into OUT/A and OUT/B."""
    from mangacolor.prepare.pair import pair_folders, parse_size

    size = parse_size(resize)
    result, reporter = _run(
        "pair",
        as_json,
        lambda on_result: pair_folders(
            bw, color, output, _options(workers, shard, overwrite), size, output_format, quality, on_result
        ),
    )
    extra = _show_unmatched(result.matching, ("bw", "color"), output / "unmatched.txt")
    _finish(result.batch, "prepare pair", reporter, extra, empty=_no_pairs(output))


@prepare_app.command("hconcat")
@guarded
def hconcat_cmd(
    a: Annotated[Path, typer.Argument(help="Folder of inputs A (e.g. OUT/A of prepare pair).")],
    b: Annotated[Path, typer.Argument(help="Folder of targets B with the same names.")],
    output: Annotated[Path, typer.Argument(help="Output folder of side-by-side A|B images.")],
    output_format: Annotated[
        str, typer.Option("--format", callback=output_format_option, help="png, jpg, webp or same.")
    ] = "png",
    quality: Quality = 95,
    workers: Workers = None,
    shard: Shard = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Join A and B side by side (pix2pix's aligned format)."""
    from mangacolor.prepare.aligned import hconcat_folders

    result, reporter = _run(
        "hconcat",
        as_json,
        lambda on_result: hconcat_folders(
            a, b, output, _options(workers, shard, overwrite), output_format, quality, on_result
        ),
    )
    extra = _show_unmatched(result.matching, ("A", "B"), output / "unmatched.txt")
    _finish(result.batch, "prepare hconcat", reporter, extra, empty=_no_pairs(output))


@prepare_app.command("split")
@guarded
def split_cmd(
    input: Annotated[Path, typer.Argument(help="A|B image or folder of them.")],
    output: Annotated[Path, typer.Argument(help="Output folder: A/ and B/.")],
    output_format: Annotated[
        str, typer.Option("--format", callback=output_format_option, help="png, jpg, webp or same.")
    ] = "png",
    quality: Quality = 95,
    workers: Workers = None,
    shard: Shard = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Cut side-by-side A|B images back into OUT/A and OUT/B."""
    from mangacolor.prepare.aligned import split_folder

    report, reporter = _run(
        "split",
        as_json,
        lambda on_result: split_folder(
            input, output, _options(workers, shard, overwrite), output_format, quality, on_result
        ),
    )
    _finish(report, "prepare split", reporter)


def register(app: typer.Typer) -> None:
    """Add the ``prepare`` command group to the app."""
    app.add_typer(prepare_app, name="prepare")

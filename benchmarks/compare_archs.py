"""Compare the colorizer architectures on one held-out split under the same wall-clock budget.

For every input kind (greyscale ``luma`` and ``lines`` drawings) and every requested architecture,
train with :func:`mangacolor.training.colorizer.train_colorizer` for ``--minutes`` of training time,
colorize the held-out inputs with :class:`mangacolor.inference.Translator` and score them against
the truth with :func:`mangacolor.evaluate.evaluate_folders`. Two baselines ride along: the input
itself (no colour at all) and the plain pix2pix U-Net trained with L1 only (no GAN).

* **Split**: :func:`mangacolor.data.split_files` by a hash of each file name (``--val-fraction``,
  the split ``train-color --val-fraction`` makes too). The trainers read ``OUT/train``, links to the
  training files only, so no model ever sees a held-out image. ``OUT/train``, ``OUT/heldout`` and
  ``OUT/pred`` are rebuilt to the current split on every call (nothing of an earlier split is left
  there), and OUT may not lie inside DATA nor DATA inside OUT.
* **Scale**: everything happens at ``--size``: training images are resized to that long side and
  cropped to ``--size`` squares, the held-out truth is resized to that long side, and the models
  run at that working size.
* **Inputs**: held-out inputs are made like the training inputs: BT.601 luma, or
  :func:`mangacolor.data.make_lines` with ``--lines-method``. Luma inputs are colorized with the
  luminance merge (``colorize --merge luma``: the output's luma is the input's), line inputs with
  ``--merge none`` (a line drawing's luminance is not the picture's).
* **Budget**: a probe run of each configuration (``--probe-fraction`` of the budget, at least 5 s
  and 5 steps after 2 warm-up steps) measures its seconds per step; the real run then gets
  ``minutes * 60 / seconds_per_step`` steps, so its learning-rate schedule runs to the end. The
  table reports the measured training time next to the steps. Run it on an otherwise idle machine:
  step times of other processes' neighbours make the budgets unequal.
* **Reference-style models** get the truth of the *next* held-out image as their reference (an
  unrelated picture, not the answer).

Writes ``OUT/results.md`` (markdown table, also printed), ``OUT/results.json``, contact sheets in
``OUT/sheets/`` and every run, prediction and evaluation under ``OUT/``. A row whose training,
colorizing or scoring failed (a held-out image without a readable prediction counts as failed) says
why in the table, and the exit status is then 1. An OUT that already holds a comparison (``runs/`` or
``probe/``) is refused: give another OUT, or ``--overwrite`` to delete the earlier one first (the
budgets are wall-clock times on one machine, so a comparison is not resumed). Usage::

    python benchmarks/compare_archs.py DATA OUT --minutes 10 --size 256 --vgg-weights vgg16.safetensors
    python benchmarks/compare_archs.py DATA OUT --minutes 2.5 --size 128 --preset small   # CPU scale
    python benchmarks/compare_archs.py DATA /tmp/cmp --minutes 0.2 --size 64 --limit 40 --toy   # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
from machine import describe

from mangacolor.color import luma
from mangacolor.data import make_lines, resize_long_side, split_files
from mangacolor.errors import ImageReadError, MangacolorError
from mangacolor.evaluate import EvalConfig, evaluate_folders
from mangacolor.imageio import list_images, read_image, write_image
from mangacolor.models import get_spec, list_models

SMALL: dict[str, dict[str, Any]] = {
    # CPU-scale widths (about a quarter of the defaults) for --preset small; depths fit 128 px crops.
    "unet": {"base_width": 16, "depth": 7},
    "unet-attn": {"base_width": 16, "depth": 7},
    "resnet-unet": {"width": 16, "decoder_widths": (128, 64, 32, 24, 16)},
    "sgru": {"base_width": 16, "depth": 4},
    "reference-unet": {"base_width": 16, "depth": 7, "style_size": 112},
    "patchgan": {"base_width": 32},
}
"""Per-architecture configs of ``--preset small``; ``resnet-unet`` keeps ResNet50's block counts."""

OWN_FOLDERS = ("train", "heldout", "pred", "probe", "runs", "results", "sheets", "results.md", "results.json")
"""What this script writes under OUT; ``--overwrite`` deletes these and nothing else."""
BASELINE_INPUT = "input (no colour)"
BASELINE_L1 = "unet (L1 only)"
PROBE_WARMUP = 2
PROBE_MIN_STEPS = 5


@dataclass
class Entry:
    """One row of the table: how a model was made and how it scored."""

    inputs: str
    model: str
    arch: str | None = None
    steps: int = 0
    train_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    sheet: str = ""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _remove(path: Path) -> None:
    """Delete one of this script's own files or folders under OUT (a link is removed, never followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _link_training_files(files: list[Path], root: Path, out: Path) -> Path:
    """``OUT/train``: links to the training files only, so the trainer never sees a held-out image.

    The folder is made anew: links of an earlier call (another split) do not survive.
    """
    train_root = out / "train"
    _remove(train_root)
    for path in files:
        link = train_root / path.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.resolve(), link)
    train_root.mkdir(parents=True, exist_ok=True)
    return train_root


def _prepare_heldout(files: list[Path], root: Path, out: Path, size: int, lines_method: str) -> list[str]:
    """Truth at ``size`` (long side) plus its luma and line inputs under ``OUT/heldout/``.

    ``OUT/heldout`` is made anew, so it holds the current held-out images and nothing else.
    """
    _remove(out / "heldout")
    names = []
    for path in files:
        name = path.relative_to(root).with_suffix("").as_posix()
        truth_path = out / "heldout" / "truth" / f"{name}.png"
        try:
            truth = resize_long_side(read_image(path, mode="RGB"), size)
        except ImageReadError as exc:
            _log(f"skipped held-out image: {exc}")
            continue
        write_image(truth_path, truth)
        write_image(out / "heldout" / "luma" / f"{name}.png", luma(truth))
        write_image(out / "heldout" / "lines" / f"{name}.png", make_lines(truth, lines_method))
        names.append(name)
    return names


class _ProbeDone(Exception):
    """Raised from the step callback to end a timing probe."""


def _seconds_per_step(cfg_kwargs: dict[str, Any], probe_dir: Path, probe_s: float) -> float:
    """Mean seconds per step of a configuration, from a probe run of about ``probe_s`` seconds.

    The first ``PROBE_WARMUP`` steps (allocator and kernel warm-up) are not timed.
    """
    from mangacolor.training.colorizer import ColorTrainConfig, train_colorizer

    stamps: list[float] = []

    def on_step(step: int, total: int, scalars: dict[str, float] | None) -> None:
        stamps.append(time.perf_counter())
        timed = len(stamps) - PROBE_WARMUP
        if timed >= PROBE_MIN_STEPS and stamps[-1] - stamps[PROBE_WARMUP - 1] >= probe_s:
            raise _ProbeDone

    kwargs = cfg_kwargs | {"log_every": 10**9}
    config = ColorTrainConfig(run_dir=str(probe_dir), steps=10**9, **kwargs)
    try:
        train_colorizer(config, on_step=on_step)
    except _ProbeDone:
        pass
    return (stamps[-1] - stamps[PROBE_WARMUP - 1]) / (len(stamps) - PROBE_WARMUP)


def _train(cfg_kwargs: dict[str, Any], run_dir: Path, steps: int) -> tuple[Path, float]:
    """Train for ``steps``; return the model and the training time in seconds.

    The time runs from the end of step 1 to the end of the last step, scaled by n / (n - 1): the
    start of step 1 is not observable (it follows decoding the images), its length is taken as the
    mean of the others.
    """
    from mangacolor.training.colorizer import ColorTrainConfig, train_colorizer

    stamps: list[float] = []
    start = time.perf_counter()
    config = ColorTrainConfig(run_dir=str(run_dir), steps=steps, **cfg_kwargs | {"log_every": max(1, steps)})
    path = train_colorizer(config, on_step=lambda *_: stamps.append(time.perf_counter()))
    if len(stamps) < 2:
        return path, time.perf_counter() - start
    return path, (stamps[-1] - stamps[0]) * len(stamps) / (len(stamps) - 1)


def _colorize(
    model: Path,
    inputs: Path,
    truth: Path,
    names: list[str],
    pred: Path,
    size: int,
    merge: str,
    line_model: Path | None = None,
    device: str = "auto",
) -> None:
    """Colorize every held-out input with the inference engine's :class:`Translator` on ``device``.

    With ``line_model``, line-art pages go to it as ``colorize --line-model`` sends them
    (:class:`mangacolor.inference.PageRouter`).
    """
    from mangacolor import checkpoint
    from mangacolor.inference import Translator, load_colorizer
    from mangacolor.training.loop import resolve_device

    if line_model is not None:
        router = load_colorizer(model, line_model, device=device, size=size, merge=merge)
        for name in names:
            write_image(pred / f"{name}.png", router(read_image(inputs / f"{name}.png", mode=None))[0])
        return
    net, info = checkpoint.load(model, device="cpu")
    device = resolve_device(device)
    needs_reference = bool(getattr(net, "needs_reference", False))
    translator = None if needs_reference else Translator(net, info, device, size=size, merge=merge)
    for i, name in enumerate(names):
        if needs_reference:  # the next held-out picture: an unrelated reference, not the answer
            ref = read_image(truth / f"{names[(i + 1) % len(names)]}.png", mode="RGB")
            translator = Translator(net, info, device, size=size, merge=merge, reference=ref)
        image = read_image(inputs / f"{name}.png", mode=None)
        write_image(pred / f"{name}.png", translator(image)[0])


def _copy_inputs(inputs: Path, names: list[str], pred: Path) -> None:
    for name in names:
        grey = read_image(inputs / f"{name}.png", mode="L")
        write_image(pred / f"{name}.png", cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))


def _unscored(report: dict[str, Any]) -> str:
    """Why some held-out images have no score ('' when every one has): missing or unreadable files."""
    missing, unreadable = report["missing"], report["unreadable"]
    if not missing and not unreadable:
        return ""
    total = report["evaluated"] + len(missing) + len(unreadable)
    parts = [f"{len(missing)} without a prediction (e.g. {missing[0]})"] if missing else []
    if unreadable:
        parts.append(f"{len(unreadable)} unreadable (e.g. {unreadable[0]['path']}: {unreadable[0]['reason']})")
    return f"{total - report['evaluated']} of {total} held-out images not scored: {'; '.join(parts)}"


def input_baseline(kind: str, inputs: Path, names: list[str], out: Path, args: argparse.Namespace) -> Entry:
    """The row of the held-out inputs themselves scored as predictions (the floor a model must beat)."""
    entry = Entry(kind, BASELINE_INPUT)
    pred = out / "pred" / kind / "input"
    try:
        _copy_inputs(inputs, names, pred)
        _evaluate(entry, pred, out, args)
    except (MangacolorError, ValueError, RuntimeError) as exc:
        entry.error = _first_line(exc)
    if entry.error:
        _log(f"   {kind} / {BASELINE_INPUT} failed: {entry.error}")
    return entry


def _evaluate(entry: Entry, pred: Path, out: Path, args: argparse.Namespace) -> None:
    """Score ``pred`` against the held-out truth into ``entry``.

    A held-out image without a readable prediction fails the entry: its means would be over other
    images than the other rows'. The missing and unreadable files are kept in ``entry.metrics``.
    """
    tag = f"{entry.inputs}_{entry.model}".replace(" ", "_").replace("(", "").replace(")", "")
    sheet = out / "sheets" / f"{tag}.png"
    result = evaluate_folders(
        EvalConfig(
            pred=str(pred),
            truth=str(out / "heldout" / "truth"),
            inputs=str(out / "heldout" / entry.inputs),
            fid=not args.no_fid,
            vgg_weights=args.vgg_weights,
            lpips_size=args.size,
            device=args.device,
            sheet=str(sheet),
            sheet_count=args.sheet_count,
            sheet_height=min(args.size, 256),
        )
    )
    report = result.to_json()
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / f"{tag}.json").write_text(json.dumps(report, indent=2))
    entry.metrics = report["mean"] | {k: report[k] for k in ("notes", "evaluated", "missing", "unreadable")}
    if report["sheet_error"]:
        entry.metrics["sheet_error"] = report["sheet_error"]
    entry.sheet = str(sheet.relative_to(out))
    entry.error = _unscored(report)


def split_data(args: argparse.Namespace) -> tuple[list[Path], list[Path]] | None:
    """The first ``args.limit`` images of ``args.data`` split by file-name hash: (training, held out).

    Writes nothing. Returns ``None`` (logged) when OUT and DATA overlap, ``args.data`` cannot be
    listed or fewer than 2 images are held out.
    """
    data, out = args.data.resolve(), args.out.resolve()
    if out.is_relative_to(data) or data.is_relative_to(out):
        _log(f"error: {args.out} and {args.data}: OUT may not lie inside DATA nor DATA inside OUT; give another OUT")
        return None
    try:
        files = list(list_images(args.data))[: args.limit]
    except MangacolorError as exc:
        _log(f"error: {exc}")
        return None
    train_files, held = split_files(files, args.val_fraction)
    _log(f"{len(files)} images: {len(train_files)} for training, {len(held)} held out")
    if len(held) < 2:
        _log("error: need at least 2 held-out images; raise --limit or --val-fraction")
        return None
    return train_files, held


def split_record(args: argparse.Namespace, train_files: list[Path]) -> dict[str, Any]:
    """What a training on this split saw: DATA, --val-fraction, --limit and the training files' names."""
    return {
        "data": str(args.data.resolve()),
        "val_fraction": args.val_fraction,
        "limit": args.limit,
        "train_files": sorted(p.relative_to(args.data).as_posix() for p in train_files),
    }


def prepare_split(
    args: argparse.Namespace, train_files: list[Path], held: list[Path]
) -> tuple[int, Path, list[str]] | None:
    """Link the training files into ``OUT/train``, make the held-out truth and inputs, empty ``OUT/pred``.

    All three folders are made anew, so they hold exactly this split: nothing of an earlier call's
    split is trained on, colorized or scored.

    Returns:
        (number of training files, the training folder, held-out names), or ``None`` (logged) when
        fewer than 2 held-out images could be read.
    """
    args.out.mkdir(parents=True, exist_ok=True)
    _remove(args.out / "pred")
    data = _link_training_files(train_files, args.data, args.out)
    names = _prepare_heldout(held, args.data, args.out, args.size, args.lines_method)
    if len(names) < 2:
        _log(f"error: only {len(names)} held-out image(s) could be read; need at least 2")
        return None
    return len(train_files), data, names


def split_and_prepare(args: argparse.Namespace) -> tuple[int, Path, list[str]] | None:
    """Split ``args.data`` by file-name hash (:func:`split_data`) and prepare OUT for it (:func:`prepare_split`).

    Returns:
        (number of training files, the training folder, held-out names), or ``None`` (logged).
    """
    split = split_data(args)
    return None if split is None else prepare_split(args, *split)


def device_problem(args: argparse.Namespace) -> str:
    """Why ``args.device`` cannot be used ('' when it can); ``auto`` is replaced by the device it picks."""
    from mangacolor.training.loop import resolve_device

    try:
        args.device = str(resolve_device(args.device))
    except MangacolorError as exc:
        return str(exc)
    return ""


def write_results(args: argparse.Namespace, n_train: int, names: list[str], entries: list[Entry], table: str) -> None:
    """``OUT/results.md`` (also printed) and ``OUT/results.json``."""
    (args.out / "results.md").write_text(table + "\n")
    payload = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": describe(args.device).removeprefix("machine: "),
        "train_images": n_train,
        "heldout_images": len(names),
        "entries": [e.__dict__ for e in entries],
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=2, default=float))
    print(table)


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(entries: list[Entry]) -> str:
    """The results as a markdown table."""
    lines = [
        "| inputs | model | steps | train min | FID ↓ | LPIPS ↓ | PSNR ↑ | SSIM ↑ | colourfulness ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in entries:
        if e.error:
            lines.append(f"| {e.inputs} | {e.model} | – | – | failed: {e.error} | | | | |")
            continue
        m = e.metrics
        steps = str(e.steps) if e.steps else "–"
        minutes = _fmt(e.train_s / 60, 1) if e.steps else "–"
        lines.append(
            f"| {e.inputs} | {e.model} | {steps} | {minutes} | {_fmt(m.get('fid'), 1)} | {_fmt(m.get('lpips'), 3)} "
            f"| {_fmt(m.get('psnr'), 2)} | {_fmt(m.get('ssim'), 3)} | {_fmt(m.get('colourfulness_ratio'), 2)} |"
        )
    return "\n".join(lines)


def common_train_kwargs(
    args: argparse.Namespace, data: Path, kind: str, arch: str, model: dict[str, Any]
) -> dict[str, Any]:
    """``ColorTrainConfig`` fields every benchmark training shares: data, inputs, network, size, batch, device."""
    return dict(
        data=str(data),
        input_kind=kind,
        lines_method=args.lines_method,
        arch=arch,
        model=model,
        crop_size=args.size,
        load_size=args.size,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        sample_every=0,
        save_every=0,
        vgg_weights=args.vgg_weights if _uses_vgg(arch, getattr(args, "perceptual", 0.0)) else None,
    )


def _uses_vgg(arch: str, perceptual: float) -> bool:
    """Whether a training of ``arch`` uses VGG16: a perceptual loss, SGRU's collection loss on several
    outputs, or the reference model's style encoder (initialised with VGG16's first layers)."""
    config = get_spec(arch).config_cls()
    return perceptual > 0 or getattr(config, "num_outputs", 1) > 1 or hasattr(config, "style_widths")


def _train_kwargs(args: argparse.Namespace, data: Path, kind: str, arch: str, l1_only: bool) -> dict[str, Any]:
    if args.toy:
        model = dict(get_spec(arch).toy)
    else:
        model = dict(SMALL.get(arch, {})) if args.preset == "small" else {}
    model.update(args.model_config.get(arch, {}))
    kwargs = common_train_kwargs(args, data, kind, arch, model)
    kwargs["encoder_weights"] = args.encoder_weights
    if args.toy:
        kwargs["discriminator"] = dict(get_spec("patchgan").toy)
    elif args.preset == "small":
        kwargs["discriminator"] = dict(SMALL["patchgan"])
    if l1_only:
        kwargs["gan_weight"] = 0.0
    return kwargs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("data", type=Path, help="folder of colour images")
    parser.add_argument("out", type=Path, help="output folder (runs, predictions, sheets, results.md)")
    colorizers = [s.name for s in list_models("colorize")]
    parser.add_argument("--archs", nargs="+", default=colorizers, help=f"default: {' '.join(colorizers)}")
    parser.add_argument("--inputs", nargs="+", default=["luma", "lines"], choices=["luma", "lines"])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per model")
    parser.add_argument("--size", type=int, default=256, help="training crop, image long side and working size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out share (by file-name hash)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of DATA")
    parser.add_argument("--lines-method", default="sketch")
    parser.add_argument("--vgg-weights", default=None, help="VGG16 weights (SGRU's loss and LPIPS)")
    parser.add_argument("--encoder-weights", default=None, help="Danbooru ResNet50 for resnet-unet")
    parser.add_argument("--toy", action="store_true", help="toy widths from the registry (smoke tests)")
    parser.add_argument(
        "--preset",
        choices=["default", "small"],
        default="default",
        help="default: each architecture's default config; small: CPU-scale widths (see SMALL)",
    )
    parser.add_argument(
        "--model-config",
        action="append",
        default=[],
        metavar="ARCH=JSON",
        help="config fields for one architecture, e.g. unet='{\"depth\": 7}' (repeatable)",
    )
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-fid", action="store_true", help="leave FID out (quick runs)")
    parser.add_argument("--sheet-count", type=int, default=8)
    parser.add_argument(
        "--probe-fraction", type=float, default=0.1, help="share of the budget spent timing each configuration"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an earlier comparison in OUT first (else it is refused)"
    )
    args = parser.parse_args(argv)
    if min(args.size, args.batch_size) < 1 or args.minutes <= 0:
        parser.error("--size and --batch-size must be at least 1 and --minutes above 0")
    if not 0 <= args.val_fraction < 1:
        parser.error(f"--val-fraction must be in [0, 1). Got {args.val_fraction}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1. Got {args.limit}")
    if problem := device_problem(args):
        _log(f"error: {problem}")
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    configs: dict[str, dict[str, Any]] = {}
    for item in args.model_config:
        arch, sep, text = item.partition("=")
        try:
            configs[arch] = json.loads(text) if sep else None
        except ValueError:
            configs[arch] = None
        if not isinstance(configs[arch], dict):
            parser.error(f"--model-config takes ARCH=JSON object, e.g. unet='{{\"depth\": 7}}'. Got {item!r}")
    args.model_config = configs

    unknown = [a for a in args.archs if a not in colorizers]
    if unknown:
        parser.error(f"unknown colorize architecture(s) {unknown}; known: {colorizers}")
    out: Path = args.out
    earlier = [name for name in ("runs", "probe") if (out / name).exists()]
    if earlier and not args.overwrite:
        _log(f"error: {out} already holds a comparison ({earlier[0]}/): give another OUT, or --overwrite to replace it")
        return 2
    _log(describe(args.device))
    split = split_data(args)
    if split is None:
        return 2
    if args.overwrite:
        for name in OWN_FOLDERS:
            _remove(out / name)
    split = prepare_split(args, *split)
    if split is None:
        return 2
    n_train, data, names = split

    models: list[tuple[str, str, bool]] = [(a, a, False) for a in args.archs]
    if not args.no_baselines:
        models.append((BASELINE_L1, "unet", True))
    entries: list[Entry] = []
    for kind in args.inputs:
        inputs = out / "heldout" / kind
        merge = "luma" if kind == "luma" else "none"
        if not args.no_baselines:
            entries.append(input_baseline(kind, inputs, names, out, args))
        for label, arch, l1_only in models:
            entry = Entry(kind, label, arch)
            tag = label.replace(" ", "_").replace("(", "").replace(")", "")
            _log(f"== {kind} / {label}")
            try:
                kwargs = _train_kwargs(args, data, kind, arch, l1_only)
                probe_s = max(5.0, args.probe_fraction * args.minutes * 60)
                per_step = _seconds_per_step(kwargs, out / "probe" / kind / tag, probe_s)
                steps = max(1, int(args.minutes * 60 / per_step))
                _log(f"   {per_step:.3f} s/step: {steps} steps for {args.minutes} min")
                model, entry.train_s = _train(kwargs, out / "runs" / kind / tag, steps)
                entry.steps = steps
                pred = out / "pred" / kind / tag
                _colorize(model, inputs, out / "heldout" / "truth", names, pred, args.size, merge, device=args.device)
                _evaluate(entry, pred, out, args)
            except (MangacolorError, ValueError, RuntimeError) as exc:
                entry.error = _first_line(exc)
            if entry.error:
                _log(f"   failed: {entry.error}")
            entries.append(entry)
            (out / "results.md").write_text(markdown_table(entries) + "\n")  # partial results survive a stop

    write_results(args, n_train, names, entries, markdown_table(entries))
    return exit_status(entries)


def exit_status(entries: list[Entry]) -> int:
    """1 (logged) when any row failed, else 0: a table with failed rows is not a finished comparison."""
    failed = [e for e in entries if e.error]
    if failed:
        _log(f"error: {len(failed)} of {len(entries)} rows failed (see the table)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Which inputs should a colorizer be trained on? Luma, line art, a random mix, or synthetic scans.

Users feed a colorizer two kinds of page: greyscale (shading, screentone) and pure line art. This
script trains one architecture once per *training input* and scores every trained model on *both*
kinds of held-out input, so the choice of the default model's training data is made by numbers:

* ``luma``: BT.601 greyscale of each colour crop (``train-color --input luma``);
* ``lines``: line art made from each crop with ``--lines-method`` (``--input lines``);
* ``mix``: each crop is one or the other at random, half and half (``--input mix``);
* ``scans`` (with ``--scan-model``): synthetic scans of the training images made by a trained scan
  generator (``mangacolor scan``), read with ``--input-dir``;
* ``scans+lines``: each crop the synthetic scan or line art at random (``--input-dir --input mix``).

Every model trains for the same number of steps (``--steps``; the same optimisation budget, whatever
the cost of making its inputs) on the training part of the split that ``compare_archs.py`` uses (a
SHA-1 of each file name, ``--val-fraction``), and is scored with :func:`mangacolor.evaluate.evaluate_folders`
next to the input itself (no colour) on each held-out kind. Held-out luma inputs are colorized with
the luminance merge, held-out line art with ``--merge-lines`` (``colorize --merge``; default
``multiply``, what ``colorize --merge auto`` picks for line art). ``--heldout tone`` adds screentoned
pages (:func:`_make_tone_heldout`), colorized with ``--merge-tone`` (default ``auto``, as ``colorize``).

Writes ``OUT/results.md`` (also printed), ``OUT/results.json``, contact sheets in ``OUT/sheets/``
and every run, prediction and evaluation under ``OUT/``. Running it again on the same ``OUT`` reuses
the finished trainings (``OUT/runs/KIND/train.json``, which records the training settings and the
split: DATA, ``--val-fraction``, ``--limit`` and the training files' names) and scores them again,
e.g. with another ``--merge-lines``; a call with other settings or another split is refused before
anything is written (a model must never be scored on images it was trained on), and a training cut
short starts over. ``OUT/train``, ``OUT/heldout`` and ``OUT/pred`` are rebuilt to the current split on
every call. A row that failed says why in the table, and the exit status is then 1.

``--train-config`` sets any other ``train-color`` field (learning rates and schedule, loss weights,
``load_size`` to crop from larger images). ``--score-model NAME=CHECKPOINT`` scores a colorizer
trained elsewhere (the shipped default, a long GPU run) in the same table; ``--line-model
NAME=LINES`` pairs it with a line-art model, page by page, as ``colorize --line-model`` does. Usage::

    python benchmarks/compare_inputs.py DATA OUT --steps 20000 --size 256 --vgg-weights vgg16.safetensors
    python benchmarks/compare_inputs.py DATA OUT --steps 900 --size 128 --batch-size 16 \\
        --model-config '{"base_width": 32, "depth": 7}' --d-width 32          # CPU scale
    python benchmarks/compare_inputs.py DATA /tmp/ci --steps 4 --size 64 --limit 40 --toy   # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import cv2
from compare_archs import (
    Entry,
    _colorize,
    _evaluate,
    _first_line,
    _log,
    _train,
    common_train_kwargs,
    device_problem,
    exit_status,
    input_baseline,
    markdown_table,
    prepare_split,
    split_data,
    split_record,
    write_results,
)
from machine import describe

from mangacolor.errors import MangacolorError
from mangacolor.models import get_spec, list_models

TRAIN_INPUTS = ("luma", "lines", "mix", "scans", "scans+lines")
SCAN_INPUTS = {"scans": "luma", "scans+lines": "mix"}  # train-color --input with --input-dir scans
HELDOUT_KINDS = ("luma", "lines", "tone")
SET_BY_SCRIPT = {"data", "run_dir", "steps", "input_kind", "input_dir", "aligned", "test_fraction"}
"""Training fields this script sets per model; ``--train-config`` may set the others.

A ``val_fraction`` given there holds out the next share of the file-name hash range after the
held-out split (``test_fraction`` is set to ``--val-fraction``), so best.safetensors is picked on
images that are neither trained on nor scored."""
OWN_OPTIONS = {
    "arch": "--arch",
    "model": "--model-config",
    "discriminator": "--d-width",
    "gan_weight": "--gan-weight",
    "perceptual_weight": "--perceptual",
    "batch_size": "--batch-size",
    "lines_method": "--lines-method",
    "vgg_weights": "--vgg-weights",
    "device": "--device",
    "seed": "--seed",
}
"""Training fields with an option of their own here."""
UNRECORDED = {"device", "num_workers", "log_every", "sample_every", "save_every", "compile", "channels_last"}
"""Fields that do not change what a training learns; a finished run is reused whatever they were."""
TONE_SCALE = 4
"""Held-out screentoned pages are drawn at this multiple of ``--size``, as scans are larger than the working size."""


def _make_tone_heldout(out: Path, names: list[str]) -> int:
    """``OUT/heldout/tone``: each held-out truth enlarged :data:`TONE_SCALE` times and drawn as a screentoned page.

    The page is ``examples/make_fake_scans.py``'s scan stand-in: ``sketch`` lines over flat dot screens
    (period 6 px) and solid black. Colorized at ``--size``, its dots shrink to grey, as a real scan's do.
    Returns how many of the pages ``is_ink_page`` calls ink pages (``colorize --merge auto`` multiplies those).
    """
    import importlib.util

    from mangacolor.color import is_ink_page
    from mangacolor.imageio import read_image, write_image

    path = Path(__file__).resolve().parents[1] / "examples" / "make_fake_scans.py"
    spec = importlib.util.spec_from_file_location("make_fake_scans", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ink_pages = 0
    for name in names:
        dst = out / "heldout" / "tone" / f"{name}.png"
        if not dst.exists():
            truth = read_image(out / "heldout" / "truth" / f"{name}.png", mode="RGB")
            big = cv2.resize(truth, None, fx=TONE_SCALE, fy=TONE_SCALE, interpolation=cv2.INTER_CUBIC)
            write_image(dst, module.fake_scan(big))
        ink_pages += is_ink_page(read_image(dst, mode="L"))
    return ink_pages


def _make_scans(model: Path, data: Path, out: Path, device: str = "auto") -> Path:
    """Synthetic scans of the training images (same names), as ``mangacolor scan`` writes them."""
    from mangacolor.inference import FolderOptions, Translator, run_folder

    translator = Translator.from_checkpoint(model, device=device, merge="none")
    if translator.info.task != "scan":
        raise MangacolorError(f"{model}: a {translator.info.task} model, not a scan generator (train-scan)")
    scans = out / "scans"
    report = run_folder(translator, data, scans, FolderOptions(output_format="png", copy_color=False))
    if report.failed:
        _log(f"   {report.failed} training images could not be scanned; they are left out")
    return scans


def _train_kwargs(args: argparse.Namespace, data: Path, kind: str, scans: Path | None) -> dict[str, Any]:
    model = dict(get_spec(args.arch).toy) if args.toy else {}
    model.update(args.model_config)
    disc = dict(get_spec("patchgan").toy) if args.toy else {}
    if args.d_width is not None:
        disc["base_width"] = args.d_width
    kwargs = common_train_kwargs(args, data, SCAN_INPUTS.get(kind, kind), args.arch, model)
    kwargs.update(input_dir=str(scans) if kind in SCAN_INPUTS else None, discriminator=disc, gan_weight=args.gan_weight)
    kwargs.update(perceptual_weight=args.perceptual)
    kwargs.update(args.train_config)
    if kwargs.get("val_fraction"):  # validation from the training files, past the held-out share
        kwargs["test_fraction"] = args.val_fraction
    return kwargs


def _settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The training settings a finished run is reused for: all but where and on what it ran."""
    return json.loads(json.dumps({k: v for k, v in kwargs.items() if k not in UNRECORDED}, default=str))


def _reuse_problem(run: Path, steps: int, settings: dict[str, Any], split: dict[str, Any]) -> str | None:
    """Whether the finished training in ``run`` can be reused: ``None`` when there is none to reuse,
    '' when it can, else why not (other steps, settings or split; a split it does not record)."""
    done = run / "train.json"
    if not (done.exists() and (run / "model.safetensors").exists()):
        return None
    record = json.loads(done.read_text())
    if record["steps"] != steps:
        return f"{run} was trained for {record['steps']} steps, not {steps}: give another OUT"
    before = record.get("settings", {})
    changed = sorted(k for k in before.keys() | settings.keys() if before.get(k) != settings.get(k))
    if before and changed:
        return f"{run} was trained with other {', '.join(changed)}: give another OUT"
    was = record.get("split")
    if was is None:
        return f"{run} does not record the split it was trained on (it may have seen held-out images): give another OUT"
    if (was.get("data"), was.get("train_files")) != (split["data"], split["train_files"]):
        return (
            f"{run} was trained on another split ({len(was.get('train_files', []))} training images of "
            f"{was.get('data')}, --val-fraction {was.get('val_fraction')}, --limit {was.get('limit')}; now "
            f"{len(split['train_files'])} of {split['data']}, --val-fraction {split['val_fraction']}, "
            f"--limit {split['limit']}) and may have seen held-out images: give another OUT"
        )
    return ""


def _of_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config field's type hint (numbers, text, flags, lists, objects)."""
    origin, parts = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return any(_of_type(value, part) for part in parts)
    if hint in (bool, str, type(None)):
        return isinstance(value, hint)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict)
    if origin in (list, tuple):
        items = parts[:1] * len(value) if origin is list or parts[-1:] == (Ellipsis,) else parts
        return isinstance(value, list) and len(items) == len(value) and all(map(_of_type, value, items))
    return True


def _named_colorizers(option: str, items: list[str], name_problem: Any) -> tuple[dict[str, Path], str]:
    """``OPTION NAME=CHECKPOINT`` values: ({name: checkpoint}, why they cannot be used or '').

    ``name_problem(name, taken)`` says what is wrong with a name ('' when nothing is).
    """
    from mangacolor.checkpoint import read_info

    named: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            return {}, f"{option} takes NAME=CHECKPOINT, not {item!r}"
        if problem := name_problem(name, named):
            return {}, f"{option}: {problem}"
        try:
            info = read_info(path)
        except MangacolorError as exc:
            return {}, f"{option}: {exc}"
        if info.task != "colorize":
            return {}, f"{option}: {path}: a {info.task} model, not a colorizer"
        named[name] = Path(path)
    return named, ""


def _parse_score_models(items: list[str], train_inputs: list[str]) -> tuple[dict[str, Path], str]:
    """``--score-model NAME=CHECKPOINT`` values: ({name: checkpoint}, why they cannot be used or '')."""

    def name_problem(name: str, taken: dict[str, Path]) -> str:
        if name in taken or name in train_inputs or name in TRAIN_INPUTS or "/" in name or name.startswith("."):
            return f"{name!r} is taken or not a usable name; give each model its own name"
        return ""

    return _named_colorizers("--score-model", items, name_problem)


def _parse_line_models(items: list[str], scored: dict[str, Path]) -> tuple[dict[str, Path], str]:
    """``--line-model NAME=CHECKPOINT`` values, each for a ``--score-model`` NAME: ({name: checkpoint}, problem)."""

    def name_problem(name: str, taken: dict[str, Path]) -> str:
        if name not in scored or name in taken:
            return f"{name}: name one --score-model (NAME=CHECKPOINT) once"
        return ""

    return _named_colorizers("--line-model", items, name_problem)


def _check_train_config(config: Any, held_out: float) -> str:
    """Why ``--train-config`` cannot be used ('' when it can); ``held_out`` is ``--val-fraction``."""
    from dataclasses import fields

    from mangacolor.training.colorizer import ColorTrainConfig
    from mangacolor.training.loop import check_training_options

    if not isinstance(config, dict):
        return '--train-config takes a JSON object, e.g. \'{"l1_weight": 10, "decay_start": 1.0}\''
    known = {f.name for f in fields(ColorTrainConfig)} - SET_BY_SCRIPT - set(OWN_OPTIONS)
    if flagged := [f"{OWN_OPTIONS[k]} (not {k})" for k in config if k in OWN_OPTIONS]:
        return f"--train-config: use {', '.join(flagged)}"
    if unknown := sorted(set(config) - known):
        return f"--train-config: {', '.join(unknown)} cannot be set here (fields: {', '.join(sorted(known))})"
    hints = get_type_hints(ColorTrainConfig)
    wrong = [f"{k} ({getattr(hints[k], '__name__', hints[k])})" for k, v in config.items() if not _of_type(v, hints[k])]
    if wrong:
        return f"--train-config: a value of the wrong type for {', '.join(wrong)}"
    try:
        test_fraction = held_out if config.get("val_fraction") else 0.0
        check_training_options(ColorTrainConfig(data="", run_dir="", **config, test_fraction=test_fraction))
    except MangacolorError as exc:
        return f"--train-config: {exc}"
    except (TypeError, ValueError) as exc:
        return f"--train-config: a value of the wrong type in {json.dumps(config)} ({exc})"
    return ""


def results_table(entries: list[Entry]) -> str:
    """The markdown table: one row per (held-out kind, training input)."""
    table = markdown_table(entries)
    return table.replace("| inputs | model |", "| held-out input | trained on |", 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("data", type=Path, help="folder of colour images")
    parser.add_argument("out", type=Path, help="output folder (runs, predictions, sheets, results.md)")
    colorizers = [s.name for s in list_models("colorize") if not s.name.startswith("reference")]
    parser.add_argument("--arch", default="unet", choices=colorizers)
    parser.add_argument("--model-config", default="{}", help="generator config fields as a JSON object")
    parser.add_argument("--d-width", type=int, default=None, help="PatchGAN base width")
    parser.add_argument("--gan-weight", type=float, default=1.0, help="0: L1 only")
    parser.add_argument(
        "--perceptual", type=float, default=0.0, help="VGG16 perceptual loss weight (train-color --perceptual)"
    )
    parser.add_argument(
        "--train-config",
        default="{}",
        help='other train-color fields as a JSON object, e.g. \'{"l1_weight": 10, "decay_start": 1.0}\'',
    )
    parser.add_argument(
        "--score-model",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="also score this colorizer (e.g. default=assets/default.safetensors); repeatable",
    )
    parser.add_argument(
        "--line-model",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="pair the --score-model NAME with this line-art model, as colorize --line-model does; repeatable",
    )
    parser.add_argument(
        "--train-inputs",
        nargs="*",
        default=["luma", "lines", "mix"],
        choices=TRAIN_INPUTS,
        help="models to train (default: luma lines mix; none: only score --score-model)",
    )
    parser.add_argument("--scan-model", type=Path, default=None, help="scan generator for --train-inputs scans")
    parser.add_argument(
        "--heldout",
        nargs="+",
        default=["luma", "lines"],
        choices=HELDOUT_KINDS,
        help="held-out inputs: luma, lines, tone (screentoned pages at 4x size, merge auto)",
    )
    parser.add_argument("--steps", type=int, default=2000, help="optimisation steps per model")
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        help="held-out long side, working size and training crop (unless --train-config sets crop_size)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out share (by file-name hash)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of DATA")
    parser.add_argument("--lines-method", default="sketch")
    parser.add_argument(
        "--merge-lines",
        default="multiply",
        choices=["multiply", "none", "luma"],
        help="colorize --merge for held-out line art (colorize's auto: multiply)",
    )
    parser.add_argument(
        "--merge-tone",
        default="auto",
        choices=["auto", "luma", "multiply", "none"],
        help="colorize --merge for held-out screentoned pages (default: auto, as colorize)",
    )
    parser.add_argument("--vgg-weights", default=None, help="VGG16 weights (LPIPS; SGRU's loss)")
    parser.add_argument("--toy", action="store_true", help="toy widths from the registry (smoke tests)")
    parser.add_argument("--no-fid", action="store_true", help="leave FID out (quick runs)")
    parser.add_argument("--sheet-count", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.size, args.batch_size) < 1 or args.steps < 1:
        parser.error("--size, --batch-size and --steps must be at least 1")
    if not 0 <= args.val_fraction < 1:
        parser.error(f"--val-fraction must be in [0, 1). Got {args.val_fraction}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1. Got {args.limit}")
    if problem := device_problem(args):
        _log(f"error: {problem}")
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.model_config = json.loads(args.model_config)
    except ValueError:
        args.model_config = None
    if not isinstance(args.model_config, dict):
        parser.error("--model-config takes a JSON object, e.g. '{\"depth\": 7}'")
    try:
        args.train_config = json.loads(args.train_config)
    except ValueError:
        args.train_config = None
    if problem := _check_train_config(args.train_config, args.val_fraction):
        parser.error(problem)
    scored, problem = _parse_score_models(args.score_model, args.train_inputs)
    if problem:
        parser.error(problem)
    line_models, problem = _parse_line_models(args.line_model, scored)
    if problem:
        parser.error(problem)
    needs_scans = bool(set(args.train_inputs) & set(SCAN_INPUTS))
    if needs_scans and args.scan_model is None:
        parser.error("--train-inputs scans and scans+lines need --scan-model (a train-scan checkpoint)")
    if needs_scans:
        from mangacolor.checkpoint import read_info

        try:
            task = read_info(args.scan_model).task
        except MangacolorError as exc:
            parser.error(f"--scan-model: {exc}")
        if task != "scan":
            parser.error(f"--scan-model: {args.scan_model}: a {task} model, not a scan generator (train-scan)")

    out: Path = args.out
    _log(describe(args.device))
    split = split_data(args)
    if split is None:
        return 2
    record = split_record(args, split[0])
    data, scans = out / "train", out / "scans" if needs_scans else None
    reuse: dict[str, bool] = {}
    for kind in args.train_inputs:  # before anything is written: a refused call leaves OUT as it was
        settings = _settings(_train_kwargs(args, data, kind, scans))
        problem = _reuse_problem(out / "runs" / kind, args.steps, settings, record)
        if problem:
            _log(f"error: {problem}")
            return 2
        reuse[kind] = problem == ""
    split = prepare_split(args, *split)
    if split is None:
        return 2
    n_train, data, names = split
    if needs_scans:
        try:
            scans = _make_scans(args.scan_model, data, out, args.device)
        except MangacolorError as exc:  # e.g. OUT/scans made by another scan generator
            _log(f"error: {_first_line(exc)}")
            return 1

    models: dict[str, tuple[Path | None, int, float, str]] = {}  # kind -> (model, steps, seconds, error)
    for kind in args.train_inputs:
        run = out / "runs" / kind
        done = run / "train.json"
        kwargs = _train_kwargs(args, data, kind, scans)
        if reuse[kind]:  # a finished training of an earlier call, on the same split with the same settings
            finished = json.loads(done.read_text())
            models[kind] = (run / "model.safetensors", finished["steps"], finished["seconds"], "")
            _log(f"== {kind}: reusing the finished training in {run}")
            continue
        if run.exists():  # cut short in an earlier call: start over
            shutil.rmtree(run)
        _log(f"== training on {kind}: {args.steps} steps")
        try:
            start = time.perf_counter()
            path, seconds = _train(kwargs, run, args.steps)
            models[kind] = (path, args.steps, seconds, "")
            finished = {"steps": args.steps, "seconds": seconds, "settings": _settings(kwargs), "split": record}
            done.write_text(json.dumps(finished))
            _log(f"   {seconds / 60:.1f} min ({time.perf_counter() - start:.0f} s with set-up)")
        except (MangacolorError, ValueError, RuntimeError) as exc:
            models[kind] = (None, 0, 0.0, _first_line(exc))
            _log(f"   failed: {models[kind][3]}")

    for name, path in scored.items():
        models[name] = (path, 0, 0.0, "")

    if "tone" in args.heldout:
        ink_pages = _make_tone_heldout(out, names)
        _log(f"held-out screentoned pages: {ink_pages} of {len(names)} are ink pages for --merge auto (multiply)")
    entries: list[Entry] = []
    for held_kind in args.heldout:
        inputs = out / "heldout" / held_kind
        merge = {"luma": "luma", "lines": args.merge_lines, "tone": args.merge_tone}[held_kind]
        entries.append(input_baseline(held_kind, inputs, names, out, args))
        for kind, (path, steps, seconds, error) in models.items():
            entry = Entry(held_kind, kind, args.arch, steps=steps, train_s=seconds, error=error)
            if path is not None:
                _log(f"== scoring the {kind} model on held-out {held_kind}")
                pred = out / "pred" / held_kind / kind
                truth = out / "heldout" / "truth"
                try:
                    _colorize(path, inputs, truth, names, pred, args.size, merge, line_models.get(kind), args.device)
                    _evaluate(entry, pred, out, args)
                except (MangacolorError, ValueError, RuntimeError) as exc:
                    entry.error = _first_line(exc)
                if entry.error:
                    _log(f"   failed: {entry.error}")
            entries.append(entry)
            (out / "results.md").write_text(results_table(entries) + "\n")  # partial results survive a stop

    write_results(args, n_train, names, entries, results_table(entries))
    return exit_status(entries)


if __name__ == "__main__":
    sys.exit(main())

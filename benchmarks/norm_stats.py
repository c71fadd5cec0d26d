"""Do a colorizer's batch-norm statistics suit each kind of input it is given?

A network with batch norm normalises at inference with the *running* statistics it gathered in
training. A model trained on two kinds of input at once (``train-color --input mix``: greyscale
and line art, half each per batch) gathers statistics of the blend, which may suit neither kind on
its own. This script colorizes held-out inputs twice, with the running statistics (what
``colorize`` does) and with each image's own statistics (batch norm run in training mode on a batch
of one; running statistics left unchanged), and prints the PSNR (RGB, raw output: ``--merge none``)
against the truth and the colourfulness ratio (Hasler & Süsstrunk, mean over the outputs over mean
over the truth, as ``mangacolor evaluate``) for each. A large PSNR gap in favour of the image's own
statistics on one kind of input says the running statistics are wrong for it; colour that survives
the image's own statistics was learnt, not lent by the running ones. A model without batch norm
prints one column of each.

Inputs and truth are matched by file stem (``compare_inputs.py`` writes them as
``OUT/heldout/KIND/`` and ``OUT/heldout/truth/``). Usage::

    python benchmarks/norm_stats.py runs/mix/model.safetensors OUT/heldout/truth \\
        OUT/heldout/luma OUT/heldout/lines --size 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mangacolor import checkpoint
from mangacolor.errors import MangacolorError
from mangacolor.evaluate import colourfulness, psnr
from mangacolor.imageio import list_images, read_image
from mangacolor.inference import Translator


def use_image_statistics(model: torch.nn.Module) -> int:
    """Make every batch-norm layer normalise with the statistics of the batch it is given, leaving
    its running statistics unchanged (momentum 0). Returns the number of such layers."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.train()
        layer.momentum = 0.0
    return len(layers)


def match(truth: Path, inputs: Path, limit: int | None) -> list[tuple[Path, Path]]:
    """(input, truth) files of ``inputs`` and ``truth`` matched by stem, the first ``limit`` of them.

    Raises:
        MangacolorError: a folder cannot be listed, or no file name matches.
    """
    truths = {p.stem: p for p in list_images(truth)}
    pairs = [(p, truths[p.stem]) for p in list_images(inputs) if p.stem in truths][:limit]
    if not pairs:
        raise MangacolorError(f"{inputs}: no image matches one in {truth} by name")
    return pairs


def score(model_path: Path, truth: Path, inputs: Path, size: int | None, limit: int | None) -> dict[str, float | None]:
    """Mean PSNR and colourfulness ratio of the raw outputs on ``inputs`` with running statistics and,
    where the model has batch norm, with each image's own statistics (keys ``running``, ``image``,
    ``colour_running``, ``colour_image``). A colourfulness ratio is ``None`` when the truth has no
    colour (as ``mangacolor evaluate`` reports it)."""
    pairs = match(truth, inputs, limit)
    results: dict[str, float | None] = {}
    for mode in ("running", "image"):
        net, info = checkpoint.load(model_path)
        translator = Translator(net, info, "cpu", size=size, merge="none")
        if mode == "image" and use_image_statistics(translator.model) == 0:
            break
        values, colour_pred, colour_truth = [], [], []
        with torch.no_grad():
            for x, y in pairs:
                pred, truth = translator(read_image(x, mode=None))[0], read_image(y, mode="RGB")
                values.append(psnr(pred, truth))  # capped at 100 dB (identical images)
                colour_pred.append(colourfulness(pred))
                colour_truth.append(colourfulness(truth))
        results[mode] = float(np.mean(values))
        truth_colour = float(np.mean(colour_truth))
        results[f"colour_{mode}"] = float(np.mean(colour_pred)) / truth_colour if truth_colour > 0 else None
    results["images"] = len(pairs)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="colorizer checkpoint (.safetensors)")
    parser.add_argument("truth", type=Path, help="folder of colour truth images")
    parser.add_argument("inputs", type=Path, nargs="+", help="folders of inputs, one per kind")
    parser.add_argument("--size", type=int, default=None, help="working size (default: the checkpoint's)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images of each folder")
    args = parser.parse_args(argv)
    if args.size is not None and args.size < 1:
        parser.error(f"--size must be at least 1. Got {args.size}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1. Got {args.limit}")
    try:  # everything that can be refused, before the table starts
        if (task := checkpoint.read_info(args.model).task) != "colorize":
            raise MangacolorError(f"{args.model}: a {task} model, not a colorizer")
        for inputs in args.inputs:
            match(args.truth, inputs, args.limit)
    except MangacolorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from machine import describe  # beside this script (run as a script, not imported as a module)

    print(describe("cpu"))
    print(
        "| inputs | images | PSNR, running statistics | PSNR, each image's own statistics "
        "| colourfulness ratio, running | colourfulness ratio, own |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    try:
        for inputs in args.inputs:
            r = score(args.model, args.truth, inputs, args.size, args.limit)
            own = f"{r['image']:.2f}" if "image" in r else "– (no batch norm)"
            own_colour = _ratio(r["colour_image"]) if "image" in r else "–"
            print(
                f"| {inputs.name} | {r['images']:.0f} | {r['running']:.2f} | {own} | {_ratio(r['colour_running'])} "
                f"| {own_colour} |",
                flush=True,
            )
    except MangacolorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _ratio(value: float | None) -> str:
    """A colourfulness ratio to 2 places; '–' where the truth has no colour."""
    return "–" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())

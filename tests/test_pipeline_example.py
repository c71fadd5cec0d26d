"""examples/pipeline.sh end to end at toy size, so the documented pipeline cannot rot.

The script runs on a small Danbooru-style dump made from the demo corpus (``shared/data/demo`` beside
the repository; synthetic drawings where it is absent): letterboxed square JPEGs under
``512px/<bucket>/<id>.jpg`` and a metadata file in the Danbooru2021 format, so every stage runs:
prepare filter (by tag) -> prepare crop (letterbox cut from the manifest's original sizes) -> the
development scans (half of the images become scan-like pages: examples/make_fake_scans.py draws
`prepare lines` sketch lines plus flat screentone dot bands in the dark regions — deliberately not
luma) -> train-scan -> scan -> train-color (--input-dir the synthetic scans) -> colorize. A second
run of the script resumes: nothing is redone and nothing changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from mangacolor.imageio import list_images, read_image, write_image
from tests.conftest import drawing

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "pipeline.sh"
DEMO = ROOT.parent / "shared" / "data" / "demo" / "color"


def _artwork(count: int) -> list[np.ndarray]:
    """``count`` RGB pictures: the first demo images, or synthetic drawings without the corpus."""
    files = sorted(list_images(DEMO))[:count] if DEMO.is_dir() else []
    if len(files) == count:
        return [read_image(f, mode="RGB") for f in files]
    return [drawing(60, 90, seed=i) for i in range(count)]


def _make_dump(root: Path, count: int = 14) -> None:
    """A Danbooru-style dump: 512px-subset letterboxes (96 px here) and one metadata file."""
    lines = []
    for post_id, art in enumerate(_artwork(count), start=1):
        oh, ow = art.shape[:2]
        scale = 96 / max(oh, ow)
        ch, cw = max(1, round(oh * scale)), max(1, round(ow * scale))
        box = np.zeros((96, 96, 3), np.uint8)  # black letterbox, as in the 512px subset
        top, left = (96 - ch) // 2, (96 - cw) // 2
        box[top : top + ch, left : left + cw] = cv2.resize(art, (cw, ch), interpolation=cv2.INTER_AREA)
        write_image(root / "512px" / f"{post_id % 1000:04d}" / f"{post_id}.jpg", box)
        tags = "1girl solo" if post_id % 4 else "comic monochrome"  # every 4th post is filtered out
        lines.append(
            {"id": post_id, "md5": f"{post_id:032x}", "rating": "g", "image_width": ow, "image_height": oh,
             "file_ext": "png", "tag_string": tags, "tag_string_general": tags, "is_deleted": False}
        )  # fmt: skip
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "posts.json").write_text("\n".join(json.dumps(r) for r in lines) + "\n")


def _run(dump: Path, work: Path, steps: int = 2) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MANGACOLOR": f"{sys.executable} -m mangacolor",
        "PYTHON": sys.executable,
        "FILTER_ARGS": "--exclude-tag comic --rating g",
        "SIZE": "32",
        "LOAD": "48",
        "STEPS": str(steps),
        "WIDTH": "4",
        "DEPTH": "3",
        "SCAN_WIDTH": "4",
        "SCAN_BLOCKS": "1",
        "BATCH": "2",
        "DEVICE": "cpu",
        "WORKERS": "1",
        "OMP_NUM_THREADS": "1",
    }
    cmd = ["bash", str(SCRIPT), str(dump), str(work), str(dump / "metadata")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_pipeline_script_at_toy_size(tmp_path):
    dump, work = tmp_path / "dump", tmp_path / "work"
    _make_dump(dump)
    proc = _run(dump, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(work / "colorized")
    manifest = [json.loads(line) for line in (work / "filtered" / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in manifest] == [i for i in range(1, 15) if i % 4]  # 11 posts pass the filter
    for record in manifest:  # the letterbox is cut exactly, then the long side shrunk to LOAD
        cropped = read_image(work / "cropped" / record["file"], mode="RGB")
        ow, oh = record["image_width"], record["image_height"]
        assert max(cropped.shape[:2]) == 48 and abs(cropped.shape[1] / cropped.shape[0] - ow / oh) < 0.1
    scans = sorted((work / "scans").rglob("*.png"))
    synthetic = sorted((work / "synthetic").rglob("*.png"))
    colorized = sorted(p for p in (work / "colorized").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(scans) == 5 and len(synthetic) == 6 and len(colorized) == 5  # 11 split into scans and colour
    for path in synthetic:  # one grey PNG scan per colour image, same name stem and size
        grey = read_image(path, mode=None)
        assert grey.ndim == 2
        assert grey.shape == read_image(work / "colour" / f"{path.stem}.jpg").shape[:2]
    for path in colorized:
        img = cv2.imread(str(path))
        assert img is not None and img.ndim == 3 and img.shape[:2] == read_image(work / "scans" / path.name).shape[:2]
    model = work / "colour_run" / "model.safetensors"
    assert (work / "scan_run" / "model.safetensors").exists() and model.exists()

    before = {p: p.stat().st_mtime_ns for p in colorized}
    again = _run(dump, work)  # everything is there: stages skip or resume, outputs are kept
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in colorized} == before
    metrics = (work / "colour_run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(metrics[-1])["step"] == 2  # the finished run was resumed, not trained again

    longer = _run(dump, work, steps=3)  # both models trained further: their outputs are redone, not mixed
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert all(p.stat().st_mtime_ns != before[p] for p in colorized)

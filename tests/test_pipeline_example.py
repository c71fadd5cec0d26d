"""examples/pipeline.sh end to end at toy size, so the documented pipeline cannot rot.

The script's development path is exercised: there are no real scans, so half of the colour images
become scan-like pages (examples/make_fake_scans.py: `prepare lines` sketch lines plus flat
screentone dot bands in the dark regions — deliberately not luma) and the other half is the colour
domain; then prepare crop -> train-scan -> scan -> train-color (--input-dir the synthetic scans)
-> colorize.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2

from mangacolor.imageio import read_image, write_image
from tests.conftest import drawing

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "pipeline.sh"


def test_pipeline_script_at_toy_size(tmp_path):
    colour = tmp_path / "demo"
    for i in range(12):
        write_image(colour / f"art_{i:02d}.webp", drawing(40 + 2 * i, 56 - i, seed=i))
    env = {
        **os.environ,
        "MANGACOLOR": f"{sys.executable} -m mangacolor",
        "PYTHON": sys.executable,
        "SIZE": "32",
        "LOAD": "48",
        "STEPS": "2",
        "WIDTH": "4",
        "DEPTH": "3",
        "SCAN_WIDTH": "4",
        "SCAN_BLOCKS": "1",
        "BATCH": "2",
        "DEVICE": "cpu",
        "WORKERS": "1",
        "OMP_NUM_THREADS": "1",
    }
    work = tmp_path / "work"
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(colour), str(work)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(work / "colorized")
    scans = sorted((work / "scans").iterdir())
    synthetic = sorted((work / "synthetic").iterdir())
    colorized = sorted((work / "colorized").iterdir())
    assert len(scans) == 6 and len(synthetic) == 6 and len(colorized) == 6
    for path in synthetic:  # one grey PNG scan per colour image, same name stem and size
        grey = read_image(path, mode=None)
        assert path.suffix == ".png" and grey.ndim == 2
        assert grey.shape == read_image(work / "colour" / f"{path.stem}.webp").shape[:2]
    for path in colorized:
        img = cv2.imread(str(path))
        assert img is not None and img.ndim == 3 and img.shape[:2] == read_image(work / "scans" / path.name).shape[:2]
    assert (work / "scan_run" / "model.safetensors").exists() and (work / "colour_run" / "model.safetensors").exists()

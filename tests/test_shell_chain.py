"""End to end in a shell: train-color (a few steps on 8 tiny images) -> colorize, as a user types it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2

from tests.conftest import drawing


def test_train_then_colorize_in_a_shell(tmp_path):
    color = tmp_path / "color"
    color.mkdir()
    for i in range(8):
        cv2.imwrite(str(color / f"art_{i}.png"), drawing(40, 56, seed=i)[..., ::-1])
    pages = tmp_path / "pages" / "chapter 1"
    pages.mkdir(parents=True)
    for i in range(2):
        gray = cv2.cvtColor(drawing(70, 50, seed=10 + i), cv2.COLOR_RGB2GRAY)
        cv2.imwrite(str(pages / f"page_{i}.png"), gray)
    script = textwrap.dedent(
        f"""
        set -euo pipefail
        mc() {{ "{sys.executable}" -m mangacolor "$@"; }}
        mc train-color color run --width 4 --depth 3 --d-width 4 --steps 3 --batch-size 4 \\
            --crop-size 32 --log-every 1 --sample-every 0
        mc models run/model.safetensors --json > info.json
        mc colorize pages out --model run/model.safetensors > written.txt
        mc colorize pages out --model run/model.safetensors --json > second.json
        """
    )
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "written.txt").read_text().split("\n")
    assert sorted(w for w in written if w) == [f"out/chapter 1/page_{i}.png" for i in range(2)]
    for i in range(2):
        out = cv2.imread(str(tmp_path / "out" / "chapter 1" / f"page_{i}.png"))
        assert out.shape == (70, 50, 3)
    assert '"skipped": 2' in (tmp_path / "second.json").read_text()
    assert '"arch": "unet"' in (tmp_path / "info.json").read_text()

"""The folder driver and the processes around it: stopping, a killed command, links into the output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mangacolor.imageio import read_image, write_image
from mangacolor.prepare.borders import CropConfig, crop_folder
from mangacolor.prepare.runner import Job, RunOptions, iter_results
from mangacolor.report import FileResult
from tests.conftest import drawing

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _many(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(root / f"p{i:04d}.png", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    return root


def _descendants_of_forkservers() -> set[int]:
    """Processes whose command line is a multiprocessing fork server's (the server and its workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.forkserver" in cmdline or b"multiprocessing.resource_tracker" in cmdline:
            found.add(int(entry.name))
    return found


def _start_lines(src: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mangacolor", "prepare", "lines", str(src), str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and sum(1 for _ in out.glob("*.png")) >= 10:
            break
        time.sleep(0.05)
    return proc


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = {p for p in pids if Path(f"/proc/{p}").exists() and _state(p) != "Z"}
        if not alive:
            return set()
        time.sleep(0.1)
    return alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_command_leaves_no_workers_and_no_debris(tmp_path, how):
    src = _many(tmp_path / "in", 400)
    out = tmp_path / "out"
    before = _descendants_of_forkservers()
    proc = _start_lines(src, out)
    if proc.poll() is not None:
        pytest.skip("the stage finished before the signal")
    ours = _descendants_of_forkservers() - before
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=60)
    if how == "SIGTERM":
        assert proc.returncode == 143 and "stopped by SIGTERM" in err, err
    assert not _wait_gone(ours, 20), "worker processes outlived the command"
    written = sorted(out.glob("*.png"))
    settled = len(written)
    time.sleep(0.5)
    assert len(list(out.glob("*.png"))) == settled  # nothing writes after the end
    if how == "SIGTERM":
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    for path in written:
        assert read_image(path, mode=None).shape == (96, 96)
    again = subprocess.run(
        [sys.executable, "-m", "mangacolor", "prepare", "lines", str(src), str(out), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert len(list(out.glob("*.png"))) == 400


def test_a_linked_folder_that_leads_into_the_output_is_left_out(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    write_image(src / "a.png", drawing(seed=1))
    out.mkdir()
    (src / "sub").symlink_to(os.path.relpath(out, src))
    for _ in range(3):
        report = crop_folder(src, out, CropConfig(), RunOptions(workers=1))
        assert report.failed == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png"]
    assert report.skip_reasons.get("in the output folder (through a link); left out") == 1


def test_outputs_made_with_other_settings_are_not_mixed_in(tmp_path):
    from mangacolor.errors import MangacolorError
    from mangacolor.prepare.lines import LinesConfig, lines_folder
    from mangacolor.prepare.pair import pair_folders

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        write_image(src / f"a{i}.png", drawing(seed=i))
    one = RunOptions(workers=1)
    assert lines_folder(src, out, LinesConfig("sketch"), one).counts["done"] == 2
    assert lines_folder(src, out, LinesConfig("sketch"), one).counts["skipped"] == 2  # a re-run: same settings
    sketch = (out / "a0.png").read_bytes()
    with pytest.raises(
        MangacolorError, match=r"made by `prepare lines` with method='sketch', params=.+ \(now method='xdog'"
    ):
        lines_folder(src, out, LinesConfig("xdog"), one)
    assert (out / "a0.png").read_bytes() == sketch
    with pytest.raises(MangacolorError, match="made by `prepare lines`; the outputs would mix"):
        crop_folder(src, out, CropConfig(), one)
    redone = lines_folder(src, out, LinesConfig("xdog"), RunOptions(workers=1, overwrite=True))
    assert redone.counts["done"] == 2 and (out / "a0.png").read_bytes() != sketch
    assert lines_folder(src, out, LinesConfig("xdog"), one).counts["skipped"] == 2  # the record follows
    paired = tmp_path / "paired"
    pair_folders(src, src, paired, one, size=16)
    with pytest.raises(MangacolorError, match=r"with resize=16 \(now resize=24\)"):
        pair_folders(src, src, paired, one, size=24)


def test_the_record_is_the_settings_that_matter_and_binds_only_a_folder_with_outputs(tmp_path):
    from mangacolor.errors import MangacolorError
    from mangacolor.prepare.lines import LinesConfig, lines_folder
    from mangacolor.prepare.runner import SETTINGS_FILE

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        write_image(src / f"a{i}.png", drawing(seed=i))
    one = RunOptions(workers=1)
    lines_folder(src, out, LinesConfig("blur"), one)
    # a default given explicitly (or left out after giving it) is the same setting
    assert lines_folder(src, out, LinesConfig("blur", {"sigma": 4}), one).counts["skipped"] == 2
    with pytest.raises(MangacolorError, match=r"params=\{'sigma': 4.0\} \(now params=\{'sigma': 2.0\}\)"):
        lines_folder(src, out, LinesConfig("blur", {"sigma": 2}), one)
    older = json.loads((out / SETTINGS_FILE).read_text())  # as an earlier version wrote it: params as given
    older["params"] = {}
    del older["quality"]
    (out / SETTINGS_FILE).write_text(json.dumps(older))
    assert lines_folder(src, out, LinesConfig("blur"), one).counts["skipped"] == 2
    jpg = tmp_path / "jpg"
    crop_folder(src, jpg, CropConfig(), one, output_format="jpg", quality=20)
    with pytest.raises(MangacolorError, match=r"quality=20 \(now quality=95\)"):
        crop_folder(src, jpg, CropConfig(), one, output_format="jpg")
    lossless = tmp_path / "png"
    lines_folder(src, lossless, LinesConfig("blur"), one, quality=20)
    assert lines_folder(src, lossless, LinesConfig("blur"), one).counts["skipped"] == 2  # PNG: quality unused
    empty, nothing = tmp_path / "empty", tmp_path / "nothing"
    empty.mkdir()
    assert lines_folder(empty, nothing, LinesConfig("xdog"), one).total == 0
    assert not (nothing / SETTINGS_FILE).exists()  # a run that made nothing does not bind the folder
    assert lines_folder(src, nothing, LinesConfig("sketch"), one).counts["done"] == 2
    broken = tmp_path / "broken"
    (broken / "x.png").parent.mkdir()
    (broken / "x.png").write_bytes(b"not an image")
    assert lines_folder(broken, tmp_path / "failed", LinesConfig("xdog"), one).failed == 1
    assert not (tmp_path / "failed" / SETTINGS_FILE).exists()


def test_an_overwrite_whose_failed_files_keep_old_outputs_keeps_the_old_record(tmp_path):
    from mangacolor.errors import MangacolorError
    from mangacolor.prepare.lines import LinesConfig, lines_folder

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        write_image(src / f"a{i}.png", drawing(seed=i))
    one = RunOptions(workers=1)
    lines_folder(src, out, LinesConfig("sketch"), one)
    (src / "a1.png").write_bytes(b"damaged since")  # its output from the first run stays
    report = lines_folder(src, out, LinesConfig("xdog"), RunOptions(workers=1, overwrite=True))
    assert report.counts["done"] == 1 and report.failed == 1
    assert len(report.notes) == 1 and "keep their outputs made with the earlier settings" in report.notes[0]
    with pytest.raises(MangacolorError, match="method='sketch'"):
        lines_folder(src, out, LinesConfig("xdog"), one)  # would skip a1's sketch as an xdog output


def test_a_worker_whose_command_is_gone_ends_before_its_next_file_not_after_its_chunk(monkeypatch):
    """The watchdog's flag is checked between files: the main thread, taking the lock again at once,
    would otherwise run the whole chunk (minutes of large pages writing behind a re-run)."""
    from mangacolor.prepare import runner

    ran = []

    def task(job: Job) -> FileResult:
        ran.append(job.key)
        if len(ran) == 2:
            runner._PARENT_GONE.set()  # the command died while this file ran
        return FileResult(job.source, "done")

    def exit_(code):
        raise SystemExit(code)

    monkeypatch.setattr(runner.os, "_exit", exit_)
    try:
        with pytest.raises(SystemExit):
            runner._run_chunk(task, [Job(f"p{i}.png", (), f"p{i}") for i in range(8)])
    finally:
        runner._PARENT_GONE.clear()
    assert ran == ["p0", "p1"]  # the file in progress was finished, no other begun


@dataclass(frozen=True)
class _WriteThenCrashOn:
    """Writes each job's output, but its worker dies on one file before writing it."""

    name: str

    def __call__(self, job: Job) -> FileResult:
        if Path(job.source).name == self.name:
            os._exit(3)
        Path(job.outputs[0]).write_bytes(b"done")
        return FileResult(job.source, "done", outputs=list(job.outputs))


def test_files_written_before_their_worker_died_count_as_done(tmp_path):
    jobs = [Job(f"in/p{i}.png", (str(tmp_path / f"p{i}.out"),), f"p{i}") for i in range(8)]
    results = [r for _, r in iter_results(jobs, _WriteThenCrashOn("p5.png"), RunOptions(workers=2, chunksize=4))]
    status = {Path(r.path).name: r.status for r in results}
    assert status["p5.png"] == "failed" and status["p4.png"] == "done"  # p4 ran before p5 in the same batch
    assert all(status[f"p{i}.png"] == ("done" if (tmp_path / f"p{i}.out").exists() else "failed") for i in range(8))


def test_workers_under_the_console_script_hold_no_torch(tmp_path):
    """A fork server's worker imports the main script again: the ``mangacolor`` script keeps that light."""
    script = shutil.which("mangacolor")
    if script is None:
        pytest.skip("the mangacolor console script is not installed")
    src = _many(tmp_path / "in", 300)
    out = tmp_path / "out"
    before = _descendants_of_forkservers()
    proc = subprocess.Popen(
        [script, "prepare", "lines", str(src), str(out), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.is_dir() and sum(1 for _ in out.glob("*.png")) >= 10:
                break
            time.sleep(0.05)
        ours = _descendants_of_forkservers() - before
        if proc.poll() is not None or not ours:
            pytest.skip("the stage finished before its workers could be looked at")
        with_torch = []
        for pid in ours:
            try:
                if "libtorch" in Path(f"/proc/{pid}/maps").read_text():
                    with_torch.append(pid)
            except OSError:
                continue
        assert not with_torch, "a prepare worker has torch loaded"
    finally:
        proc.terminate()
        proc.communicate(timeout=60)

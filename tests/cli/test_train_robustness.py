"""train-color / train-scan: resumes, option checks and run folders under the conditions users meet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mangacolor.cli import app
from mangacolor.data import split_files

runner = CliRunner()

TOY = ["--width", "4", "--depth", "3", "--d-width", "4", "--batch-size", "2", "--crop-size", "32"]
QUIET = ["--sample-every", "0", "--log-every", "1", "--device", "cpu"]


def _train(*args: str):
    return runner.invoke(app, ["train-color", *args])


def test_a_run_that_died_before_its_first_save_can_be_resumed_or_restarted(color_folder, tmp_path, caplog):
    run = tmp_path / "run"
    first = _train(str(color_folder), str(run), "--steps", "2", *TOY, *QUIET)
    assert first.exit_code == 0, first.output
    (run / "resume.pt").unlink()  # as if killed before the first save: config.json and metrics only
    for name in ("model.safetensors", "latest.safetensors"):
        (run / name).unlink(missing_ok=True)
    resumed = _train("--resume", str(run))
    assert resumed.exit_code == 0, resumed.output
    assert "no resume state (resume.pt) saved yet: starting from step 0" in caplog.text
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # the dead run's lines are not kept twice
    (run / "resume.pt").unlink()
    restarted = _train(str(color_folder), str(run), "--steps", "2", *TOY, *QUIET)
    assert restarted.exit_code == 0, restarted.output


def test_resume_refuses_options_it_cannot_change_and_takes_the_ones_it_can(color_folder, tmp_path):
    run = tmp_path / "run"
    assert _train(str(color_folder), str(run), "--steps", "2", *TOY, *QUIET).exit_code == 0
    refused = _train("--resume", str(run), "--lr-g", "0.1", "--crop-size", "64")
    assert refused.exit_code == 2
    assert "--crop-size, --lr-g cannot change" in refused.stderr and "--steps" in refused.stderr
    other = _train(str(color_folder), str(tmp_path / "other"), "--resume", str(run))
    assert other.exit_code == 2 and "RUN_DIR cannot change" in other.stderr and "DATA" not in other.stderr
    wider = _train(str(color_folder), str(run), "--resume", str(run), *TOY[:2], "--width", "8", "--depth", "4")
    assert wider.exit_code == 2 and "--width, --depth cannot change" in wider.stderr
    shorter = _train("--resume", str(run), "--steps", "1")
    assert shorter.exit_code == 2 and "stands at step 2, beyond the 1 steps asked for" in shorter.stderr
    # the run's own values repeated (a script resuming with its first command line) are not a change
    longer = _train("--resume", str(run), "--steps", "3", "--device", "cpu", "--crop-size", "32", "--seed", "0")
    assert longer.exit_code == 0, longer.output
    assert json.loads((run / "config.json").read_text())["steps"] == 3
    # the whole first command line: paths, options kept under other names (--width as model.base_width)
    first_line = [str(color_folder), str(run), "--steps", "4", *TOY, *QUIET, "--model-config", '{"depth": 3}']
    again = _train(*first_line, "--resume", str(run))
    assert again.exit_code == 0, again.output
    assert json.loads((run / "config.json").read_text())["steps"] == 4
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1] == 4


def test_resume_warns_when_the_training_images_changed(color_folder, tmp_path, caplog):
    run = tmp_path / "run"
    assert _train(str(color_folder), str(run), "--steps", "1", *TOY, *QUIET).exit_code == 0
    same = _train("--resume", str(run), "--steps", "2")
    assert same.exit_code == 0 and "changed since the run was saved" not in caplog.text
    extra = color_folder / "zz_added.png"
    extra.write_bytes((color_folder / sorted(os.listdir(color_folder))[0]).read_bytes())
    changed = _train("--resume", str(run), "--steps", "3")
    assert changed.exit_code == 0, changed.output
    assert "training images of" in caplog.text and "changed since the run was saved" in caplog.text


def test_resume_of_the_other_commands_run_or_a_damaged_state(color_folder, tmp_path):
    run = tmp_path / "run"
    assert _train(str(color_folder), str(run), "--steps", "1", *TOY, *QUIET).exit_code == 0
    wrong = runner.invoke(app, ["train-scan", "--resume", str(run)])
    assert wrong.exit_code == 2 and "not the config of a train-scan run" in wrong.stderr
    (run / "resume.pt").write_bytes(b"")
    damaged = _train("--resume", str(run))
    assert damaged.exit_code == 2 and "resume.pt: unreadable resume state" in damaged.stderr
    (run / "config.json").write_text("[]")
    listed = _train("--resume", str(run))
    assert listed.exit_code == 2 and "not the config of a train-color run" in listed.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--load-size", "0"], "--load-size must be >= 1"),
        (["--load-size", "-5"], "--load-size must be >= 1"),
        (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
        (["--val-fraction", "0.99"], "nothing is left to train on"),
        (["--lr-g", "-1"], "--lr-g must be > 0"),
        (["--lr-d", "nan"], "--lr-d must be > 0"),
        (["--decay-start", "-1"], "--decay-start must be in [0, 1]"),
        (["--model-config", "{x"], "--model-config: not valid JSON"),
        (["--d-config", "[1, 2]"], "--d-config must be a JSON object"),
        (["--input", "lines", "--lines-method", "foo"], "--lines-method must be one of blur, sketch, xdog"),
        (["--gan-weight", "nan"], "--gan-weight must be >= 0"),
        (["--l1-weight", "-1"], "--l1-weight must be >= 0"),
        (["--perceptual", "-0.5"], "--perceptual must be >= 0"),
        (["--model-config", '{"nope": 1}'], "nope"),  # refused by the architecture, once the folder is made
        (["--load-size", "16"], "--load-size 16 is smaller than the 32 px crop"),
        (["--depth", "40"], "multiples of 1099511627776 (2^40: one halving per level)"),
        (["--model-config", '{"in_channels": 3}'], "a colorizer reads 1 channel"),
    ],
)
def test_bad_values_are_refused_before_the_run_folder_is_made(color_folder, tmp_path, option, message):
    result = _train(str(color_folder), str(tmp_path / "run"), "--steps", "1", *TOY, *option)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_scan_trainer_checks_its_options_too(color_folder, tmp_path):
    result = runner.invoke(
        app, ["train-scan", str(color_folder), str(color_folder), str(tmp_path / "r"), "--load-size", "-3"]
    )
    assert result.exit_code == 2 and "--load-size must be >= 1" in result.stderr
    result = runner.invoke(
        app, ["train-scan", str(color_folder), str(color_folder), str(tmp_path / "r"), "--cycle-weight", "-1"]
    )
    assert result.exit_code == 2 and "--cycle-weight must be >= 0. Got -1" in result.stderr


def test_scan_trainer_checks_sizes_before_reading_the_folders(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")  # decoding would fail: the size check must come first
    result = runner.invoke(app, ["train-scan", str(bad), str(bad), str(tmp_path / "r"), "--crop-size", "30"])
    assert result.exit_code == 2 and "30" in result.stderr and "could be read" not in result.stderr


def test_run_folder_that_is_a_file_or_in_use(color_folder, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for run in (blocker, blocker / "sub"):
        result = _train(str(color_folder), str(run), "--steps", "1", *TOY, *QUIET)
        assert result.exit_code == 2 and "cannot use as a run folder" in result.stderr, result.output
    fcntl = pytest.importorskip("fcntl")
    run = tmp_path / "busy"
    run.mkdir()
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process training here
        result = _train(str(color_folder), str(run), "--steps", "1", *TOY, *QUIET)
        assert result.exit_code == 2 and "another process is training in this run folder" in result.stderr
    finally:
        os.close(fd)


def test_unreadable_validation_images_cost_the_validation_not_the_run(color_folder, tmp_path, caplog):
    name = next(f"bad{i}.png" for i in range(1000) if split_files([Path(f"bad{i}.png")], 0.5)[1])
    (color_folder / name).write_bytes(b"")  # held out, and unreadable
    files = sorted(color_folder.iterdir())
    _, held_out = split_files(files, 0.5)
    for path in held_out:  # every held-out file unreadable
        path.write_bytes(b"")
    run = tmp_path / "run"
    result = _train(str(color_folder), str(run), "--steps", "2", "--val-fraction", "0.5", *TOY, *QUIET)
    assert result.exit_code == 0, result.output
    assert "no validation: none of the 3 validation images could be read" in caplog.text and name in caplog.text
    info = runner.invoke(app, ["models", str(run / "model.safetensors"), "--json"])
    assert json.loads(info.stdout)["provenance"]["data_files"] == len(files) - len(held_out)


def test_all_training_images_unreadable_names_them(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"x{i}.png").write_bytes(b"not a png")
    result = _train(str(folder), str(tmp_path / "run"), "--steps", "1", *TOY, *QUIET)
    assert result.exit_code == 2 and "none of the 3 training images could be read" in result.stderr
    assert "x0.png" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing saved: no half-made run folder left to trip a rerun
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    again = _train(str(folder), str(tmp_path / "run"), "--steps", "1", *TOY, *QUIET)
    assert again.exit_code == 2 and (tmp_path / "run" / "notes.txt").read_text() == "mine"  # not ours to remove


def test_l1_only_training_takes_crops_smaller_than_the_discriminator_needs(color_folder, tmp_path):
    args = [str(color_folder), str(tmp_path / "run"), "--steps", "1", "--crop-size", "8", "--depth", "3"]
    args += ["--width", "4", "--batch-size", "2", *QUIET]
    refused = _train(*args)  # with the GAN on, the discriminator needs 24 px
    assert refused.exit_code == 2 and "the smallest the discriminator takes" in refused.stderr
    result = _train(*args, "--gan-weight", "0")
    assert result.exit_code == 0, result.output


def test_test_fraction_images_are_never_read_nor_used_for_validation(color_folder, tmp_path, caplog):
    for i in range(8, 24):  # 24 drawings, so each share of the hash range has some
        (color_folder / f"img{i}.png").write_bytes((color_folder / f"img{i % 8}.png").read_bytes())
    files = sorted(color_folder.iterdir())
    _, test = split_files(files, 0.3)
    train, val = split_files(files, 0.3, skip_fraction=0.3)
    assert test and val
    for path in test:  # were a test image read, training or validation would report it unreadable
        path.write_bytes(b"")
    run = tmp_path / "run"
    args = ["--steps", "2", "--val-fraction", "0.3", "--test-fraction", "0.3", *TOY, *QUIET]
    result = _train(str(color_folder), str(run), *args)
    assert result.exit_code == 0, result.output
    assert "unreadable" not in caplog.text and "no validation" not in caplog.text
    assert "val_l1" in (run / "metrics.jsonl").read_text()
    info = runner.invoke(app, ["models", str(run / "model.safetensors"), "--json"])
    provenance = json.loads(info.stdout)["provenance"]
    assert provenance["data_files"] == len(train)
    assert (provenance["val_fraction"], provenance["test_fraction"]) == (0.3, 0.3)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        (["--test-fraction", "1"], "--test-fraction must be in [0, 1)"),
        (["--test-fraction", "0.6", "--val-fraction", "0.4"], "together hold out every image"),
    ],
)
def test_test_fraction_is_checked_before_anything_is_written(color_folder, tmp_path, fractions, message):
    run = tmp_path / "run"
    result = _train(str(color_folder), str(run), "--steps", "1", *fractions, *TOY, *QUIET)
    assert result.exit_code == 2 and message in result.stderr
    assert not run.exists()


def test_the_progress_bar_appears_with_the_first_step(monkeypatch):
    """On a terminal: a run refused while it loads its data leaves no empty bar above its error."""
    import io

    from rich.console import Console

    from mangacolor.cli import _common

    out = io.StringIO()
    monkeypatch.setattr(_common, "console", Console(file=out, force_terminal=True, width=100))
    with pytest.raises(RuntimeError), _common.training_progress("train-color", lambda k: True):
        raise RuntimeError("no images")
    assert out.getvalue() == ""
    with _common.training_progress("train-color", lambda k: k == "loss_d") as on_step:
        on_step(3, 10, {"loss_d": 0.5, "lr_g": 1e-4})  # a resumed run: its first step is 3 of 10
    shown = out.getvalue()
    assert "train-color" in shown and "3/10" in shown and "d=0.5" in shown and "lr_g" not in shown
    out.seek(0)
    out.truncate()
    with pytest.raises(RuntimeError), _common.batch_progress("colorize"):  # batch commands alike
        raise RuntimeError("no such file or directory")
    assert out.getvalue() == ""
    with _common.batch_progress("colorize") as advance:
        advance()
        advance()
    assert "colorize" in out.getvalue() and "2/?" in out.getvalue()
    out.seek(0)
    out.truncate()
    with _common.batch_progress("colorize", total=5) as advance:  # a known total: the bar shows how far
        advance()
    assert "1/5" in out.getvalue()


def test_count_pages_leaves_out_the_output_inside_the_input(tmp_path):
    from mangacolor.imageio import write_image
    from mangacolor.inference import count_pages

    for rel in ("a.png", "ch/b.png", "out/old.png"):
        write_image(tmp_path / "in" / rel, np.zeros((4, 4), np.uint8))
    assert count_pages(tmp_path / "in", tmp_path / "in" / "out") == 2
    assert count_pages(tmp_path / "in", tmp_path / "elsewhere") == 3
    assert count_pages(tmp_path / "in" / "a.png", tmp_path / "x.png") == 1
    assert count_pages(tmp_path / "missing", tmp_path / "o") == 0


def test_sigterm_to_the_whole_process_group_saves_a_run_with_loader_workers(color_folder, tmp_path):
    """``timeout``, ``kill -TERM -PGID`` and job queues signal the group: the data workers as well."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mangacolor", "train-color", str(color_folder), str(run), "--steps", "5000"]
    cmd += [*TOY, "--sample-every", "0", "--log-every", "2", "--device", "cpu", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "Traceback" not in err and (run / "resume.pt").is_file() and (run / "latest.safetensors").is_file()


def test_data_and_input_dir_must_be_folders(color_folder, tmp_path):
    page = str(color_folder / "img0.png")
    for args, name in (
        ([page, str(tmp_path / "run")], "DATA"),
        ([str(color_folder), str(tmp_path / "run"), "--input-dir", page], "--input-dir"),
    ):
        result = _train(*args, "--steps", "1", *TOY, *QUIET)
        assert result.exit_code == 2 and f"{name} must be a folder of images, not a file" in result.stderr
    assert not (tmp_path / "run").exists()


def test_pretraining_that_covers_the_whole_run_is_pointed_out(color_folder, tmp_path, caplog):
    result = _train(str(color_folder), str(tmp_path / "run"), "--steps", "2", "--pretrain-steps", "5", *TOY, *QUIET)
    assert result.exit_code == 0, result.output
    assert "--pretrain-steps 5 covers all 2 steps: the discriminator never trains" in caplog.text


def test_options_repeated_in_their_stored_form_are_not_a_change(tmp_path):
    """What a resume with the first command line compares: paths made absolute, --stages parsed,
    numbers whatever their type, options kept under other names."""
    from types import SimpleNamespace

    from mangacolor.cli._common import _as_stored, stored_in, stored_json, stored_under

    config = SimpleNamespace(
        scans=str(tmp_path / "scans"),
        crop_size=64,
        stages=[32, 48],
        lr_g=0.0002,
        generator={"base_width": 8, "n_blocks": 2},
        perceptual_weight=10.0,
    )
    same = {"blocks": stored_in("generator", "n_blocks"), "perceptual": stored_under("perceptual_weight")}
    assert _as_stored(tmp_path / "scans", config, "scans", {})
    assert not _as_stored(tmp_path / "other", config, "scans", {})
    assert _as_stored("32,48", config, "stages", {}) and _as_stored("32, 48", config, "stages", {})
    assert not _as_stored("32", config, "stages", {})
    assert _as_stored(2e-4, config, "lr_g", {}) and not _as_stored(1e-3, config, "lr_g", {})
    assert _as_stored(2, config, "blocks", same) and not _as_stored(3, config, "blocks", same)
    assert _as_stored(10, config, "perceptual", same)
    assert not _as_stored(True, config, "nothing_like_it", {})
    config.model = {"depth": 3, "norm": "layer"}
    assert stored_json("model")(config, '{"norm": "layer"}') and not stored_json("model")(config, '{"norm": "batch"}')
    assert not stored_json("model")(config, "not json")


def test_damaged_or_foreign_resume_state_is_a_one_line_error(color_folder, tmp_path):
    run = tmp_path / "run"
    assert _train(str(color_folder), str(run), "--steps", "1", *TOY, *QUIET).exit_code == 0
    good = (run / "resume.pt").read_bytes()

    def resume_error() -> str:
        result = _train("--resume", str(run), "--steps", "2")
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        return " ".join(result.stderr.replace("│", " ").split())

    (run / "resume.pt").write_bytes(b"garbage")
    error = resume_error()
    assert "resume.pt: unreadable resume state (not a PyTorch file" in error
    assert "weights_only" not in error  # torch's advice to unpickle the file is not ours to give
    torch.save({"generator": {}, "step": 1}, run / "resume.pt")  # another program's (or trainer's) state
    assert "resume.pt: not a resume state of this program" in resume_error()
    torch.save({"task": {"generator": {}}, "step": 1}, run / "resume.pt")
    assert "resume state that does not fit this run" in resume_error()
    (run / "resume.pt").write_bytes(good)
    config = json.loads((run / "config.json").read_text())
    config["model"]["base_width"] = 8  # a config edited by hand
    (run / "config.json").write_text(json.dumps(config))
    error = resume_error()
    assert "resume state that does not fit this run (size mismatch for" in error and len(error) < 400

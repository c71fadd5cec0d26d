"""The quality benchmarks end to end at toy scale: split, training, colorizing, scoring, tables."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mangacolor import checkpoint
from mangacolor.imageio import read_image
from mangacolor.inference import load_colorizer
from mangacolor.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args, "--toy", "--size", "32", "--batch-size", "2"]
    cmd += ["--val-fraction", "0.5", "--sheet-count", "2", "--device", "cpu", "--no-fid"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def demo(color_folder):
    return color_folder  # 8 drawings: --val-fraction 0.5 holds 2 out


def test_compare_inputs_scores_every_training_input_on_both_heldout_kinds(demo, tmp_path):
    out = tmp_path / "ci"
    proc = _run("compare_inputs.py", str(demo), str(out), "--steps", "2", "--train-inputs", "luma", "mix")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    rows = [(e["inputs"], e["model"]) for e in report["entries"]]
    assert rows == [
        ("luma", "input (no colour)"),
        ("luma", "luma"),
        ("luma", "mix"),
        ("lines", "input (no colour)"),
        ("lines", "luma"),
        ("lines", "mix"),
    ]
    assert report["train_images"] + report["heldout_images"] == 8 and report["heldout_images"] >= 2
    trained = [e for e in report["entries"] if e["steps"]]
    assert all(e["steps"] == 2 and not e["error"] and e["metrics"]["evaluated"] >= 2 for e in trained)
    assert (out / "runs" / "mix" / "model.safetensors").exists() and (out / "sheets" / "lines_mix.png").exists()
    assert "| held-out input | trained on |" in (out / "results.md").read_text() == proc.stdout
    again = _run(
        "compare_inputs.py", str(demo), str(out), "--steps", "2", "--train-inputs", "mix", "--heldout", "lines", "tone"
    )
    assert again.returncode == 0 and "reusing the finished training" in again.stderr, again.stderr[-3000:]
    rows = [(e["inputs"], e["model"]) for e in json.loads((out / "results.json").read_text())["entries"]]
    assert rows == [("lines", "input (no colour)"), ("lines", "mix"), ("tone", "input (no colour)"), ("tone", "mix")]
    tone = sorted((out / "heldout" / "tone").glob("*.png"))
    assert len(tone) == report["heldout_images"] and "are ink pages for --merge auto" in again.stderr
    other = _run("compare_inputs.py", str(demo), str(out), "--steps", "2", "--train-inputs", "mix",
                 "--train-config", '{"l1_weight": 10, "decay_start": 1.0}')  # fmt: skip
    assert other.returncode != 0 and "was trained with other decay_start, l1_weight" in other.stderr


def test_compare_inputs_train_config(demo, tmp_path):
    out = tmp_path / "tc"
    config = (
        '{"l1_weight": 10, "lr_g": 0.0002, "load_size": 64, "crop_size": 48, "gan_loss": "hinge", "val_fraction": 0.2}'
    )
    proc = _run("compare_inputs.py", str(demo), str(out), "--steps", "1", "--train-inputs", "mix",
                "--heldout", "luma", "--train-config", config)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "runs" / "mix" / "config.json").read_text())
    fields = ("l1_weight", "lr_g", "load_size", "crop_size", "gan_loss")
    assert [run[k] for k in fields] == [10, 0.0002, 64, 48, "hinge"]
    assert (run["val_fraction"], run["test_fraction"]) == (0.2, 0.5)  # validation past the held-out share
    assert json.loads((out / "runs" / "mix" / "train.json").read_text())["settings"]["l1_weight"] == 10
    trained = json.loads((out / "results.json").read_text())["entries"][1]  # the mix model on held-out luma
    model = out / "runs" / "mix" / "model.safetensors"
    scored = _run("compare_inputs.py", str(demo), str(out), "--train-inputs", "--heldout", "luma",
                  "--score-model", f"mine={model}")  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())["entries"]
    assert [e["model"] for e in rows] == ["input (no colour)", "mine"] and "| luma | mine | – | – |" in scored.stdout
    assert rows[1]["metrics"]["psnr"] == pytest.approx(trained["metrics"]["psnr"]) and not rows[1]["error"]
    line_model = out / "runs" / "mix" / "best.safetensors"
    paired = _run("compare_inputs.py", str(demo), str(out), "--train-inputs", "--heldout", "lines",
                  "--score-model", f"mine={model}", "--score-model", f"two={model}",
                  "--line-model", f"two={line_model}")  # fmt: skip
    assert paired.returncode == 0, paired.stderr[-3000:]
    alone, two = json.loads((out / "results.json").read_text())["entries"][1:]
    assert (alone["model"], two["model"]) == ("mine", "two") and not two["error"]
    router = load_colorizer(model, line_model, device="cpu", size=32, merge="multiply")
    for drawing_file in sorted((out / "heldout" / "lines").iterdir()):  # as colorize --line-model does it
        got = read_image(out / "pred" / "lines" / "two" / drawing_file.name)
        assert np.abs(got.astype(int) - router(read_image(drawing_file))[0]).max() <= 1
    assert router.pages[1] > 0  # line drawings went to the line model
    for bad, message in [
        (["--score-model", f"a={model}", "--line-model", f"b={model}"], "--line-model: b: name one --score-model"),
        (["--score-model", "mix=" + str(model)], "'mix' is taken"),
        (["--score-model", "x"], "takes NAME=CHECKPOINT"),
        (["--score-model", f"x={tmp_path / 'none.safetensors'}"], "none.safetensors"),
    ]:
        refused = _run("compare_inputs.py", str(demo), str(tmp_path / "bad"), *bad)
        assert refused.returncode == 2 and message in refused.stderr, (bad, refused.stderr[-500:])
    for bad, message in [
        ("[1]", "takes a JSON object"),
        ('{"seed": 1}', "use --seed (not seed)"),
        ('{"steps": 9}', "steps cannot be set here"),
        ('{"lr_g": -1}', "--lr-g must be > 0"),
        ('{"l1_weight": "x"}', "a value of the wrong type"),
        ('{"test_fraction": 0.1}', "test_fraction cannot be set here"),
        ('{"val_fraction": 0.6}', "together hold out every image"),  # with --val-fraction 0.5
    ]:
        refused = _run("compare_inputs.py", str(demo), str(tmp_path / "bad"), "--train-config", bad)
        assert refused.returncode == 2 and message in refused.stderr, (bad, refused.stderr[-500:])
    assert not (tmp_path / "bad").exists()
    missing = _run("compare_inputs.py", str(tmp_path / "nowhere"), str(tmp_path / "bad"))
    assert missing.returncode == 2 and "nowhere: no such file or directory" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "bad").exists()


def test_compare_inputs_trains_on_synthetic_scans(demo, tmp_path, scan_checkpoint, random_vgg):
    out = tmp_path / "scans"
    args = ["--steps", "2", "--train-inputs", "scans", "scans+lines", "--heldout", "lines"]
    args += ["--perceptual", "1", "--vgg-weights", str(random_vgg)]
    proc = _run("compare_inputs.py", str(demo), str(out), *args, "--scan-model", str(scan_checkpoint))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert [e["model"] for e in report["entries"]] == ["input (no colour)", "scans", "scans+lines"]
    assert all(not e["error"] for e in report["entries"])
    assert len(list((out / "scans").glob("*.png"))) == report["train_images"]  # one scan per training image
    inputs = [json.loads((out / "runs" / k / "config.json").read_text()) for k in ("scans", "scans+lines")]
    scans = str(out / "scans")
    assert [(c["input_dir"], c["input_kind"]) for c in inputs] == [(scans, "luma"), (scans, "mix")]
    assert all(c["perceptual_weight"] == 1 and c["vgg_weights"] == str(random_vgg) for c in inputs)
    missing = _run("compare_inputs.py", str(demo), str(tmp_path / "m"), "--train-inputs", "scans+lines")
    assert missing.returncode == 2 and "need --scan-model" in missing.stderr


def test_compare_archs_with_the_l1_baseline(demo, tmp_path):
    out = tmp_path / "ca"
    proc = _run("compare_archs.py", str(demo), str(out), "--minutes", "0.02", "--archs", "unet", "--inputs", "lines")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert [e["model"] for e in report["entries"]] == ["input (no colour)", "unet", "unet (L1 only)"]
    assert all(not e["error"] for e in report["entries"]) and report["entries"][1]["steps"] >= 1
    assert "logical cores" in report["machine"] and "torch" in report["machine"]  # numbers name their machine


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_norm_stats_scores_running_and_per_image_statistics(color_folder, toy_checkpoint, tmp_path):
    grey = tmp_path / "grey"
    grey.mkdir()
    for path in color_folder.iterdir():
        cv2.imwrite(str(grey / path.name), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    instance = tmp_path / "instance.safetensors"
    checkpoint.save(instance, create_model("unet", base_width=4, depth=3, norm="instance"), {"working_size": 32})
    script = [sys.executable, str(ROOT / "benchmarks" / "norm_stats.py")]
    number = r"\d+\.\d\d"
    for model, own, own_colour in [(toy_checkpoint, number, number), (instance, r"– \(no batch norm\)", "–")]:
        proc = subprocess.run([*script, str(model), str(color_folder), str(grey)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        row = rf"^\| grey \| 8 \| {number} \| {own} \| {number} \| {own_colour} \|$"
        assert re.search(row, proc.stdout, re.M), proc.stdout
    unmatched = tmp_path / "other"
    unmatched.mkdir()
    cv2.imwrite(str(unmatched / "zzz.png"), np.zeros((8, 8), np.uint8))
    proc = subprocess.run(
        [*script, str(toy_checkpoint), str(color_folder), str(unmatched)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "other: no image matches one in" in proc.stderr

    net = create_model("unet", base_width=4, depth=3).eval()
    net(torch.rand(2, 1, 32, 32))  # eval mode: running statistics stay at their start values
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    assert _load_script("norm_stats").use_image_statistics(net) == len(before) // 2 > 0
    x = torch.rand(1, 1, 32, 32) * 5
    out = net(x)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # running statistics unchanged
    net.eval()
    assert not torch.allclose(out, net(x))  # the image's own statistics, not the running ones, were used


def test_colorize_bench_reports_the_child_error_in_one_line(tmp_path):
    script = [sys.executable, str(ROOT / "benchmarks" / "colorize_bench.py")]
    missing = tmp_path / "missing.safetensors"
    proc = subprocess.run([*script, "--pages", "1", "--model", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"error: {missing}: no such checkpoint file"  # not a CalledProcessError traceback
    proc = subprocess.run([*script, "--pages", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--pages and --batch-size must be at least 1" in proc.stderr


def test_scan_bench_refuses_bad_arguments_before_timing(color_folder, toy_checkpoint):
    script = [sys.executable, str(ROOT / "benchmarks" / "scan_bench.py"), "--part", "resolution"]
    script += ["--images", str(color_folder)]
    proc = subprocess.run([*script, "--model", str(toy_checkpoint)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.strip().endswith("a colorize model, not a scan generator (train-scan)")
    proc = subprocess.run([*script, "--model", "oracle", "--sizes", "64,x"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--sizes takes working sizes" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("script", ["compare_archs.py", "compare_inputs.py"])
def test_compare_scripts_check_numeric_options_before_any_work(demo, tmp_path, script):
    for bad, message in [(["--size", "-5"], "must be at least 1"), (["--val-fraction", "2"], "--val-fraction must be")]:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), str(demo), str(tmp_path / "out"), "--toy", *bad],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "out").exists()


def test_machine_line_names_cpu_cores_and_torch():
    line = _load_script("machine").describe("cpu")
    assert re.fullmatch(r"machine: .+, \d+ logical cores \(\d+ usable\), torch \S+ with \d+ threads", line), line


def test_prepare_and_train_bench_refuse_bad_arguments_in_one_line(tmp_path):
    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "benchmarks" / script), *args]
        return subprocess.run(command, capture_output=True, text=True)

    for script, args, message in [
        ("prepare_bench.py", ["--count", "0"], "--count and --workers must be at least 1"),
        ("train_bench.py", ["--steps", "0"], "--steps must be at least 1"),
        ("train_bench.py", ["--arch", "foo"], "--arch foo: not a colorizer"),
    ]:
        proc = run(script, *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run("prepare_bench.py", "--source", str(tmp_path / "nope"))
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {tmp_path / 'nope'}: no such file or directory"

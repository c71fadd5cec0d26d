"""The quality benchmarks end to end at toy scale: split, training, colorizing, scoring, tables."""

from __future__ import annotations

import argparse
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
from mangacolor.errors import MangacolorError
from mangacolor.imageio import read_image
from mangacolor.inference import load_colorizer
from mangacolor.models import create_model
from tests.conftest import drawing

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
    heldout = sorted(p.name for p in (out / "heldout" / "truth").iterdir())
    command = [sys.executable, str(ROOT / "benchmarks" / "compare_inputs.py"), str(demo), str(out), "--toy"]
    command += ["--steps", "2", "--size", "32", "--batch-size", "2", "--train-inputs", "mix", "--val-fraction", "0.75"]
    resplit = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resplit.returncode == 2 and "was trained on another split" in resplit.stderr, resplit.stderr[-2000:]
    assert sorted(p.name for p in (out / "heldout" / "truth").iterdir()) == heldout  # refused before any writing


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
        (["--train-inputs", "scans", "--scan-model", str(model)], "a colorize model, not a scan generator"),
        (["--limit", "0"], "--limit must be at least 1"),
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
    assert proc.stderr.startswith("machine: ")
    again = _run("compare_archs.py", str(demo), str(out), "--minutes", "0.02", "--archs", "unet", "--inputs", "lines")
    assert again.returncode == 2 and again.stderr.strip().endswith("give another OUT, or --overwrite to replace it")
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr


def _benchmark_module(name: str, monkeypatch: pytest.MonkeyPatch):
    """A benchmark script imported as a module, with its neighbours (``machine``, ``compare_archs``) importable."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module(name)


def _split_args(data: Path, out: Path, val_fraction: float) -> argparse.Namespace:
    return argparse.Namespace(data=data, out=out, limit=None, val_fraction=val_fraction, size=32, lines_method="sketch")


def test_every_split_rebuilds_the_training_links_heldout_and_predictions(color_folder, tmp_path, monkeypatch):
    archs = _benchmark_module("compare_archs", monkeypatch)
    out = tmp_path / "out"
    _, train, names = archs.split_and_prepare(_split_args(color_folder, out, 0.5))
    stale = out / "pred" / "luma" / "unet" / f"{names[0]}.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier call's prediction")
    n_train, train, names = archs.split_and_prepare(_split_args(color_folder, out, 0.75))
    files = sorted(p.name for p in color_folder.iterdir())
    linked = sorted(p.name for p in train.iterdir())
    assert len(linked) == n_train and sorted(linked + [f"{n}.png" for n in names]) == files  # the split, exactly
    for kind in ("truth", "luma", "lines"):
        assert sorted(p.stem for p in (out / "heldout" / kind).iterdir()) == sorted(names), kind
    assert not (out / "pred").exists()  # no earlier prediction is scored
    inside = archs.split_data(_split_args(color_folder, color_folder / "out", 0.5))
    assert inside is None and not (color_folder / "out").exists()  # OUT inside DATA: its copies would be data


def test_compare_inputs_reuses_a_training_only_on_its_own_split(color_folder, tmp_path, monkeypatch):
    inputs = _benchmark_module("compare_inputs", monkeypatch)
    run = tmp_path / "runs" / "luma"
    run.mkdir(parents=True)
    (run / "model.safetensors").write_bytes(b"")
    split = inputs.split_record(_split_args(color_folder, tmp_path, 0.5), sorted(color_folder.iterdir())[:6])
    (run / "train.json").write_text(json.dumps({"steps": 2, "seconds": 1.0, "settings": {}, "split": split}))
    assert inputs._reuse_problem(run, 2, {}, split) == ""
    other = inputs.split_record(_split_args(color_folder, tmp_path, 0.75), sorted(color_folder.iterdir())[:5])
    assert "was trained on another split" in inputs._reuse_problem(run, 2, {}, other)
    (run / "train.json").write_text(json.dumps({"steps": 2, "seconds": 1.0, "settings": {}}))  # an older record
    assert "does not record the split" in inputs._reuse_problem(run, 2, {}, split)
    assert inputs._reuse_problem(tmp_path / "runs" / "lines", 2, {}, split) is None  # nothing to reuse


def test_unscored_heldout_images_fail_the_entry(tmp_path, monkeypatch, toy_checkpoint):
    archs = _benchmark_module("compare_archs", monkeypatch)
    out, pred = tmp_path / "out", tmp_path / "pred"
    for kind in ("truth", "luma"):
        (out / "heldout" / kind).mkdir(parents=True)
    pred.mkdir()
    for i, name in enumerate("abc"):
        cv2.imwrite(str(out / "heldout" / "truth" / f"{name}.png"), drawing(32, 32, seed=i))
        cv2.imwrite(str(out / "heldout" / "luma" / f"{name}.png"), drawing(32, 32, seed=i)[..., 0])
    cv2.imwrite(str(pred / "a.png"), drawing(32, 32, seed=0))
    (pred / "b.png").write_bytes(b"not a png")  # c.png: no prediction at all
    args = argparse.Namespace(no_fid=True, vgg_weights=None, size=32, device="cpu", sheet_count=2)
    entry = archs.Entry("luma", "unet")
    archs._evaluate(entry, pred, out, args)
    assert entry.error.startswith("2 of 3 held-out images not scored: 1 without a prediction (e.g. c)"), entry.error
    assert entry.metrics["missing"] == ["c"] and len(entry.metrics["unreadable"]) == 1
    assert "| luma | unet | – | – | failed: 2 of 3 held-out images not scored" in archs.markdown_table([entry])
    with pytest.raises(MangacolorError, match="unknown device 'gpu'"):  # --device reaches the colorizing
        archs._colorize(toy_checkpoint, out / "heldout" / "luma", out / "heldout" / "truth", ["a"], pred, 32, "luma",
                        device="gpu")  # fmt: skip


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("compare_archs.py", ["--minutes", "0.01", "--archs", "unet", "--inputs", "luma", "--no-baselines",
                              "--model-config", 'unet={"depth": 9}']),
        ("compare_inputs.py", ["--steps", "1", "--train-inputs", "luma", "--heldout", "luma",
                               "--model-config", '{"depth": 9}']),
    ],
)  # fmt: skip
def test_compare_scripts_fail_when_a_row_fails_or_the_device_is_unusable(demo, tmp_path, script, args):
    proc = _run(script, str(demo), str(tmp_path / "out"), *args)  # depth 9 cannot train on 32 px crops
    assert proc.returncode == 1 and "rows failed" in proc.stderr, proc.stderr[-2000:]
    assert "failed: " in (tmp_path / "out" / "results.md").read_text()
    bad = ["gpu"] if torch.cuda.is_available() else ["gpu", "cuda"]
    for device in bad:
        command = [sys.executable, str(ROOT / "benchmarks" / script), str(demo), str(tmp_path / "new")]
        proc = subprocess.run([*command, "--device", device], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
        assert not (tmp_path / "new").exists()


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


def test_norm_stats_refuses_before_the_table_and_writes_no_nan(
    color_folder, toy_checkpoint, scan_checkpoint, tmp_path, monkeypatch, capsys
):
    norm_stats = _benchmark_module("norm_stats", monkeypatch)
    grey = tmp_path / "grey"  # truth without colour: no colourfulness ratio
    grey.mkdir()
    for path in sorted(color_folder.iterdir())[:2]:
        cv2.imwrite(str(grey / path.name), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    assert norm_stats.main([str(toy_checkpoint), str(grey), str(grey)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("machine: ") and re.search(r"^\| grey \| 2 \| [\d.]+ \| [\d.]+ \| – \| – \|$", table, re.M)
    for bad, status, message in [
        ([str(scan_checkpoint), str(grey), str(grey)], 1, "a scan model, not a colorizer"),
        ([str(toy_checkpoint), str(grey), str(grey), str(tmp_path / "nowhere")], 1, "nowhere: no such file"),
        ([str(toy_checkpoint), str(grey), str(grey), "--size", "0"], 2, "--size must be at least 1"),
        ([str(toy_checkpoint), str(grey), str(grey), "--limit", "-2"], 2, "--limit must be at least 1"),
    ]:
        try:
            got = norm_stats.main(bad)
        except SystemExit as exc:  # argparse's refusal
            got = exc.code
        captured = capsys.readouterr()
        assert got == status and message in captured.err and captured.out == "", (bad, captured)


def test_colorize_bench_reports_the_child_error_in_one_line(tmp_path):
    script = [sys.executable, str(ROOT / "benchmarks" / "colorize_bench.py")]
    missing = tmp_path / "missing.safetensors"
    proc = subprocess.run([*script, "--pages", "1", "--model", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"error: {missing}: no such checkpoint file"  # not a CalledProcessError traceback
    proc = subprocess.run([*script, "--pages", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--pages and --batch-size must be at least 1" in proc.stderr
    proc = subprocess.run([*script, "--dpi", "5000"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--dpi must be between 50 and 1200" in proc.stderr


def test_colorize_bench_pages_follow_the_dpi():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import colorize_bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert colorize_bench.a4(200) == colorize_bench.A4_200DPI
    page = colorize_bench.make_page(0, colorize_bench.a4(100))
    assert page.shape == (1169, 827) and page.min() == 0 and page.max() == 255


def test_colorize_and_scan_bench_refuse_a_scan_generator_as_the_colorizer(scan_checkpoint):
    benchmarks = ROOT / "benchmarks"
    for command in (
        [benchmarks / "colorize_bench.py", "--pages", "1", "--model", scan_checkpoint],
        [benchmarks / "scan_bench.py", "--part", "pages", "--pages", "1", "--color-model", scan_checkpoint],
    ):
        proc = subprocess.run([sys.executable, *map(str, command)], capture_output=True, text=True)
        assert proc.returncode == 1 and "a scan model, not a colorizer" in proc.stderr, proc.stderr[-2000:]
        assert "s/page" not in proc.stdout  # refused before any timing


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
        ("train_bench.py", ["--arch", "unet", "--size", "32"], "--size 32: unet needs a multiple of 256"),
    ]:
        proc = run(script, *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run("train_bench.py", "--device", "auto", "--arch", "sgru", "--size", "32", "--batch-size", "2",
               "--steps", "1", "--warmup", "0")  # fmt: skip
    assert proc.returncode == 0 and "failed" not in proc.stdout, proc.stdout + proc.stderr[-2000:]
    proc = run("prepare_bench.py", "--source", str(tmp_path / "nope"))
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {tmp_path / 'nope'}: no such file or directory"

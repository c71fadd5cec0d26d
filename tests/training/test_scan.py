"""The CycleGAN scan trainer: hand-computed losses, the history pool, unpaired data, resume, export."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from mangacolor.checkpoint import load, read_info
from mangacolor.color import luma
from mangacolor.data import UnpairedDataset
from mangacolor.errors import MangacolorError
from mangacolor.training.scan import (
    CycleGenerators,
    ImagePool,
    ScanTrainConfig,
    reconstruction_losses,
    rgb_to_gray,
    train_scan_generator,
)
from tests.conftest import drawing


class HalfMean(nn.Module):
    """Stand-in G_s: (B, 3, H, W) -> half the channel mean (B, 1, H, W)."""

    def forward(self, x):
        return 0.5 * x.mean(1, keepdim=True)


class Repeat3(nn.Module):
    """Stand-in G_c: (B, 1, H, W) -> the channel repeated (B, 3, H, W)."""

    def forward(self, x):
        return x.repeat(1, 3, 1, 1)


def _tiny_batch():
    real_c = torch.tensor([[[[0.6, -0.3]], [[0.0, 0.3]], [[0.3, 0.0]]]])  # (1, 3, 1, 2)
    real_s = torch.tensor([[[[-1.0, 0.5]]]])  # (1, 1, 1, 2)
    return real_c, real_s


def test_cycle_and_identity_losses_hand_computed():
    real_c, real_s = _tiny_batch()
    out = CycleGenerators(HalfMean(), Repeat3())(real_c, real_s)
    # G_s(c) = 0.5 * mean = [0.15, 0]; G_c of it repeats -> |rec - c| sums to 1.35 over 6 values
    assert torch.allclose(out["fake_s"], torch.tensor([[[[0.15, 0.0]]]]))
    # G_c(s) = [-1, 0.5] x3; G_s of it = [-0.5, 0.25]; |rec - s| = [0.5, 0.25]
    assert torch.allclose(out["rec_s"], torch.tensor([[[[-0.5, 0.25]]]]))
    # identity: G_s(rgb(s)) = 0.5 s -> |.| = [0.5, 0.25]; G_c(luma(c)) with luma = [0.2136, 0.0864]
    total, parts = reconstruction_losses(out, real_c, real_s, cycle_weight=10.0, identity_weight=0.5)
    assert parts["cycle_c"].item() == pytest.approx(1.35 / 6)
    assert parts["cycle_s"].item() == pytest.approx(0.375)
    assert parts["idt_s"].item() == pytest.approx(0.375)
    assert parts["idt_c"].item() == pytest.approx(2 * (0.3864 + 0.2136 + 0.0864) / 6)
    assert total.item() == pytest.approx(10 * (0.225 + 0.375) + 5 * (0.375 + 0.2288))


def test_identity_off_drops_the_terms():
    real_c, real_s = _tiny_batch()
    out = CycleGenerators(HalfMean(), Repeat3())(real_c, real_s, identity=False)
    total, parts = reconstruction_losses(out, real_c, real_s, cycle_weight=10.0, identity_weight=0.0)
    assert set(parts) == {"cycle_c", "cycle_s"} and total.item() == pytest.approx(6.0)


def test_rgb_to_gray_matches_image_luma():
    img = drawing(seed=3)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, H, W)
    gray = ((rgb_to_gray(t)[0, 0] + 1) * 127.5).round().numpy()
    assert np.abs(gray - luma(img).astype(np.float64)).max() <= 1


def _ids(batch: torch.Tensor) -> list[int]:
    return [int(v) for v in batch[:, 0, 0, 0]]


def test_image_pool_fills_first_then_mixes_half_and_half():
    pool = ImagePool(capacity=5, seed=0)
    first = torch.arange(5.0).reshape(5, 1, 1, 1).expand(5, 1, 2, 2)  # image k is filled with k
    assert _ids(pool.query(first)) == [0, 1, 2, 3, 4]  # filling: every image comes back as itself
    assert len(pool) == 5
    stored, n = 0, 4000
    for k in range(5, 5 + n):
        before = {int(t[0, 0, 0]) for t in pool.images}
        (got,) = _ids(pool.query(torch.full((1, 1, 2, 2), float(k))))
        after = {int(t[0, 0, 0]) for t in pool.images}
        assert len(pool) == 5
        if got == k:  # returned the new image, pool unchanged
            assert after == before
        else:  # returned a stored image, and the new one took its place
            stored += 1
            assert got in before and k in after and got not in after
    assert stored / n == pytest.approx(0.5, abs=0.03)  # 4000 draws: sd of the fraction is 0.008


def test_image_pool_state_round_trip_and_passthrough():
    a = ImagePool(capacity=3, seed=7)
    a.query(torch.randn(4, 1, 2, 2))
    b = ImagePool(capacity=3, seed=99)
    b.load_state_dict(a.state_dict())
    x = torch.randn(6, 1, 2, 2)
    assert torch.equal(a.query(x), b.query(x))
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(ImagePool(0).query(x), x)


def test_image_pool_drops_images_of_an_earlier_stage_size():
    pool = ImagePool(capacity=2, seed=0)
    pool.query(torch.zeros(2, 1, 4, 4))
    out = pool.query(torch.ones(3, 1, 8, 8))  # a new progressive stage: 8 px instead of 4
    assert out.shape == (3, 1, 8, 8) and torch.equal(out[:2], torch.ones(2, 1, 8, 8))  # refilled with new ones
    assert len(pool) == 2 and all(t.shape == (1, 8, 8) for t in pool.images)


@pytest.fixture
def unpaired(tmp_path):
    """Four tiny 'scans' (luma plus dots) and six colour drawings, unrelated to each other."""
    scans, colors = tmp_path / "scans", tmp_path / "colors"
    scans.mkdir()
    colors.mkdir()
    for i in range(4):
        gray = luma(drawing(seed=50 + i))
        gray[::3, ::3] = np.minimum(gray[::3, ::3], 60)
        cv2.imwrite(str(scans / f"s{i}.png"), gray)
    for i in range(6):
        cv2.imwrite(str(colors / f"c{i}.png"), drawing(seed=i)[..., ::-1])
    return scans, colors


def test_unpaired_dataset_draws_independently_with_explicit_epoch_length(unpaired):
    scans, colors = unpaired
    ds = UnpairedDataset(scans, colors, size=32, epoch_length=7, seed=1)
    assert len(ds) == 7
    item = ds[(0, 3)]
    assert item["scan"].shape == (1, 32, 32) and item["color"].shape == (3, 32, 32)
    assert torch.equal(ds[(0, 3)]["color"], item["color"])  # same key, same item
    pairs = set()
    for i in range(60):
        it = ds[(1, i)]
        pairs.add((float(it["scan"].sum()), float(it["color"].sum())))
    assert len(pairs) > 10  # many combinations, not a fixed pairing
    with pytest.raises(MangacolorError, match="nope: no such file"):
        UnpairedDataset(scans, colors.parent / "nope", size=32)
    (colors.parent / "empty").mkdir()
    with pytest.raises(MangacolorError, match="empty: no images"):
        UnpairedDataset(scans, colors.parent / "empty", size=32)


def _config(scans, colors, run, **kw):
    base = dict(
        scans=str(scans),
        colors=str(colors),
        run_dir=str(run),
        generator={"base_width": 4, "n_blocks": 1},
        discriminator={"base_width": 4},
        steps=4,
        crop_size=32,
        batch_size=2,
        epoch_length=6,
        pool_size=3,
        log_every=1,
        sample_every=0,
        save_every=2,
        device="cpu",
    )
    base.update(kw)
    return ScanTrainConfig(**base)


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "loss_g" in line]


def test_resume_equivalence(unpaired, tmp_path):
    """N steps straight == N/2 steps, stop, resume, N/2 steps: identical G_s weights and loss curve."""
    scans, colors = unpaired
    straight = train_scan_generator(_config(scans, colors, tmp_path / "straight"))

    class Stop(Exception):
        pass

    def kill_after_step_2(step, total, scalars):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        train_scan_generator(_config(scans, colors, tmp_path / "split"), on_step=kill_after_step_2)
    state = torch.load(tmp_path / "split" / "resume.pt", weights_only=True)
    assert {"g_s", "g_c", "d_s", "d_c", "opt_g", "opt_d", "pool_s", "pool_c"} <= set(state["task"])
    assert len(state["task"]["pool_s"]["images"]) == 3  # 2 steps x 2 images, capacity 3
    resumed = train_scan_generator(_config(scans, colors, tmp_path / "split"), resume=True)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    keys = ("loss_g", "loss_d_s", "loss_d_c", "loss_idt_c")
    la = [[m[k] for k in keys] for m in _metrics(tmp_path / "straight")]
    lb = [[m[k] for k in keys] for m in _metrics(tmp_path / "split")]
    assert la == lb and len(la) == 4


def test_resume_warns_when_a_folder_changed(unpaired, tmp_path, caplog):
    scans, colors = unpaired
    train_scan_generator(_config(scans, colors, tmp_path / "r", steps=1))
    (scans / "s0.png").unlink()
    with caplog.at_level(logging.WARNING):
        train_scan_generator(_config(scans, colors, tmp_path / "r", steps=2), resume=True)
    assert "the scans of" in caplog.text and "(3 files, were 4)" in caplog.text
    assert "the colour images of" not in caplog.text


def test_progressive_stages_with_a_full_history_pool(unpaired, tmp_path):
    """Two stages (32 then 48 px) with batch 2: the pools hold 32 px fakes when the 48 px stage starts."""
    scans, colors = unpaired
    path = train_scan_generator(_config(scans, colors, tmp_path / "r", steps=3, stages=[32, 48], save_every=0))
    assert read_info(path).provenance["stages"] == [32, 48]
    metrics = _metrics(tmp_path / "r")
    assert len(metrics) == 6 and all(np.isfinite(m["loss_g"]) for m in metrics)


def test_augmented_training(unpaired, tmp_path):
    scans, colors = unpaired
    train_scan_generator(_config(scans, colors, tmp_path / "r", steps=2, save_every=0, augment=True))
    assert json.loads((tmp_path / "r" / "config.json").read_text())["augment"] is True
    assert all(np.isfinite(m["loss_g"]) for m in _metrics(tmp_path / "r"))


def test_export_is_the_scan_generator_only(unpaired, tmp_path):
    scans, colors = unpaired
    path = train_scan_generator(_config(scans, colors, tmp_path / "r", steps=2, save_every=0, sample_every=1))
    info = read_info(path)
    assert info.task == "scan" and info.arch == "cyclegan-resnet"
    assert info.config["in_channels"] == 3 and info.config["out_channels"] == 1
    assert info.provenance["trainer"] == "cyclegan" and info.provenance["scan_files"] == 4
    assert info.provenance["working_size"] == 0 and info.provenance["identity_weight"] == 0.5
    model, _ = load(path)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    grid = cv2.imread(str(tmp_path / "r" / "samples" / "step_0000002.png"))
    assert grid.shape == (4 * 32, 3 * 32, 3)  # 2 colour rows + 2 scan rows; real | fake | reconstructed
    metrics = _metrics(tmp_path / "r")
    assert {"loss_cycle_c", "loss_cycle_s", "loss_idt_s", "loss_idt_c", "loss_d_s", "loss_d_c"} <= set(metrics[0])


def test_identity_off_and_bad_settings(unpaired, tmp_path):
    scans, colors = unpaired
    train_scan_generator(_config(scans, colors, tmp_path / "r", steps=1, save_every=0, identity_weight=0.0))
    assert "loss_idt_s" not in _metrics(tmp_path / "r")[0]
    with pytest.raises(MangacolorError, match="not a scan generator"):
        train_scan_generator(_config(scans, colors, tmp_path / "x", arch="unet"))
    with pytest.raises(MangacolorError, match="--gan-loss"):
        train_scan_generator(_config(scans, colors, tmp_path / "x", gan_loss="wgan-gp"))
    with pytest.raises(MangacolorError, match="multiple of 4"):
        train_scan_generator(_config(scans, colors, tmp_path / "x", crop_size=30))


def test_ddp_two_processes_gloo(unpaired, tmp_path):
    scans, colors = unpaired
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "mangacolor", "train-scan", str(scans), str(colors), str(run), "--width", "4", "--blocks", "1"]
    cmd += ["--d-width", "4", "--steps", "2", "--batch-size", "2", "--crop-size", "32", "--epoch-length", "8"]
    cmd += ["--device", "cpu", "--log-every", "1", "--sample-every", "0", "--save-every", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["ranks_in_sync"] is True and len(records[-1]["rank_weight_digests"]) == 2
    assert proc.stdout.strip().splitlines() == [str(run / "model.safetensors")]  # rank 0 only

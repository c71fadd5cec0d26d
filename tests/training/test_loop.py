"""The generic loop: schedule, data order, determinism, resume equivalence, stages, DDP on gloo."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mangacolor.errors import MangacolorError
from mangacolor.training.colorizer import ColorTrainConfig, train_colorizer
from mangacolor.training.loop import EarlyStop, EpochSampler, TrainingStopped, lr_factor, parse_stages


def test_lr_constant_then_linear_decay():
    assert [lr_factor(s, 10) for s in (0, 4)] == [1.0, 1.0]
    assert lr_factor(5, 10) == 1.0 and lr_factor(7, 10) == pytest.approx(0.6) and lr_factor(10, 10) == 0.0
    assert lr_factor(9, 10, decay_start=1.0) == 1.0


def test_parse_stages():
    assert parse_stages("64,128,256", 32) == [64, 128, 256]
    assert parse_stages(None, 32) == [32]
    with pytest.raises(MangacolorError, match="--stages"):
        parse_stages("64,big", 32)


def test_epoch_sampler_shards_cover_the_epoch_and_resume_mid_epoch():
    full = list(EpochSampler(10, seed=3, epoch=1, batch_size=2))
    assert len(full) == 10 and sorted(i for _, i in full) == list(range(10))
    assert all(e == 1 for e, _ in full)
    r0 = list(EpochSampler(10, 3, 1, batch_size=2, rank=0, world=2))
    r1 = list(EpochSampler(10, 3, 1, batch_size=2, rank=1, world=2))
    assert not set(r0) & set(r1) and len(r0) == len(r1) == 4  # 2 global batches of 4, remainder dropped
    assert list(EpochSampler(10, 3, 1, batch_size=2, start_batch=2)) == full[4:]
    assert list(EpochSampler(10, 3, 2, batch_size=2)) != full  # new order each epoch
    assert len(list(EpochSampler(3, 0, 0, batch_size=4))) == 4  # tiny folders fill one batch


def _config(color_folder, run, **kw):
    base = dict(
        data=str(color_folder),
        run_dir=str(run),
        model={"base_width": 4, "depth": 3},
        discriminator={"base_width": 4},
        steps=6,
        crop_size=32,
        batch_size=2,
        log_every=2,
        sample_every=0,
        save_every=3,
        device="cpu",
    )
    base.update(kw)
    return ColorTrainConfig(**base)


def _losses(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "loss_g_l1" in line]


def test_same_seed_same_losses(color_folder, tmp_path):
    train_colorizer(_config(color_folder, tmp_path / "a", steps=4, save_every=0))
    train_colorizer(_config(color_folder, tmp_path / "b", steps=4, save_every=0))
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert [m["loss_g_l1"] for m in a] == [m["loss_g_l1"] for m in b]
    train_colorizer(_config(color_folder, tmp_path / "c", steps=4, save_every=0, seed=1))
    assert [m["loss_g_l1"] for m in _losses(tmp_path / "c")] != [m["loss_g_l1"] for m in a]


def test_loader_workers_give_the_same_losses_across_epochs(color_folder, tmp_path):
    """8 images, batch 2: 4 steps an epoch, so 6 steps cross into a second epoch on one loader."""
    train_colorizer(_config(color_folder, tmp_path / "a", log_every=1, save_every=0, augment=True))
    train_colorizer(_config(color_folder, tmp_path / "b", log_every=1, save_every=0, augment=True, num_workers=2))
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert len(a) == 6 and [m["loss_g_l1"] for m in a] == [m["loss_g_l1"] for m in b]


def test_resume_equivalence(color_folder, tmp_path):
    """N steps straight == N/2 steps, stop, resume, N/2 steps: identical weights and loss curve.

    Depth 5 puts dropout in the U-Net (the global RNG must be restored) and augmentation is on.
    """
    kw = dict(steps=6, save_every=3, model={"base_width": 4, "depth": 5}, augment=True)
    straight = train_colorizer(_config(color_folder, tmp_path / "straight", **kw))
    cfg = _config(color_folder, tmp_path / "split", **kw)
    # killed after step 5: the last state is step 3's, and step 4's metrics line must not stay twice
    half = _config(color_folder, tmp_path / "split", **kw)

    class Stop(Exception):
        pass

    def kill_after_step_5(step, total, scalars):
        if step == 5:
            raise Stop

    with pytest.raises(Stop):
        train_colorizer(half, on_step=kill_after_step_5)
    assert (tmp_path / "split" / "resume.pt").exists()
    resumed = train_colorizer(cfg, resume=True)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = [(m["step"], m["loss_g_l1"]) for m in _losses(tmp_path / "straight")]
    lb = [(m["step"], m["loss_g_l1"]) for m in _losses(tmp_path / "split")]
    assert la == lb and [step for step, _ in la] == [2, 4, 6]


def test_signal_stops_after_the_step_and_resume_is_exact(color_folder, tmp_path):
    """SIGINT at step 5 (not a logging or saving step): the run saves step 5 and resumes bit-exactly."""
    kw = dict(steps=6, save_every=0, model={"base_width": 4, "depth": 5}, augment=True)
    straight = train_colorizer(_config(color_folder, tmp_path / "straight", **kw))
    cfg = _config(color_folder, tmp_path / "split", **kw)
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(step, total, scalars):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # handled at once: the loop stops before step 6

    with pytest.raises(TrainingStopped) as stopped:
        train_colorizer(cfg, on_step=interrupt, stop=EarlyStop(signals=True))
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    assert (stopped.value.step, stopped.value.total, stopped.value.reason) == (5, 6, "SIGINT")
    run = tmp_path / "split"
    assert torch.load(run / "resume.pt", weights_only=False)["step"] == 5
    assert (run / "latest.safetensors").exists() and not (run / "model.safetensors").exists()
    resumed = train_colorizer(cfg, resume=True)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [(m["step"], m["loss_g_l1"]) for m in _losses(tmp_path / "straight")]
    assert la == [(m["step"], m["loss_g_l1"]) for m in _losses(run)]  # the partial window at step 5 was kept


def test_time_limit_stops_and_a_second_ctrl_c_aborts(color_folder, tmp_path):
    cfg = _config(color_folder, tmp_path / "r", steps=3)
    with pytest.raises(TrainingStopped) as stopped:
        train_colorizer(cfg, stop=EarlyStop(time_limit_s=1e-9))
    assert (stopped.value.step, stopped.value.reason) == (1, "time limit")
    assert train_colorizer(cfg, resume=True, stop=EarlyStop(time_limit_s=3600)).exists()  # not reached
    stop = EarlyStop(signals=True)
    with stop:
        stop._handle(signal.SIGTERM, None)
        assert stop.reason() == "SIGTERM"
        stop._handle(signal.SIGINT, None)  # the first Ctrl-C: an orderly stop, still for SIGTERM
        assert stop.reason() == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)  # the second: abort
    with pytest.raises(MangacolorError, match="positive"):
        EarlyStop(time_limit_s=-60)


def test_progressive_stages_and_lr_decay(color_folder, tmp_path):
    path = train_colorizer(_config(color_folder, tmp_path / "r", steps=2, stages=[32, 64], log_every=1, save_every=0))
    metrics = _losses(tmp_path / "r")
    assert [m["stage_size"] for m in metrics] == [32, 32, 64, 64]
    assert metrics[0]["lr_g"] == pytest.approx(1e-4) and metrics[-1]["lr_g"] < 1e-4
    assert metrics[0]["lr_d"] == pytest.approx(4e-4)
    from mangacolor.checkpoint import read_info

    assert read_info(path).provenance["stages"] == [32, 64]


def test_pretrain_steps_skip_the_gan(color_folder, tmp_path):
    train_colorizer(_config(color_folder, tmp_path / "r", steps=4, log_every=1, pretrain_steps=2, save_every=0))
    metrics = _losses(tmp_path / "r")
    assert ["loss_d" in m for m in metrics] == [False, False, True, True]


@pytest.mark.parametrize("gan_loss", ["lsgan", "hinge", "wgan-gp"])
def test_gan_losses_train(color_folder, tmp_path, gan_loss):
    train_colorizer(_config(color_folder, tmp_path / "r", steps=2, log_every=1, save_every=0, gan_loss=gan_loss))
    metrics = _losses(tmp_path / "r")
    assert all(torch.isfinite(torch.tensor(m["loss_d"])) for m in metrics)
    if gan_loss == "wgan-gp":
        assert "loss_d_gp" in metrics[0]


def test_ddp_two_processes_gloo(color_folder, tmp_path):
    """Two ranks: a --time-limit stop that both ranks agree on (each exits 75), then --resume to the end."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "mangacolor", "train-color"]
    args = [str(color_folder), str(run), "--width", "4", "--depth", "3", "--d-width", "4", "--steps", "4"]
    args += ["--batch-size", "2", "--crop-size", "32", "--device", "cpu"]
    args += ["--log-every", "2", "--sample-every", "0", "--save-every", "0", "--time-limit", "0.000001"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "exitcode  : 75" in proc.stderr, proc.stderr[-3000:]  # torchrun itself: 1
    assert f"--resume {run}" in proc.stderr and "after step 2 of 4" in proc.stderr  # at the first logging step
    assert torch.load(run / "resume.pt", weights_only=False)["step"] == 2 and not (run / "model.safetensors").exists()
    proc = subprocess.run(cmd + ["--resume", str(run)], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    check = records[-1]
    assert check["ranks_in_sync"] is True and len(check["rank_weight_digests"]) == 2
    assert [r["step"] for r in records[:-1]] == [2, 4]
    assert records[0]["images_per_s"] > 0 and (run / "model.safetensors").exists()
    assert proc.stdout.strip().splitlines() == [str(run / "model.safetensors")]  # rank 0 only


def test_weights_digest_is_bit_exact():
    from mangacolor.training.loop import weights_digest

    a = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    b = copy.deepcopy(a)
    assert weights_digest(a) == weights_digest(b)
    b[1].running_mean += 1  # buffers are not weights (DDP keeps each rank's own statistics)
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        w = b[0].weight.view(-1)
        w[0] = torch.nextafter(w[0], torch.tensor(1.0))  # one ulp in one weight
    assert weights_digest(a) != weights_digest(b)


def test_stage_sampler_runs_the_epochs_on_without_end():
    from itertools import islice

    from mangacolor.training.loop import StageSampler

    epochs = [list(EpochSampler(10, 3, e, batch_size=2)) for e in (1, 2, 3)]
    assert list(islice(StageSampler(10, 3, 1, batch_size=2), 30)) == sum(epochs, [])
    assert list(islice(StageSampler(10, 3, 1, batch_size=2, start_batch=3), 6)) == epochs[0][6:] + epochs[1][:2]
    assert list(islice(StageSampler(10, 3, 1, batch_size=2, start_batch=5), 2)) == epochs[1][:2]  # epoch done


def test_a_full_disk_is_a_one_line_error_and_leaves_no_temp_file(color_folder, tmp_path, monkeypatch):
    """A checkpoint or resume state that cannot be written (disk full) ends the run with a MangacolorError."""
    import mangacolor.checkpoint
    import mangacolor.training.loop as loop

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop.torch, "save", disk_full)
    with pytest.raises(MangacolorError, match=r"resume.pt: cannot save the resume state \(No space left on device\)"):
        train_colorizer(_config(color_folder, tmp_path / "a", steps=2, save_every=1))
    assert not list((tmp_path / "a").glob(".*.tmp"))
    monkeypatch.undo()
    monkeypatch.setattr(mangacolor.checkpoint, "atomic_write_bytes", disk_full)
    with pytest.raises(MangacolorError, match=r"latest.safetensors: cannot write: No space left on device"):
        train_colorizer(_config(color_folder, tmp_path / "b", steps=2, save_every=1))


def test_resume_drops_a_metrics_line_torn_by_a_kill(color_folder, tmp_path):
    """A kill during the append leaves half a line in metrics.jsonl: the resume drops it and logs that step again."""
    cfg = _config(color_folder, tmp_path / "r", steps=4, log_every=1)
    with pytest.raises(TrainingStopped):
        train_colorizer(cfg, stop=EarlyStop(time_limit_s=1e-9))
    metrics = tmp_path / "r" / "metrics.jsonl"
    with open(metrics, "a") as fh:
        fh.write('{"step": 2, "time": 0.5, "loss_d')
    train_colorizer(cfg, resume=True)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4]


def test_a_second_ctrl_c_while_the_run_is_saved_waits_for_the_save(color_folder, tmp_path, monkeypatch):
    """The abort would land in torch.save (the slow part of a stop) and lose the resume state asked for."""
    import mangacolor.training.loop as loop

    stop = EarlyStop(signals=True)
    with stop:
        stop._handle(signal.SIGINT, None)
        with stop.saving():
            stop._handle(signal.SIGINT, None)  # held off: the save goes on
        assert stop.reason() == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)
    real_save = torch.save

    def interrupted_save(obj, f):
        real_save(obj, f)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C and Ctrl-C again, both while the state is written
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop.torch, "save", interrupted_save)
    with pytest.raises(TrainingStopped) as stopped:
        train_colorizer(_config(color_folder, tmp_path / "r", steps=4, save_every=2), stop=EarlyStop(signals=True))
    assert (stopped.value.step, stopped.value.reason) == (2, "SIGINT")
    assert not list((tmp_path / "r").glob(".*.tmp"))
    monkeypatch.undo()
    assert train_colorizer(_config(color_folder, tmp_path / "r", steps=4, save_every=2), resume=True).exists()

"""The colorizer trainer with every architecture at toy size: a few CPU steps each, the extras
(collection loss, guide decoders, multi-scale D with feature matching, frozen encoder), and the
trained checkpoints through ``colorize`` (``--candidates``, ``--reference``)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mangacolor.cli import app
from mangacolor.color import luma
from mangacolor.errors import MangacolorError, WeightsNotFoundError
from mangacolor.imageio import write_image
from mangacolor.models import get_spec
from mangacolor.training.colorizer import ColorTrainConfig, train_colorizer
from tests.conftest import drawing

runner = CliRunner()


def _config(color_folder, run, arch: str, **kw) -> ColorTrainConfig:
    spec = get_spec(arch)
    base = dict(
        data=str(color_folder),
        run_dir=str(run),
        arch=arch,
        model=dict(spec.toy),
        discriminator={"base_width": 4},
        steps=2,
        crop_size=spec.toy_size,
        batch_size=2,
        log_every=1,
        sample_every=0,
        save_every=0,
        device="cpu",
    )
    base.update(kw)
    return ColorTrainConfig(**base)


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("arch", "loss_key"),
    [
        ("unet-attn", "loss_g_l1"),
        ("resnet-unet", "loss_g_l1"),
        ("sgru", "loss_collection"),
        ("reference-unet", "loss_guides"),
    ],
)
def test_each_architecture_trains(color_folder, tmp_path, arch, loss_key):
    path = train_colorizer(_config(color_folder, tmp_path / "run", arch))
    metrics = _metrics(tmp_path / "run")
    assert len(metrics) == 2 and all(loss_key in m and "loss_d" in m for m in metrics)
    assert all(torch.isfinite(torch.tensor(m[loss_key])) for m in metrics)
    assert path.exists()


def test_sgru_without_vgg_warns_and_trains_on_pixels(color_folder, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with caplog.at_level(logging.WARNING):
        train_colorizer(_config(color_folder, tmp_path / "run", "sgru", steps=1))
    assert "pixels only" in caplog.text and "--vgg-weights" in caplog.text


def test_explicit_missing_vgg_weights_fail(color_folder, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        train_colorizer(_config(color_folder, tmp_path / "run", "sgru", vgg_weights=str(tmp_path / "nope.pth")))
    with pytest.raises(WeightsNotFoundError):
        train_colorizer(
            _config(color_folder, tmp_path / "r2", "unet-attn", perceptual_weight=1.0, vgg_weights=str(tmp_path / "x"))
        )


def test_multiscale_discriminator_with_feature_matching(color_folder, tmp_path):
    cfg = _config(
        color_folder,
        tmp_path / "run",
        "unet-attn",
        discriminator_arch="patchgan-ms",
        discriminator=dict(get_spec("patchgan-ms").toy),
        feature_matching_weight=10.0,
        gan_loss="hinge",
    )
    train_colorizer(cfg)
    assert all(m["loss_g_fm"] > 0 for m in _metrics(tmp_path / "run"))


def test_frozen_encoder_does_not_change(color_folder, tmp_path):
    from mangacolor.models import create_model

    torch.manual_seed(11)
    donor = create_model("resnet-unet", get_spec("resnet-unet").toy)
    weights = tmp_path / "resnet50-13306192.pth"  # the Danbooru release's layout: Sequential(body, head)
    torch.save({**{f"0.{k}": v for k, v in donor.encoder.state_dict().items()}, "1.weight": torch.zeros(2)}, weights)
    cfg = _config(color_folder, tmp_path / "a", "resnet-unet", freeze_encoder=True, encoder_weights=str(weights))
    trained = load_file(str(train_colorizer(cfg)))
    loaded = {f"encoder.{k}": v for k, v in donor.encoder.state_dict().items()}
    assert loaded and all(torch.equal(trained[k], v) for k, v in loaded.items())  # weights and BN statistics
    torch.manual_seed(0)
    fresh = create_model("resnet-unet", get_spec("resnet-unet").toy).state_dict()
    assert not all(torch.equal(trained[k], fresh[k]) for k in trained if k.startswith("decoder."))


def test_encoder_options_need_an_encoder(color_folder, tmp_path):
    with pytest.raises(MangacolorError, match="--encoder-weights"):
        train_colorizer(_config(color_folder, tmp_path / "r", "sgru", encoder_weights=str(tmp_path / "w.pth")))
    with pytest.raises(MangacolorError, match="--freeze-encoder"):
        train_colorizer(_config(color_folder, tmp_path / "r", "sgru", freeze_encoder=True))
    with pytest.raises(MangacolorError, match="--freeze-encoder would freeze a random encoder"):
        train_colorizer(_config(color_folder, tmp_path / "r", "resnet-unet", freeze_encoder=True))
    with pytest.raises(MangacolorError, match="--anime-weights is part of the perceptual loss"):
        train_colorizer(_config(color_folder, tmp_path / "r", "unet", anime_weights=str(tmp_path / "a.pth")))


@pytest.fixture
def pages(tmp_path):
    root = tmp_path / "pages"
    write_image(root / "p0.png", luma(drawing(50, 40, seed=2)))
    return root


def test_sgru_checkpoint_colorize_candidates(color_folder, tmp_path, pages):
    ckpt = train_colorizer(_config(color_folder, tmp_path / "run", "sgru", steps=1))
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(pages), str(out), "-m", str(ckpt), "--candidates"])
    assert result.exit_code == 0, result.output
    k = get_spec("sgru").toy["num_outputs"]
    shown = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # not the folder's record
    assert shown == [f"p0_c{i}.png" for i in range(k)]
    single = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "one"), "-m", str(ckpt)])
    assert single.exit_code == 0 and [p.name for p in (tmp_path / "one").glob("*.png")] == ["p0.png"]


def test_reference_checkpoint_colorize_with_reference(color_folder, tmp_path, pages):
    ckpt = train_colorizer(_config(color_folder, tmp_path / "run", "reference-unet", steps=1))
    ref = tmp_path / "style.png"
    write_image(ref, drawing(30, 60, seed=9))
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(pages), str(out), "-m", str(ckpt), "--reference", str(ref)])
    assert result.exit_code == 0, result.output
    assert (out / "p0.png").exists()
    missing = runner.invoke(app, ["colorize", str(pages), str(tmp_path / "o2"), "-m", str(ckpt)])
    assert missing.exit_code == 2 and "--reference" in missing.stderr


def test_cli_architecture_and_discriminator_options(color_folder, tmp_path):
    run = tmp_path / "run"
    args = ["train-color", str(color_folder), str(run), "--arch", "sgru", "--model-config", '{"num_outputs": 2}']
    args += ["--width", "4", "--depth", "2", "--disc", "patchgan-ms", "--d-width", "4"]
    args += ["--d-config", '{"n_layers": 2, "num_scales": 2}', "--feature-matching", "1", "--steps", "1"]
    args += ["--batch-size", "2", "--crop-size", "32", "--sample-every", "0", "--save-every", "0", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == {"num_outputs": 2, "base_width": 4, "depth": 2}
    assert config["discriminator"] == {"n_layers": 2, "num_scales": 2, "base_width": 4}


def test_every_stage_size_is_checked_before_training(color_folder, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(MangacolorError, match="training size 40 must be a multiple of 16"):
        train_colorizer(_config(color_folder, run, "unet", stages=[32, 40]))  # toy unet: depth 4
    assert not (run / "metrics.jsonl").exists()  # refused before the first stage, not when stage 2 begins
    with pytest.raises(MangacolorError, match="training size 32 is below 96"):
        train_colorizer(_config(color_folder, run, "unet", discriminator_arch="patchgan-ms", discriminator={}))


def test_feature_matching_needs_a_feature_discriminator(color_folder, tmp_path):
    with pytest.raises(MangacolorError, match="--feature-matching needs .*patchgan-ms"):
        train_colorizer(_config(color_folder, tmp_path / "r", "unet", feature_matching_weight=10.0))


def test_discriminator_min_input_size_is_the_real_limit():
    from mangacolor.models import create_model

    for name, overrides in (("patchgan", {"norm": "instance"}), ("patchgan-ms", {"num_scales": 2})):
        d = create_model(name, base_width=4, **overrides).train()
        s = d.min_input_size
        d(torch.zeros(1, 4, s, s))  # the smallest size works
        with pytest.raises(ValueError):
            d(torch.zeros(1, 4, s - 8, s - 8))  # a smaller one leaves a 1x1 map to normalise


@pytest.mark.parametrize(
    ("input_kind", "norm", "warned"),
    [("mix", "batch", True), ("mix", "instance", False), ("mix", "layer", False), ("luma", "batch", False)],
)
def test_mix_inputs_with_batch_norm_warn(color_folder, tmp_path, caplog, input_kind, norm, warned):
    config = _config(color_folder, tmp_path / "run", "unet", steps=1, input_kind=input_kind)
    config.model["norm"] = norm
    with caplog.at_level(logging.WARNING):
        train_colorizer(config)
    assert ("running statistics blend greyscale and line-art" in caplog.text) is warned
    if warned:
        assert '--model-config \'{"norm": "layer"}\'' in caplog.text


def test_a_resume_does_not_read_the_encoder_weights_again(color_folder, tmp_path):
    from mangacolor.models import create_model

    torch.manual_seed(11)
    donor = create_model("resnet-unet", get_spec("resnet-unet").toy)
    weights = tmp_path / "resnet50.pth"
    torch.save({f"0.{k}": v for k, v in donor.encoder.state_dict().items()}, weights)  # the Danbooru layout
    run = tmp_path / "run"
    cfg = _config(color_folder, run, "resnet-unet", encoder_weights=str(weights), freeze_encoder=True, save_every=1)
    train_colorizer(replace(cfg, steps=1))
    weights.unlink()  # moved or deleted since: the resume state holds the encoder
    trained = load_file(str(train_colorizer(replace(cfg, steps=2), resume=True)))
    assert all(torch.equal(trained[f"encoder.{k}"], v) for k, v in donor.encoder.state_dict().items())


def test_the_clock_and_the_rate_go_on_across_a_resume(color_folder, tmp_path):
    run = tmp_path / "run"
    cfg = _config(color_folder, run, "unet", steps=3, save_every=2, log_every=1)
    train_colorizer(replace(cfg, steps=2))
    before = _metrics(run)
    time.sleep(0.3)  # time between the runs does not count
    train_colorizer(replace(cfg, steps=4), resume=True)
    times = [m["time"] for m in _metrics(run)]
    assert times == sorted(times) and times[:2] == [m["time"] for m in before]
    assert times[2] - times[1] < 5.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {**get_spec("unet").toy, "in_channels": 3}}, "a colorizer reads 1 channel"),
        ({"model": {**get_spec("unet").toy, "out_channels": 1}}, "a colorizer reads 1 channel"),
        ({"load_size": 16}, "--load-size 16 is smaller than the 32 px crop"),
    ],
)
def test_model_and_size_settings_no_data_fits_are_refused_up_front(color_folder, tmp_path, change, message):
    run = tmp_path / "run"
    with pytest.raises(MangacolorError, match=message):
        train_colorizer(replace(_config(color_folder, run, "unet"), **change))
    assert not run.exists()


def test_a_run_folder_in_the_training_data_is_refused(color_folder, tmp_path):
    for run in (color_folder, color_folder / "run"):
        with pytest.raises(MangacolorError, match="the run folder lies in the training data"):
            train_colorizer(_config(color_folder, run, "unet"))
    assert not (color_folder / "run").exists()

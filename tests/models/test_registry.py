"""Every registered architecture at toy width: forward shape, finite output, save -> load identical."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from mangacolor import checkpoint
from mangacolor.models import build_config, create_model, get_spec, list_models, register_model

ALL = [s.name for s in list_models()]


def _inputs(name: str) -> tuple[nn.Module, tuple]:
    spec = get_spec(name)
    torch.manual_seed(0)
    model = create_model(name, spec.toy).eval()
    size = spec.toy_size
    channels = getattr(model.config, "in_channels", 1)
    x = torch.randn(2, channels, size, size)
    args: tuple = (x,)
    if getattr(model, "needs_reference", False):
        args = (x, torch.rand(2, 3, size, size) * 2 - 1)
    return model, args


def _flatten(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for item in out for t in _flatten(item)]


@pytest.mark.parametrize("name", ALL)
def test_forward_shape_and_finite(name: str) -> None:
    model, args = _inputs(name)
    with torch.no_grad():
        out = model(*args)
    spec = get_spec(name)
    if spec.task in ("colorize", "scan"):
        b, _, h, w = args[0].shape
        k = getattr(model, "num_outputs", 1)
        assert out.shape == (b, model.config.out_channels * k, h, w)
        assert out.min() >= -1 and out.max() <= 1  # tanh range
    for t in _flatten(out):
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("name", ALL)
def test_save_load_identical(name: str, tmp_path) -> None:
    model, args = _inputs(name)
    path = checkpoint.save(tmp_path / f"{name}.safetensors", model, {"steps": 0})
    loaded, info = checkpoint.load(path)
    assert info.arch == name and info.task == get_spec(name).task
    assert dataclasses.asdict(loaded.config) == dataclasses.asdict(model.config)
    with torch.no_grad():
        a, b = _flatten(model(*args)), _flatten(loaded(*args))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", ALL)
def test_config_is_frozen_dataclass(name: str) -> None:
    cfg = build_config(name, get_spec(name).toy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.__setattr__(dataclasses.fields(cfg)[0].name, None)


def test_duplicate_name_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_model("unet", Cfg, task="colorize")(nn.Module)


def test_unknown_config_field_refused() -> None:
    with pytest.raises(ValueError, match="unknown config field"):
        build_config("unet", {"no_such_field": 1})


def test_unknown_arch_lists_known() -> None:
    with pytest.raises(KeyError, match="unet"):
        get_spec("nope")


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("unet", {"base_width": 0}, "base_width must be >= 1"),
        ("unet", {"depth": "x"}, "depth must be of type int"),
        ("unet", {"depth": 3.5}, "depth must be of type int"),
        ("unet", {"dropout": "a"}, "dropout must be of type float"),
        ("patchgan", {"base_width": -1}, "base_width must be >= 1"),
        ("patchgan", {"n_layers": -1}, "n_layers must be >= 0"),
        ("resnet-unet", {"decoder_widths": [8, 8, 0, 8, 8]}, "decoder_widths must be >= 1"),
    ],
)
def test_bad_config_values_refused_by_name(name: str, config: dict, message: str) -> None:
    """Values from --model-config JSON that would crash deep in torch are refused with the field's name."""
    with pytest.raises(ValueError, match=message):
        build_config(name, config)

"""Checkpoint round trip and each refusal, each naming the file."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from mangacolor import checkpoint
from mangacolor.errors import CheckpointError
from mangacolor.models import create_model


def _model():
    torch.manual_seed(0)
    return create_model("unet", base_width=4, depth=3).eval()


def test_round_trip_rebuilds_without_flags(tmp_path):
    model = _model()
    path = checkpoint.save(tmp_path / "m.safetensors", model, {"data": "demo", "data_files": 8, "steps": 10})
    loaded, info = checkpoint.load(path)
    assert info.arch == "unet" and info.task == "colorize" and info.format_version == checkpoint.FORMAT_VERSION
    assert info.config["base_width"] == 4 and info.config["depth"] == 3
    assert info.provenance["steps"] == 10 and "date" in info.provenance
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_half_checkpoint_is_smaller_and_loads_as_float32(tmp_path):
    model = _model()
    full = checkpoint.save(tmp_path / "f.safetensors", model)
    half = checkpoint.save(tmp_path / "h.safetensors", model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, info = checkpoint.load(half)
    assert "F16" in info.dtypes
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=2e-2)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="none.safetensors: no such checkpoint"):
        checkpoint.load(tmp_path / "none.safetensors")


def test_truncated_file(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="cut.safetensors: truncated"):
        checkpoint.load(cut)
    (tmp_path / "tiny.safetensors").write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="tiny.safetensors"):
        checkpoint.load(tmp_path / "tiny.safetensors")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="x.safetensors"):
        checkpoint.load(path)
    pickle_like = tmp_path / "model.pth"
    pickle_like.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(CheckpointError, match="model.pth"):
        checkpoint.load(pickle_like)


def _rewrite_metadata(path, **changes):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def test_unknown_arch(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    _rewrite_metadata(path, arch="transformer9000")
    with pytest.raises(CheckpointError, match="m.safetensors: unknown architecture 'transformer9000'"):
        checkpoint.load(path)


def test_newer_format_version(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    _rewrite_metadata(path, format_version=str(checkpoint.FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="m.safetensors: checkpoint format .* newer"):
        checkpoint.load(path)


def test_mismatched_shapes(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    _rewrite_metadata(path, config=json.dumps({"base_width": 8, "depth": 3}))
    with pytest.raises(CheckpointError, match="m.safetensors: tensor .* has shape"):
        checkpoint.load(path)


def test_missing_tensors(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    _rewrite_metadata(path, config=json.dumps({"base_width": 4, "depth": 4}))
    with pytest.raises(CheckpointError, match="m.safetensors: weights do not match"):
        checkpoint.load(path)


def test_bad_config_field(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    _rewrite_metadata(path, config=json.dumps({"bogus": 1}))
    with pytest.raises(CheckpointError, match="config does not fit"):
        checkpoint.load(path)


def test_plain_safetensors_without_metadata(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="plain.safetensors: .* without mangacolor metadata"):
        checkpoint.load(tmp_path / "plain.safetensors")


def test_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError) as exc:
        checkpoint.load(tmp_path / "none.safetensors")
    assert "\n" not in str(exc.value)

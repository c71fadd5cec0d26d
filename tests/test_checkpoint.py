"""Checkpoint round trip and each refusal, each naming the file."""

from __future__ import annotations

import json
import os
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


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="pipe.safetensors: not a regular file"):
        checkpoint.read_info(fifo)  # opening it would block until something writes to the pipe


def _rewrite_metadata(path, **changes):
    _rewrite_header(path, lambda header: header["__metadata__"].update(changes))


def _rewrite_header(path, edit):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h[next(k for k in h if k != "__metadata__")].pop("data_offsets"), "bad header entry"),
        (lambda h: h.update({next(k for k in h if k != "__metadata__"): "text"}), "bad header entry"),
        (lambda h: h["__metadata__"].update(provenance="5"), "must be JSON objects"),
        (lambda h: h["__metadata__"].update(config="[1, 2]"), "must be JSON objects"),
        (lambda h: h.update(__metadata__=["a"]), "metadata is not a table of strings"),
    ],
)
def test_malformed_header_is_a_checkpoint_error(tmp_path, edit, message):
    path = checkpoint.save(tmp_path / "m.safetensors", _model())
    _rewrite_header(path, edit)
    with pytest.raises(CheckpointError, match=f"m.safetensors: .*{message}"):
        checkpoint.read_info(path)


def test_torch_weights_that_are_not_plain_tensors(tmp_path):
    not_torch = tmp_path / "page.png"
    not_torch.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="page.png: cannot read VGG16 weights") as exc:
        checkpoint.load_torch_weights(not_torch, "VGG16 weights")
    assert "weights_only" not in str(exc.value) and "\n" not in str(exc.value)
    pickled = tmp_path / "object.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)  # a whole module: refused, never unpickled
    with pytest.raises(CheckpointError, match="object.pth: cannot read x: not a PyTorch file of plain tensors") as exc:
        checkpoint.load_torch_weights(pickled, "x")
    assert "weights_only" not in str(exc.value)
    for name, data in (("notes.pth", b"some text, not weights\n"), ("empty.pth", b"")):
        (tmp_path / name).write_bytes(data)  # torch says KeyError(<number>) and EOFError()
        with pytest.raises(CheckpointError, match=f"{name}: cannot read x: not a PyTorch file, or a damaged one$"):
            checkpoint.load_torch_weights(tmp_path / name, "x")
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}}, wrapped)
    assert set(checkpoint.load_torch_weights(wrapped, "x")) == {"w"}
    listed = tmp_path / "list.pth"
    torch.save([torch.ones(2)], listed)
    with pytest.raises(CheckpointError, match="not a state dict"):
        checkpoint.load_torch_weights(listed, "x")


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

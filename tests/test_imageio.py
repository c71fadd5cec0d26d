"""Image I/O on every odd input the wild produces."""

from __future__ import annotations

import io
import os
import struct
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from mangacolor.errors import ImageReadError, ImageWriteError
from mangacolor.imageio import (
    STALE_TEMP_AGE,
    atomic_write_bytes,
    encode_image,
    list_images,
    read_image,
    sweep_stale_temps,
    to_tensor,
    to_uint8,
    write_image,
)
from tests.conftest import deny_listing


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 90)], -1).astype(np.uint8)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_round_trip(tmp_path, ext):
    rgb = _gradient()
    path = tmp_path / f"page{ext}"
    kwargs = {"lossless": True} if ext == ".webp" else {}
    Image.fromarray(rgb).save(path, **kwargs)
    assert np.array_equal(read_image(path), rgb)


def test_jpeg_close(tmp_path):
    rgb = _gradient()
    write_image(tmp_path / "p.jpg", rgb)
    back = read_image(tmp_path / "p.jpg")
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 6


def test_exif_orientation_applied(tmp_path):
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[:, :10] = 255  # left half white
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (20, 10, 3)
    assert out[:10].mean() > 200 and out[10:].mean() < 50  # left half became the top half


def test_palette_with_transparency_on_white(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    img.info["transparency"] = 0
    img.save(tmp_path / "pal.png", transparency=0)
    out = read_image(tmp_path / "pal.png")
    assert (out == 255).all()  # index 0 is transparent -> white


def test_palette_plain(tmp_path):
    Image.new("RGB", (6, 4), (10, 200, 30)).quantize(4).save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = read_image(tmp_path / "p.png")
    assert out.shape == (4, 6, 3) and tuple(out[0, 0]) == (10, 200, 30)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128  # half-transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (255, 127, 127) or tuple(out[0, 0]) == (255, 128, 128)


def test_la_greyscale_with_alpha(tmp_path):
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 1] = 0  # fully transparent black
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert (read_image(tmp_path / "la.png", mode=None) == 255).all()


def test_16bit_greyscale(tmp_path):
    arr = np.array([[0, 65535], [257 * 100, 257 * 200]], np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png", mode=None)
    assert out.dtype == np.uint8 and out.ndim == 2
    assert out.tolist() == [[0, 255], [100, 200]]


def test_dark_16bit_greyscale_is_not_taken_for_8bit(tmp_path):
    arr = np.array([[0, 255], [128, 200]], np.uint16)  # all <= 255: near black in 16 bits
    Image.fromarray(arr).save(tmp_path / "dark16.png")
    assert read_image(tmp_path / "dark16.png", mode=None).tolist() == [[0, 1], [0, 1]]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # red
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (8, 8, 3) and out[..., 0].mean() > 200 and out[..., 1:].mean() < 60


def test_greyscale_modes(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png", mode=None).ndim == 2
    rgb = read_image(tmp_path / "g.png", mode="RGB")
    assert rgb.shape == (8, 8, 3) and np.array_equal(rgb[..., 1], gray)
    Image.fromarray(gray > 100).save(tmp_path / "bilevel.png")
    assert set(np.unique(read_image(tmp_path / "bilevel.png", mode="L"))) <= {0, 255}


def test_luma_mode(tmp_path):
    Image.new("RGB", (2, 2), (255, 0, 0)).save(tmp_path / "r.png")
    assert read_image(tmp_path / "r.png", mode="L")[0, 0] == 76  # 0.299 * 255


def test_decompression_bomb_refused(tmp_path):
    Image.new("L", (1000, 1000), 255).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="big.png.*over the limit"):
        read_image(tmp_path / "big.png", max_pixels=999_999)


def test_truncated_file(tmp_path):
    data = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(data, format="PNG")
    (tmp_path / "cut.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_not_an_image_and_missing(tmp_path):
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageReadError, match="text.png: not an image"):
        read_image(tmp_path / "text.png")
    with pytest.raises(ImageReadError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opening it for reading would block until a writer comes
    with pytest.raises(ImageReadError, match="pipe.png: not a regular file"):
        read_image(tmp_path / "pipe.png")


def test_unicode_file_names(tmp_path):
    path = tmp_path / "第1話" / "ページ_01 ü.png"
    write_image(path, _gradient())
    assert np.array_equal(read_image(path), _gradient())
    assert list(list_images(tmp_path)) == [path]


def test_write_is_atomic_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    write_image(path, _gradient())
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ImageWriteError, match="out.png"):
        write_image(path, np.zeros((5, 5, 3), np.uint8))
    assert path.read_bytes() == before  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # temp file removed


def test_first_write_into_a_folder_sweeps_what_killed_runs_left(tmp_path):
    """A SIGKILLed run leaves its temporary files; the next write there deletes the stale ones only."""
    old = time.time() - STALE_TEMP_AGE - 60
    stale = [tmp_path / ".p1.png.a1b2_c3d.tmp", tmp_path / ".p2.jpg.4321.tmp"]  # mkstemp's and the link stage's
    live = tmp_path / ".p3.png.zz9yx8w7.tmp"  # another run writing into the same folder right now
    kept = [tmp_path / ".notes.tmp", tmp_path / "draft.tmp", tmp_path / ".p4.png.ABCDEFGH.tmp"]  # not ours
    kept.append(tmp_path / ".manifest.jsonl.a1b2c3d4.growing")  # a shard's manifest, open for hours
    for path in [*stale, live, *kept]:
        path.write_bytes(b"partial")
    for path in [*stale, *kept]:
        os.utime(path, (old, old))
    write_image(tmp_path / "out.png", _gradient())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.png", live.name, *(p.name for p in kept)])
    stale[0].write_bytes(b"partial")
    os.utime(stale[0], (old, old))
    write_image(tmp_path / "out2.png", _gradient())
    assert stale[0].exists()  # once per folder and process: not a listing per write
    assert sweep_stale_temps(tmp_path / "missing") == 0


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImageWriteError, match="cannot write"):
        write_image(blocker / "sub" / "out.png", _gradient())
    with pytest.raises(ImageWriteError, match="unsupported image format"):
        write_image(tmp_path / "out.xyz", _gradient())


def test_list_images_sorted_recursive_skips_hidden_and_other_files(tmp_path):
    for rel in ["b/2.png", "b/1.JPG", "a.webp", ".hidden/x.png", "notes.txt", "b/.tmp.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.webp", "b/1.JPG", "b/2.png"]


def test_list_images_follows_links_once_and_reports_unlistable_folders(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)  # a link back up: a loop
    (tmp_path / "alias").symlink_to(tmp_path / "sub")  # the same folder under two names
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["alias/a.png"]  # each real folder once ("alias" sorts before "sub")

    deny_listing(monkeypatch, "sub")
    (tmp_path / "alias").unlink()
    (tmp_path / "z.png").write_bytes(b"")
    errors = []
    names = [p.name for p in list_images(tmp_path, on_error=lambda path, reason: errors.append((path.name, reason)))]
    assert names == ["z.png"] and errors == [("sub", "cannot list folder: Permission denied")]
    with pytest.raises(ImageReadError, match="sub: cannot list folder"):
        list(list_images(tmp_path))


def test_tensor_round_trip():
    rgb = _gradient()
    t = to_tensor(rgb)
    assert t.shape == (1, 3, 24, 32) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert np.array_equal(to_uint8(t)[0], rgb)
    gray = rgb[..., 0].copy()
    tg = to_tensor([gray, gray])
    assert tg.shape == (2, 1, 24, 32)
    assert np.array_equal(to_uint8(tg[0]), gray)
    with pytest.raises(ValueError, match="Got"):
        to_uint8(torch.zeros(3, 3))


def test_written_files_have_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    write_image(tmp_path / "p.png", _gradient())
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize(("name", "width"), [("wide.jpg", 65501), ("wide.webp", 16384)])
def test_too_wide_for_the_format_is_a_clear_error(tmp_path, name, width):
    with pytest.raises(ImageWriteError, match=rf"{name}: {width}x1 is too large for \.\w+ .*use \.png"):
        write_image(tmp_path / name, np.zeros((1, width), np.uint8))
    assert list(tmp_path.iterdir()) == []
    write_image(tmp_path / "wide.png", np.zeros((1, width), np.uint8))  # PNG takes it


def _matrix_profile(name: str, red, green, blue, gamma: float) -> bytes:
    """A minimal ICC v2 RGB display profile (primaries adapted to D50, one gamma for all channels)."""

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    def curve(g: float) -> bytes:
        return b"curv" + bytes(4) + struct.pack(">IH", 1, round(g * 256)) + bytes(2)

    text = name.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 2 + 1 + 67)
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*red)),
        (b"gXYZ", xyz(*green)),
        (b"bXYZ", xyz(*blue)),
        (b"rTRC", curve(gamma)),
        (b"gTRC", curve(gamma)),
        (b"bTRC", curve(gamma)),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = struct.pack(">I", offset + len(data)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
    header += bytes(12) + b"acsp" + bytes(28) + s15(0.9642) + s15(1.0) + s15(0.8249)
    return header + bytes(128 - len(header)) + struct.pack(">I", len(tags)) + table + data


def test_an_embedded_wide_gamut_profile_is_converted_to_srgb(tmp_path):
    adobe = _matrix_profile(
        "Wide RGB (test)", (0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446), 2.2
    )
    pixels = np.array([[[30, 200, 30], [128, 128, 128], [255, 255, 255]]], np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png", icc_profile=adobe)
    Image.fromarray(pixels).convert("RGBA").save(tmp_path / "wide_alpha.png", icc_profile=adobe)
    for name in ("wide.png", "wide_alpha.png"):
        got = read_image(tmp_path / name).astype(int)
        assert got[0, 0, 0] < 10 and got[0, 0, 1] > 195  # a wide-gamut green is sRGB's most saturated green
        assert np.abs(got[0, 1] - 128).max() <= 3 and (got[0, 2] == 255).all()  # greys and white stay
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(tmp_path / "srgb.png", icc_profile=srgb)
    Image.fromarray(pixels).save(tmp_path / "broken.png", icc_profile=b"not a profile at all")
    for name in ("srgb.png", "broken.png"):  # sRGB already, or a profile that cannot be read: as stored
        assert (read_image(tmp_path / name) == pixels).all()
    gray = np.array([[10, 128, 250]], np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png", icc_profile=adobe)  # greyscale levels are never changed
    assert (read_image(tmp_path / "gray.png", mode=None) == gray).all()


def _dpi(path):
    meta = {}
    read_image(path, meta=meta)
    return meta["dpi"]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".bmp"])
def test_print_resolution_is_written_and_read_back(tmp_path, ext):
    write_image(tmp_path / f"a{ext}", _gradient())  # no resolution given: none declared (BMP: Pillow's 96)
    assert _dpi(tmp_path / f"a{ext}") == {".bmp": (96.01, 96.01)}.get(ext)
    path = tmp_path / f"b{ext}"
    atomic_write_bytes(path, encode_image(_gradient(), ext, dpi=(300, 600)))
    assert _dpi(path) == (300.0, 600.0)
    assert np.array_equal(read_image(path), read_image(tmp_path / f"a{ext}"))  # the pixels are the same
    with Image.open(path) as img:
        img.load()  # the inserted field leaves the file valid (PNG chunk CRC, JPEG markers)


def test_print_resolution_of_odd_files(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "zero.tif", dpi=(0, 0))
    assert _dpi(tmp_path / "zero.tif") is None
    encoded = encode_image(_gradient(), ".webp", dpi=(300, 300))  # WebP has no field for it
    assert Image.open(io.BytesIO(encoded)).info.get("dpi") is None
    img = Image.fromarray(_gradient())
    exif = img.getexif()
    exif[0x0112] = 6  # a quarter turn: the pixels read_image returns are turned, so is their resolution
    img.save(tmp_path / "rot.jpg", exif=exif, dpi=(300, 600))
    meta = {}
    assert read_image(tmp_path / "rot.jpg", meta=meta).shape == (32, 24, 3) and meta["dpi"] == (600.0, 300.0)

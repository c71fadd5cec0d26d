"""Border detection on letterboxed images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mangacolor.prepare.borders import CropConfig, TooSmall, crop_image, detect_borders, letterbox_box


def content(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 255])
def test_letterbox_black_and_white(pad):
    img = np.full((64, 64, 3), pad, np.uint8)
    img[12:52, 3:61] = content(40, 58)
    assert detect_borders(img) == (12, 52, 3, 61)
    assert detect_borders(img, "black" if pad == 0 else "white") == (12, 52, 3, 61)
    assert detect_borders(img, "white" if pad == 0 else "black") == (0, 64, 0, 64)


def test_jpeg_noise_tolerated():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 10:54] = content(64, 44)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    noisy = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    top, bottom, left, right = detect_borders(noisy)
    assert (top, bottom) == (0, 64) and abs(left - 10) <= 2 and abs(right - 54) <= 2


def test_nested_black_then_white():
    img = np.zeros((60, 60, 3), np.uint8)
    img[:, 10:50] = 255
    img[20:40, 20:40] = content(20, 20)
    assert detect_borders(img) == (20, 40, 20, 40)
    assert detect_borders(img, "black") == (0, 60, 10, 50)


def test_no_border_and_all_border():
    img = content(30, 40)
    assert detect_borders(img) == (0, 30, 0, 40)
    assert detect_borders(np.zeros((30, 40), np.uint8)) == (0, 30, 0, 40)


def test_letterbox_from_metadata_keeps_dark_content():
    original = np.zeros((100, 200, 3), np.uint8)  # a dark image: detection alone would eat it
    original[:, 100:] = 120
    small = cv2.resize(original, (64, 32), interpolation=cv2.INTER_AREA)
    boxed = np.zeros((64, 64, 3), np.uint8)
    boxed[16:48] = small
    assert letterbox_box((64, 64), (200, 100)) == (16, 48, 0, 64)
    out = crop_image(boxed, CropConfig(), original_size=(200, 100))
    assert out.shape == (32, 64, 3)
    assert letterbox_box((64, 64), (100, 100)) == (0, 64, 0, 64)  # a square original fills the square
    assert letterbox_box((64, 48), (100, 100)) is None  # not a letterbox: detection decides


def test_min_size_and_resize():
    img = np.zeros((64, 64, 3), np.uint8)
    img[20:44, 0:64] = content(24, 64)
    with pytest.raises(TooSmall):
        crop_image(img, CropConfig(min_size=32))
    out = crop_image(img, CropConfig(size=32))
    assert out.shape == (12, 32, 3)


def test_letterbox_of_an_original_smaller_than_the_square():
    """A 300x200 original in a 512 square: padded (shrink-only resize) or scaled up, the pixels decide."""
    art = np.full((200, 300, 3), 200, np.uint8)
    art[:, :40] = 10  # dark content at the image's own edge
    padded = np.zeros((512, 512, 3), np.uint8)
    padded[156:356, 106:406] = art
    assert letterbox_box((512, 512), (300, 200), enlarge=False) == (156, 356, 106, 406)
    assert crop_image(padded, CropConfig(), original_size=(300, 200)).shape == (200, 300, 3)
    scaled = np.zeros((512, 512, 3), np.uint8)
    scaled[85:426] = cv2.resize(art, (512, 341), interpolation=cv2.INTER_LINEAR)
    assert letterbox_box((512, 512), (300, 200)) == (85, 426, 0, 512)
    assert crop_image(scaled, CropConfig(), original_size=(300, 200)).shape == (341, 512, 3)
    square = np.zeros((512, 512, 3), np.uint8)
    square[206:306, 206:306] = 200
    assert crop_image(square, CropConfig(), original_size=(100, 100)).shape == (100, 100, 3)


def test_metadata_never_eats_dark_content_of_a_square_post():
    image = np.full((64, 64, 3), 200, np.uint8)
    image[:6] = 5  # dark content along the top edge
    assert crop_image(image, CropConfig(), original_size=(800, 800)).shape == (64, 64, 3)
    assert crop_image(image, CropConfig()).shape[0] < 64  # without metadata, detection takes it for a border


def test_padding_test_counts_the_band_only():
    """A 250x125 original enlarged to 256x128 in a 256 square: a band of dark content that is 15 % lit stays."""
    art = np.zeros((128, 256, 3), np.uint8)
    art[:, ::7] = 200  # dark art with thin bright lines: about 15 % of pixels lit
    image = np.zeros((256, 256, 3), np.uint8)
    image[64:192] = art
    assert crop_image(image, CropConfig(), original_size=(250, 125)).shape == (128, 256, 3)


def test_non_ascii_digit_names_are_not_post_ids(tmp_path):
    from mangacolor.imageio import write_image
    from mangacolor.prepare.borders import crop_folder
    from mangacolor.prepare.runner import RunOptions

    write_image(tmp_path / "in" / "\u00b2.png", np.full((32, 32, 3), 200, np.uint8))
    meta = tmp_path / "meta.jsonl"
    meta.write_text('{"id": 2, "image_width": 800, "image_height": 400}\n')
    report = crop_folder(tmp_path / "in", tmp_path / "out", options=RunOptions(workers=1), metadata=[meta])
    assert report.counts["done"] == 1


def test_min_size_skips_share_one_reason(tmp_path):
    from mangacolor.imageio import write_image
    from mangacolor.prepare.borders import crop_folder
    from mangacolor.prepare.runner import RunOptions

    for h, w in ((20, 30), (21, 31), (40, 12), (70, 70)):
        write_image(tmp_path / "in" / f"{h}x{w}.png", content(h, w, seed=h))
    report = crop_folder(tmp_path / "in", tmp_path / "out", CropConfig(min_size=64), RunOptions(workers=1))
    assert report.counts["done"] == 1
    assert dict(report.skip_reasons) == {"below --min-size 64 after cropping": 3}  # not one reason per size

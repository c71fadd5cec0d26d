"""Translator (working size, padding, full-resolution merge) and the folder batch engine."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mangacolor import checkpoint
from mangacolor.color import luma
from mangacolor.errors import MangacolorError
from mangacolor.imageio import read_image, write_image
from mangacolor.inference import (
    FolderOptions,
    PageRouter,
    Translator,
    load_colorizer,
    multiply_lines,
    output_paths,
    run_folder,
)
from mangacolor.models import create_model, get_spec, list_models
from tests.conftest import deny_listing, drawing, toy_colorizer


@pytest.fixture
def translator(toy_checkpoint):
    return Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma")


def test_working_size_from_checkpoint_and_override(toy_checkpoint):
    assert Translator.from_checkpoint(toy_checkpoint, device="cpu").size == 32
    assert Translator.from_checkpoint(toy_checkpoint, device="cpu", size=48).size == 48


@pytest.mark.parametrize("shape", [(37, 101), (300, 17), (8, 8), (64, 64)])
def test_any_size_and_aspect_returns_full_resolution(translator, shape):
    gray = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    (out,) = translator(gray)
    assert out.shape == (*shape, 3) and out.dtype == np.uint8
    assert np.abs(luma(out).astype(int) - gray).max() <= 1  # merged with the page's own luma


def test_padding_to_size_multiple(translator):
    p = translator.prepare(np.zeros((50, 30), np.uint8))
    assert p.tensor.shape[2] % translator.multiple == 0 and p.tensor.shape[3] % translator.multiple == 0
    assert p.valid == (32, 19)


def test_merge_none_returns_network_rgb_resized(toy_checkpoint):
    t = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="none")
    gray = np.full((40, 60), 128, np.uint8)
    (out,) = t(gray)
    assert out.shape == (40, 60, 3)
    small = t.run([t.prepare(gray)])[0][0]
    assert np.abs(out.mean((0, 1)) - small.mean((0, 1))).max() < 3


def test_multiply_lays_the_page_over_the_colour():
    gray = np.array([[255, 0, 128]], np.uint8)
    color = np.full((1, 3, 3), (200, 100, 51), np.uint8)
    assert multiply_lines(gray, color).tolist() == [[[200, 100, 51], [0, 0, 0], [100, 50, 26]]]
    ink, paint = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))  # every pair
    exact = (paint.astype(np.int64) * ink + 127) // 255  # round(paint * ink / 255)
    out = multiply_lines(ink, np.stack([paint, 255 - paint, paint], axis=-1))
    assert np.array_equal(out[..., 0], exact) and np.array_equal(out[..., 2], exact)


def test_auto_merge_multiplies_line_art_and_keeps_the_luma_of_shaded_pages(toy_checkpoint):
    auto = Translator.from_checkpoint(toy_checkpoint, device="cpu")
    assert auto.merge == "auto"
    lines = np.full((120, 160), 255, np.uint8)
    cv2.circle(lines, (80, 60), 40, 0, 2)
    prepared = auto.prepare(lines)
    assert prepared.merge == "multiply"
    (out,) = auto(lines)
    network = cv2.resize(auto.run([prepared])[0][0], (160, 120), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out, multiply_lines(lines, network))  # the paper takes the network's colour
    assert (out[lines == 0] == 0).all()
    shaded = luma(drawing(120, 160))
    assert auto.prepare(shaded).merge == "luma"
    (out,) = auto(shaded)
    assert np.abs(luma(out).astype(int) - shaded).max() <= 1
    forced = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma")
    assert forced.prepare(lines).merge == "luma"


def test_batching_matches_single(translator):
    pages = [np.random.default_rng(i).integers(0, 256, (40, 30), dtype=np.uint8) for i in range(3)]
    prepared = [translator.prepare(p) for p in pages]
    batched = translator.run(prepared)
    for p, out in zip(prepared, batched, strict=True):
        assert np.abs(translator.run([p])[0][0].astype(int) - out[0]).max() <= 1


def _pages(root, n=3):
    for i in range(n):
        write_image(root / "ch1" / f"p{i}.png", luma(drawing(seed=i)))
    return root


def test_folder_mirrors_tree_and_resumes(translator, tmp_path):
    src = _pages(tmp_path / "in")
    out = tmp_path / "out"
    report = run_folder(translator, src, out)
    assert report.counts["done"] == 3 and report.failed == 0
    assert sorted(p.name for p in (out / "ch1").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    stamp = (out / "ch1" / "p0.png").stat().st_mtime_ns
    again = run_folder(translator, src, out)
    assert again.counts["skipped"] == 3 and again.counts["done"] == 0
    assert (out / "ch1" / "p0.png").stat().st_mtime_ns == stamp
    redo = run_folder(translator, src, out, FolderOptions(overwrite=True))
    assert redo.counts["done"] == 3


def test_bad_pages_reported_batch_goes_on(translator, tmp_path):
    src = _pages(tmp_path / "in", 2)
    (src / "ch1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    (src / "ch1" / "text.png").write_text("not an image")
    report = run_folder(translator, src, tmp_path / "out", FolderOptions(batch_size=2))
    assert report.counts["done"] == 2 and report.failed == 2
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in report.failures}
    assert set(reasons) == {"broken.jpg", "text.png"}
    assert not (tmp_path / "out" / "ch1" / "broken.jpg").exists()


def test_colour_pages_copied_unless_forced(translator, tmp_path):
    src = tmp_path / "in"
    write_image(src / "color.png", drawing(64, 64))
    write_image(src / "gray.png", luma(drawing(64, 64, seed=3)))
    report = run_folder(translator, src, tmp_path / "out")
    assert report.counts["copied"] == 1 and report.counts["done"] == 1
    assert (tmp_path / "out" / "color.png").read_bytes() == (src / "color.png").read_bytes()
    forced = run_folder(translator, src, tmp_path / "out2", FolderOptions(force=True))
    assert forced.counts["done"] == 2


def test_output_format_and_output_inside_input(translator, tmp_path):
    src = _pages(tmp_path / "in", 1)
    report = run_folder(translator, src, src / "colored", FolderOptions(output_format="jpg"))
    assert report.counts["done"] == 1
    assert read_image(src / "colored" / "ch1" / "p0.jpg").shape == (48, 64, 3)
    again = run_folder(translator, src, src / "colored", FolderOptions(output_format="jpg"))
    assert again.total == 1  # its own outputs are not treated as inputs


def test_outputs_keep_the_print_resolution_of_their_page(translator, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(luma(drawing(seed=1))).save(src / "scan.png", dpi=(600, 600))
    Image.fromarray(drawing(64, 64)).save(src / "colour.tif", dpi=(350, 350))  # copied through
    write_image(src / "plain.png", luma(drawing(seed=2)))
    for fmt, ext, colour in (("same", ".png", "colour.tif"), ("jpg", ".jpg", "colour.jpg")):  # jpg: re-encoded
        out = tmp_path / f"out_{fmt}"
        report = run_folder(translator, src, out, FolderOptions(output_format=fmt))
        assert report.counts["done"] == 2 and report.counts["copied"] == 1
        for name, dpi in ((f"scan{ext}", 600), (colour, 350)):
            with Image.open(out / name) as img:
                assert [round(v, 2) for v in img.info["dpi"]] == [dpi, dpi]
        with Image.open(out / f"plain{ext}") as img:
            assert "dpi" not in img.info


def test_single_file_input(translator, tmp_path):
    write_image(tmp_path / "page.png", luma(drawing()))
    run_folder(translator, tmp_path / "page.png", tmp_path / "result.png")
    assert read_image(tmp_path / "result.png").shape == (48, 64, 3)
    run_folder(translator, tmp_path / "page.png", tmp_path / "outdir")
    assert (tmp_path / "outdir" / "page.png").exists()


def test_candidates_naming(tmp_path):
    opts = FolderOptions(candidates=True)
    paths = output_paths(tmp_path / "in" / "a" / "p.png", tmp_path / "in", tmp_path / "out", opts, 3)
    assert [p.name for p in paths] == ["p_c0.png", "p_c1.png", "p_c2.png"]


def test_unwritable_output_is_refused_before_any_page_is_read(translator, tmp_path, monkeypatch):
    src = _pages(tmp_path / "in", 1)
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    monkeypatch.setattr(Translator, "prepare", lambda *a, **k: pytest.fail("a page was read"))
    with pytest.raises(MangacolorError, match="out: a file is in the way of the output folder"):
        run_folder(translator, src, blocker)
    with pytest.raises(MangacolorError, match="sub: cannot write the output folder: a file is in the way"):
        run_folder(translator, src, blocker / "sub")
    assert blocker.read_text() == "a file where the output folder should be"


def test_output_folder_around_the_input_is_not_mistaken_for_one_inside_it(translator, tmp_path):
    work = tmp_path / "work"
    src = _pages(work / "scans", 2)
    report = run_folder(translator, src, work)  # the output holds the input: every page is still read
    assert report.counts["done"] == 2 and (work / "ch1" / "p0.png").is_file()
    page = src / "ch1" / "p0.png"
    report = run_folder(translator, page, tmp_path / "single")
    assert report.counts["done"] == 1 and (tmp_path / "single" / "p0.png").is_file()


def test_output_folder_inside_the_input(translator, tmp_path):
    src = _pages(tmp_path / "in", 2)  # ch1/p0.png, ch1/p1.png
    write_image(src / "ch2" / "p1.png", luma(drawing(seed=5)))
    report = run_folder(translator, src, src / "colour")
    assert report.counts["done"] == 3 and (src / "colour" / ".mangacolor-output").is_file()
    again = run_folder(translator, src, src / "colour")  # its outputs are not taken for new pages
    assert again.counts["skipped"] == 3 and again.counts["done"] == 0
    before = (src / "ch2" / "p1.png").read_bytes()
    with pytest.raises(MangacolorError, match="ch2: this folder inside the input holds pages of its own"):
        run_folder(translator, src, src / "ch2", FolderOptions(overwrite=True))
    assert (src / "ch2" / "p1.png").read_bytes() == before  # the user's page is neither skipped nor replaced


def test_looping_links_fail_alone(translator, tmp_path):
    src = _pages(tmp_path / "in", 2)
    (src / "loop.png").symlink_to("loop.png")
    report = run_folder(translator, src, tmp_path / "out")
    assert report.counts["done"] == 2 and report.failed == 1 and report.failures[0].path.endswith("loop.png")
    (tmp_path / "cycle").symlink_to("cycle")
    with pytest.raises(MangacolorError, match="cannot write the output folder"):
        run_folder(translator, src, tmp_path / "cycle" / "out")


@pytest.mark.parametrize("shape", [(500, 3), (3, 500), (4, 4), (1, 1)])
def test_slivers_of_pages_at_full_resolution(scan_checkpoint, shape):
    t = Translator.from_checkpoint(scan_checkpoint, device="cpu", size=0)
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    (out,) = t(image)
    assert out.shape[:2] == shape


def test_size_limit_is_an_option(translator, tmp_path):
    src = _pages(tmp_path / "in", 2)
    report = run_folder(translator, src, tmp_path / "out", FolderOptions(max_pixels=48 * 64 - 1))
    assert report.failed == 2 and "decompression bomb" in report.failures[0].reason
    assert run_folder(translator, src, tmp_path / "out2", FolderOptions(max_pixels=0)).counts["done"] == 2


def test_reference_model_at_each_pages_own_size(tmp_path):
    model = create_model("reference-unet", get_spec("reference-unet").toy)
    path = checkpoint.save(tmp_path / "ref.safetensors", model, {"working_size": 0})
    ref = drawing(seed=3)
    t = Translator.from_checkpoint(path, device="cpu", reference=ref)
    (out,) = t(luma(drawing(seed=1)))
    assert out.shape == (48, 64, 3)


def test_output_that_would_overwrite_the_input_is_refused(translator, tmp_path):
    src = _pages(tmp_path / "in", 1)
    page = src / "ch1" / "p0.png"
    before = page.read_bytes()
    for out in (page, src / "ch1"):  # the page itself, or the folder it lies in
        with pytest.raises(MangacolorError, match="p0.png: the output .* would overwrite this page"):
            run_folder(translator, page, out, FolderOptions(overwrite=True))
    with pytest.raises(MangacolorError, match="the output folder is the input folder"):
        run_folder(translator, src, src, FolderOptions(overwrite=True))
    with pytest.raises(MangacolorError, match="cannot write .gif"):
        run_folder(translator, page, tmp_path / "out.gif")
    assert page.read_bytes() == before


def test_outputs_that_collide_fail_instead_of_overwriting(translator, tmp_path):
    src = tmp_path / "in"
    write_image(src / "p.bmp", luma(drawing(seed=1)))
    write_image(src / "p.png", luma(drawing(seed=2)))
    report = run_folder(translator, src, tmp_path / "out", FolderOptions(output_format="png"))
    assert report.counts["done"] == 1 and report.failed == 1
    assert report.failures[0].path.endswith("p.png") and "same output as" in report.failures[0].reason
    assert "p.bmp" in report.failures[0].reason


def test_output_path_taken_by_a_folder_fails_that_page(translator, tmp_path):
    src = tmp_path / "in"
    write_image(src / "gray.png", luma(drawing()))
    write_image(src / "color.png", drawing(seed=4))  # copied through, by the other code path
    out = tmp_path / "out"
    (out / "gray.png").mkdir(parents=True)
    (out / "color.png").mkdir()
    report = run_folder(translator, src, out, FolderOptions(overwrite=True))
    assert report.failed == 2 and all("is a folder" in f.reason for f in report.failures)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".mangacolor")) == [
        "color.png",
        "gray.png",
    ]  # no temporary files left


def test_unwritable_formats_of_single_pages_become_png(translator, tmp_path):
    from PIL import Image

    Image.fromarray(luma(drawing())).save(tmp_path / "anim.gif")
    report = run_folder(translator, tmp_path / "anim.gif", tmp_path / "out")
    assert report.counts["done"] == 1
    assert read_image(tmp_path / "out" / "anim.png").shape == (48, 64, 3)


def test_a_failing_progress_callback_does_not_count_a_page_twice(translator, tmp_path):
    src = _pages(tmp_path / "in", 2)
    seen = []

    def on_result(result):
        seen.append((result.path, result.status))
        raise BrokenPipeError(32, "Broken pipe")  # e.g. printing to a closed pipe

    with pytest.raises(BrokenPipeError):
        run_folder(translator, src, tmp_path / "out", on_result=on_result)
    assert seen and len({path for path, _ in seen}) == len(seen)
    assert all(status == "done" for _, status in seen)


def test_link_loop_and_unlistable_folder(translator, tmp_path, monkeypatch):

    src = _pages(tmp_path / "in", 1)
    (src / "ch1" / "loop").symlink_to(src)
    (src / "locked").mkdir()
    deny_listing(monkeypatch, "locked")
    report = run_folder(translator, src, tmp_path / "out")
    assert report.counts["done"] == 1 and report.failed == 1
    assert report.failures[0].path.endswith("locked") and "cannot list folder" in report.failures[0].reason


def test_half_checkpoint_colorizes(tmp_path):
    torch.manual_seed(0)
    path = checkpoint.save(tmp_path / "h.safetensors", create_model("unet", base_width=4, depth=3), half=True)
    (out,) = Translator.from_checkpoint(path, device="cpu", size=32)(np.zeros((20, 20), np.uint8))
    assert out.shape == (20, 20, 3)


@pytest.mark.parametrize("arch", [s.name for s in list_models("colorize")])
def test_colorize_every_architecture_toy_checkpoint(arch, tmp_path):
    """Each registered colorizer's toy checkpoint loads with no flags and colorizes a folder."""
    model, ckpt, reference = toy_colorizer(arch, tmp_path)
    translator = Translator.from_checkpoint(ckpt, device="cpu", reference=reference)
    src = _pages(tmp_path / "in", 1)
    k = getattr(model, "num_outputs", 1)
    report = run_folder(translator, src, tmp_path / "out", FolderOptions(candidates=True))
    assert report.counts["done"] == 1, report.to_json()
    names = sorted(p.name for p in (tmp_path / "out" / "ch1").iterdir())
    assert names == (["p0.png"] if k == 1 else [f"p0_c{i}.png" for i in range(k)])


@pytest.fixture(scope="module")
def line_checkpoint(tmp_path_factory):
    """A second toy colorizer (other weights, working size 48): the line-art model of a :class:`PageRouter`."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("lines") / "lines.safetensors"
    return checkpoint.save(path, create_model("unet", base_width=4, depth=3), {"working_size": 48})


def _line_art(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    page = np.full((h, w), 255, np.uint8)
    for _ in range(3):
        center = (int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20)))
        cv2.circle(page, center, int(rng.integers(8, 30)), 0, 2)
    return page


def test_router_sends_line_art_to_the_line_model_and_the_rest_to_the_main_model(toy_checkpoint, line_checkpoint):
    router = load_colorizer(toy_checkpoint, line_checkpoint, device="cpu")
    assert isinstance(router, PageRouter)
    main = Translator.from_checkpoint(toy_checkpoint, device="cpu")
    lines = Translator.from_checkpoint(line_checkpoint, device="cpu")
    line_page, shaded = _line_art(), luma(drawing(120, 160))
    assert router.prepare(line_page).route == 1 and router.prepare(shaded).route == 0
    assert np.array_equal(router(line_page)[0], lines(line_page)[0])  # its own working size and merge
    assert np.array_equal(router(shaded)[0], main(shaded)[0])
    assert not np.array_equal(router(line_page)[0], main(line_page)[0])  # the two models differ
    assert router.pages == [2, 3]  # pages prepared for each model
    with pytest.raises(ValueError, match="one model"):
        router.run([router.prepare(line_page), router.prepare(shaded)])


def test_router_folder_batches_per_model_and_shape(toy_checkpoint, line_checkpoint, tmp_path):
    """Mixed kinds and shapes, batch 3: each page comes out as that page colorized alone by its model."""
    src = tmp_path / "in"
    pages = {}
    for i in range(8):
        page = _line_art(seed=i) if i % 2 else luma(drawing(48 if i % 3 else 64, 64, seed=i))
        pages[f"p{i}.png"] = page
        write_image(src / f"p{i}.png", page)
    router = load_colorizer(toy_checkpoint, line_checkpoint, device="cpu")
    report = run_folder(router, src, tmp_path / "out", FolderOptions(batch_size=3))
    assert report.counts["done"] == 8 and report.failed == 0
    assert router.pages == [4, 4]
    alone = load_colorizer(toy_checkpoint, line_checkpoint, device="cpu")
    for name, page in pages.items():
        got = read_image(tmp_path / "out" / name, mode="RGB")
        assert np.abs(got.astype(int) - alone(page)[0]).max() <= 1, name


def test_router_refuses_models_that_do_not_pair(toy_checkpoint, scan_checkpoint, tmp_path):
    with pytest.raises(MangacolorError, match="not a colorizer"):
        load_colorizer(toy_checkpoint, scan_checkpoint, device="cpu")
    _, sgru, _ = toy_colorizer("sgru", tmp_path)
    with pytest.raises(MangacolorError, match="3 colourings per page"):
        load_colorizer(toy_checkpoint, sgru, device="cpu")
    with pytest.raises(MangacolorError, match="neither model takes one"):
        load_colorizer(toy_checkpoint, toy_checkpoint, device="cpu", reference=drawing(40, 40))
    _, ref_model, reference = toy_colorizer("reference-unet", tmp_path)
    router = load_colorizer(ref_model, toy_checkpoint, device="cpu", reference=reference)  # goes to the one
    assert router.translators[0].reference is not None and router.translators[1].reference is None
    assert router(_line_art())[0].shape == (120, 160, 3)


def test_batches_gather_pages_of_one_shape_and_stay_bounded(toy_checkpoint, tmp_path, monkeypatch):
    translator = Translator.from_checkpoint(toy_checkpoint, device="cpu", size=0, merge="luma")  # page's own size
    calls = []
    real_run = translator.run
    monkeypatch.setattr(translator, "run", lambda batch: calls.append(len(batch)) or real_run(batch))
    src = tmp_path / "in"
    for i in range(6):  # two shapes, interleaved
        write_image(src / f"a{i}.png", luma(drawing(48 if i % 2 else 64, 64, seed=i)))
    report = run_folder(translator, src, tmp_path / "out", FolderOptions(batch_size=3, io_workers=1))
    assert report.counts["done"] == 6 and sorted(calls) == [3, 3]  # not six runs of one page
    calls.clear()
    prepared = []
    real_prepare = translator.prepare
    monkeypatch.setattr(translator, "prepare", lambda image: prepared.append(1) or real_prepare(image))
    monkeypatch.setattr(translator, "run", lambda batch: calls.append(len(prepared)) or real_run(batch))
    for i in range(30):  # thirty shapes: no batch fills, yet pages run long before the last is read
        write_image(src / "many" / f"b{i}.png", luma(drawing(32 + 8 * (i % 15), 32 + 8 * (i // 15), seed=i)))
    report = run_folder(translator, src / "many", tmp_path / "many", FolderOptions(batch_size=4))
    assert report.counts["done"] == 30 and len(calls) == 30
    assert calls[0] <= 2 * 8 + 1  # 2 x batch-size waiting + as many being read ahead, plus the one that tipped it
    for i in (0, 29):
        got = read_image(tmp_path / "many" / f"b{i}.png")
        assert np.abs(got.astype(int) - translator(read_image(src / "many" / f"b{i}.png"))[0]).max() <= 1


@pytest.mark.parametrize("stored", ["big", -5, 64.5, True])
def test_a_bad_working_size_in_the_checkpoint_is_a_checkpoint_error(tmp_path, stored):
    path = checkpoint.save(tmp_path / "w.safetensors", create_model("unet", base_width=4, depth=3))
    model, info = checkpoint.load(path)
    info.provenance["working_size"] = stored
    with pytest.raises(MangacolorError, match="w.safetensors: provenance working_size .* pass --size"):
        Translator(model, info, torch.device("cpu"))
    assert Translator(model, info, torch.device("cpu"), size=32).size == 32


def test_a_copied_colour_page_is_skipped_on_resume_with_candidates(tmp_path):
    _, ckpt, _ = toy_colorizer("sgru", tmp_path)
    translator = Translator.from_checkpoint(ckpt, device="cpu")
    src = tmp_path / "in"
    write_image(src / "color.png", drawing(seed=4))
    options = FolderOptions(candidates=True)
    first = run_folder(translator, src, tmp_path / "out", options)
    assert first.counts["copied"] == 1 and (tmp_path / "out" / "color_c0.png").is_file()
    again = run_folder(translator, src, tmp_path / "out", options)
    assert again.counts["skipped"] == 1 and again.counts["copied"] == 0


def test_a_model_failure_fails_its_pages_and_the_batch_goes_on(translator, tmp_path, monkeypatch):
    src = _pages(tmp_path / "in", 3)
    real_run = translator.run
    runs = []

    def run(batch):
        runs.append(1)
        if len(runs) == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 8.00 GiB\nmore detail")
        return real_run(batch)

    monkeypatch.setattr(translator, "run", run)
    report = run_folder(translator, src, tmp_path / "out", FolderOptions(io_workers=1))
    assert report.counts["done"] == 2 and report.failed == 1
    assert report.failures[0].reason == "model failed: CUDA out of memory. Tried to allocate 8.00 GiB"


def test_pages_of_another_model_or_other_settings_are_not_mixed_in(toy_checkpoint, tmp_path):
    src = _pages(tmp_path / "in", 2)
    out = tmp_path / "out"
    first = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma")
    assert run_folder(first, src, out).counts["done"] == 2
    assert run_folder(first, src, out).counts["skipped"] == 2  # the same model and settings resume
    torch.manual_seed(5)
    other_path = checkpoint.save(tmp_path / "other.safetensors", create_model("unet", base_width=4, depth=3))
    other = Translator.from_checkpoint(other_path, device="cpu", merge="luma")
    before = (out / "ch1" / "p0.png").read_bytes()
    with pytest.raises(
        MangacolorError, match=r"its pages were made with models toy.safetensors \(\w+\); size 32, not models other"
    ):
        run_folder(other, src, out)
    with pytest.raises(MangacolorError, match="made with merge luma, not merge multiply"):
        run_folder(Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="multiply"), src, out)
    assert (out / "ch1" / "p0.png").read_bytes() == before
    assert run_folder(other, src, out, FolderOptions(overwrite=True)).counts["done"] == 2
    assert run_folder(other, src, out).counts["skipped"] == 2  # the record now names the other model


def test_the_fingerprint_is_the_weights_not_the_date(tmp_path):
    torch.manual_seed(0)
    model = create_model("unet", base_width=4, depth=3)
    a = checkpoint.save(tmp_path / "a.safetensors", model, {"date": "2026-01-01"})
    b = checkpoint.save(tmp_path / "b.safetensors", model, {"date": "2026-02-02"})
    with torch.no_grad():
        next(iter(reversed(list(model.parameters())))).add_(1.0)
    c = checkpoint.save(tmp_path / "c.safetensors", model, {"date": "2026-01-01"})
    fingerprints = [checkpoint.read_info(p).fingerprint for p in (a, b, c)]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_update_redoes_a_folder_made_otherwise_and_a_stopped_redo_keeps_the_old_record(toy_checkpoint, tmp_path):
    src = _pages(tmp_path / "in", 3)
    out = tmp_path / "out"
    first = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma")
    run_folder(first, src, out)
    record = (out / ".mangacolor-colorize.json").read_text()
    assert run_folder(first, src, out, FolderOptions(update=True)).counts["skipped"] == 3  # same model: resume
    torch.manual_seed(5)
    other_path = checkpoint.save(tmp_path / "other.safetensors", create_model("unet", base_width=4, depth=3))
    other = Translator.from_checkpoint(other_path, device="cpu", merge="luma")
    real_run, calls = other.run, []

    def stop_after_one(batch):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the redo
        return real_run(batch)

    other.run = stop_after_one
    with pytest.raises(KeyboardInterrupt):
        run_folder(other, src, out, FolderOptions(update=True, io_workers=1))
    assert (out / ".mangacolor-colorize.json").read_text() == record  # the folder is not yet the other model's
    other.run = real_run
    assert run_folder(other, src, out, FolderOptions(update=True)).counts["done"] == 3  # every page redone
    assert "other.safetensors" in (out / ".mangacolor-colorize.json").read_text()
    assert run_folder(other, src, out).counts["skipped"] == 3


def test_an_update_with_failed_pages_keeps_the_old_record(toy_checkpoint, tmp_path):
    """A page that fails the redo keeps its old output: the record must not then call it done."""
    src = _pages(tmp_path / "in", 3)
    out = tmp_path / "out"
    first = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma")
    run_folder(first, src, out)
    record = (out / ".mangacolor-colorize.json").read_text()
    bigger = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma", size=48)
    real_run, calls = bigger.run, []

    def fail_once(batch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory")  # one page too big for the GPU at the new size
        return real_run(batch)

    bigger.run = fail_once
    report = run_folder(bigger, src, out, FolderOptions(update=True, io_workers=1))
    assert report.counts["done"] == 2 and report.failed == 1
    assert (out / ".mangacolor-colorize.json").read_text() == record  # still the size the old page was made at
    assert len(report.notes) == 1 and "keep their outputs made by the earlier" in report.notes[0]
    assert report.to_json()["notes"] == report.notes
    with pytest.raises(MangacolorError, match="size 32, not size 48"):
        run_folder(bigger, src, out)  # a plain re-run would skip the old page as done: refused
    bigger.run = real_run
    assert run_folder(bigger, src, out, FolderOptions(update=True)).counts["done"] == 3
    assert run_folder(bigger, src, out).counts["skipped"] == 3  # now the folder is size 48's


def test_a_failed_page_without_an_old_output_does_not_hold_the_record_back(toy_checkpoint, tmp_path):
    src = _pages(tmp_path / "in", 2)
    out = tmp_path / "out"
    run_folder(Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma"), src, out)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # fails every time, never had an output
    bigger = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma", size=48)
    report = run_folder(bigger, src, out, FolderOptions(update=True))
    assert report.counts["done"] == 2 and report.failed == 1 and not report.notes
    assert run_folder(bigger, src, out).counts["skipped"] == 2  # the record names size 48


def test_a_folder_where_nothing_was_made_is_not_bound_to_its_settings(toy_checkpoint, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    translator = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma")
    assert run_folder(translator, src, out, FolderOptions(output_format="webp")).failed == 1
    assert not (out / ".mangacolor-colorize.json").exists()
    write_image(src / "broken.png", luma(drawing(seed=1)))  # mended
    assert run_folder(translator, src, out, FolderOptions(output_format="jpg")).counts["done"] == 1  # not refused
    assert '"format": "jpg"' in (out / ".mangacolor-colorize.json").read_text()


def test_the_record_names_the_quality_and_the_style_image(toy_checkpoint, tmp_path):
    src = _pages(tmp_path / "in", 1)
    out = tmp_path / "out"
    translator = Translator.from_checkpoint(toy_checkpoint, device="cpu", merge="luma")
    run_folder(translator, src, out, FolderOptions(output_format="jpg", quality=20))
    with pytest.raises(MangacolorError, match="made with quality 20, not quality 95"):
        run_folder(translator, src, out, FolderOptions(output_format="jpg"))
    assert run_folder(translator, src, out, FolderOptions(output_format="jpg", update=True)).counts["done"] == 1
    png = tmp_path / "png"
    run_folder(translator, src, png, FolderOptions(output_format="png", quality=20))
    assert run_folder(translator, src, png, FolderOptions(output_format="png")).counts["skipped"] == 1  # lossless
    older = json.loads((png / ".mangacolor-colorize.json").read_text())  # a record from before these keys
    del older["quality"], older["reference"]
    (png / ".mangacolor-colorize.json").write_text(json.dumps(older))
    assert run_folder(translator, src, png, FolderOptions(output_format="png")).counts["skipped"] == 1
    torch.manual_seed(0)
    ref_path = checkpoint.save(tmp_path / "ref.safetensors", create_model("reference-unet", base_width=4, depth=3))
    styles = [drawing(seed=s) for s in (1, 2)]
    by_style = [Translator.from_checkpoint(ref_path, device="cpu", reference=style) for style in styles]
    styled = tmp_path / "styled"
    run_folder(by_style[0], src, styled)
    assert run_folder(by_style[0], src, styled).counts["skipped"] == 1
    with pytest.raises(MangacolorError, match="made with reference "):
        run_folder(by_style[1], src, styled)  # another style image would mix into the folder


def test_a_linked_folder_that_leads_into_the_output_is_not_read(translator, tmp_path):
    src, out = _pages(tmp_path / "in", 1), tmp_path / "out"
    out.mkdir()
    (src / "sub").symlink_to(os.path.relpath(out, src))
    for _ in range(3):
        assert run_folder(translator, src, out).failed == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["ch1/p0.png"]

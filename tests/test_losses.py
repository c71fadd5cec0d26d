"""Losses: each one decreases on a batch it can overfit; SGRU and guide losses against hand-computed
values; VGG16 weights from a file, from torchvision's cache, or a clear error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from mangacolor.errors import MangacolorError, WeightsNotFoundError
from mangacolor.losses import (
    AnimeFeatureLoss,
    CombinedFeatureLoss,
    FeatureMatchingLoss,
    GANLoss,
    PerceptualLoss,
    collection_loss,
    gradient_penalty,
    guide_loss,
    load_vgg16_features,
)
from mangacolor.models.blocks import vgg16_features
from mangacolor.models.resnet_unet import resnet_body

TOY_VGG = (4, 4, 8, 8, 8)


def _fit(params: list[torch.Tensor], loss_fn, steps: int = 15, lr: float = 0.05) -> tuple[float, float]:
    """First and last loss of a few Adam steps."""
    opt = torch.optim.Adam(params, lr=lr)
    first = last = None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    return first, last


def _toy_perceptual() -> PerceptualLoss:
    torch.manual_seed(0)
    return PerceptualLoss(vgg16_features(TOY_VGG))


def _toy_anime() -> AnimeFeatureLoss:
    torch.manual_seed(0)
    return AnimeFeatureLoss(resnet_body((1, 1, 1, 1), width=4))


@pytest.mark.parametrize("kind", ["bce", "lsgan", "hinge", "wgan-gp"])
def test_gan_losses_decrease_for_a_discriminator_that_can_separate(kind):
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))
    real, fake = torch.rand(2, 3, 8, 8), -torch.rand(2, 3, 8, 8)
    gan = GANLoss(kind)

    def loss():
        value = gan(d(real), True) + gan(d(fake), False)
        return value + 0.1 * gradient_penalty(d, real, fake) if kind == "wgan-gp" else value

    first, last = _fit(list(d.parameters()), loss, lr=0.01)
    assert last < first


def test_generator_side_gan_loss_decreases():
    torch.manual_seed(0)
    d = nn.Conv2d(3, 1, 3, padding=1)
    d.requires_grad_(False)
    fake = torch.zeros(1, 3, 8, 8, requires_grad=True)
    first, last = _fit([fake], lambda: GANLoss("hinge")(d(fake), True, for_discriminator=False))
    assert last < first


def test_feature_matching_decreases():
    torch.manual_seed(0)
    d = nn.Conv2d(3, 2, 3, padding=1)
    d.requires_grad_(False)
    real = torch.rand(1, 3, 8, 8)
    fake = torch.zeros(1, 3, 8, 8, requires_grad=True)
    fm = FeatureMatchingLoss()
    first, last = _fit([fake], lambda: fm([[d(fake), d(fake).mean()]], [[d(real), d(real).mean()]]))
    assert last < first


def test_l1_decreases():
    y = torch.rand(1, 3, 8, 8)
    fake = torch.zeros(1, 3, 8, 8, requires_grad=True)
    first, last = _fit([fake], lambda: F.l1_loss(fake, y))
    assert last < first


@pytest.mark.parametrize("which", ["vgg", "anime", "combined"])
def test_feature_losses_decrease_and_vanish_on_equal_images(which):
    loss_fn = {
        "vgg": _toy_perceptual,
        "anime": _toy_anime,
        "combined": lambda: CombinedFeatureLoss(_toy_perceptual(), _toy_anime()),
    }[which]()
    torch.manual_seed(1)
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    fake = torch.zeros(1, 3, 32, 32, requires_grad=True)
    first, last = _fit([fake], lambda: loss_fn(fake, y), steps=10)
    assert last < first
    assert loss_fn(y, y).item() == 0.0
    assert not any(p.requires_grad for p in loss_fn.parameters())


def test_collection_loss_decreases_pixels_and_features():
    torch.manual_seed(0)
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    fake = torch.zeros(1, 9, 16, 16, requires_grad=True)
    perceptual = _toy_perceptual()
    for p in (None, perceptual):
        first, last = _fit([fake], lambda p=p: collection_loss(fake, y, x, p), steps=8)
        assert last < first


def _two_outputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target 0; sketch with one white (weight 1) and one black (weight 0) pixel; outputs 0.5 and 0.2."""
    y = torch.zeros(1, 3, 1, 2)
    x = torch.tensor([[[[1.0, -1.0]]]])  # (1, 1, 1, 2)
    fake = torch.cat([torch.full((1, 3, 1, 2), 0.5), torch.full((1, 3, 1, 2), 0.2)], dim=1)  # (1, 6, 1, 2)
    return fake, y, x


def test_collection_loss_hand_computed_pixels():
    fake, y, x = _two_outputs()
    # per output: mean over (3, 1, 2) of mask * |f - y| = (3 * |f| * 1 + 0) / 6 -> 0.25 and 0.1
    expected = 0.999 * 0.1 + 0.001 * (0.25 + 0.1) / 2
    assert collection_loss(fake, y, x, None).item() == pytest.approx(expected, rel=1e-6)
    assert collection_loss(fake, y, x, None, l1_weight=2.0).item() == pytest.approx(2 * expected, rel=1e-6)
    # lines do not count: a wrong colour on the black pixel costs nothing
    fake_line = fake.clone()
    fake_line[..., 1] = 5.0
    assert collection_loss(fake_line, y, x, None).item() == pytest.approx(expected, rel=1e-6)


def test_collection_loss_hand_computed_features():
    class Pooled(nn.Module):
        """A stand-in feature extractor: one map, the image averaged to 1x1, layer weight 0.5."""

        def feature_maps(self, image):
            return [(0.5, F.avg_pool2d(image, (1, 2)))]

    fake, y, x = _two_outputs()
    # feature term: mask resized (area) to 1x1 is 0.5; 0.5 * mean(0.5 * |f|) -> 0.125 and 0.05
    per = [0.25 + 0.125, 0.1 + 0.05]
    expected = 0.999 * min(per) + 0.001 * sum(per) / 2
    assert collection_loss(fake, y, x, Pooled()).item() == pytest.approx(expected, rel=1e-6)
    per_w = [0.25 + 3 * 0.125, 0.1 + 3 * 0.05]
    expected_w = 0.999 * min(per_w) + 0.001 * sum(per_w) / 2
    assert collection_loss(fake, y, x, Pooled(), feature_weight=3.0).item() == pytest.approx(expected_w, rel=1e-6)


def test_collection_loss_takes_the_best_output_per_sample():
    y = torch.zeros(2, 3, 2, 2)
    x = torch.ones(2, 1, 2, 2)
    fake = torch.zeros(2, 6, 2, 2)
    fake[0, :3] = 1.0  # sample 0: output 1 is right; sample 1: output 0 is right
    fake[1, 3:] = 1.0
    assert collection_loss(fake, y, x, None).item() == pytest.approx(0.001 * 0.5, rel=1e-6)


def test_collection_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="Got"):
        collection_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2), None)


def test_guide_loss_hand_computed_and_decreases():
    y = torch.zeros(1, 3, 2, 2)
    y[:, 0], y[:, 2] = 1.0, -1.0  # luma = 0.299 - 0.114 = 0.185
    gray, color = torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 2, 2)
    assert guide_loss(gray, color, y).item() == pytest.approx(0.3 * 0.185 + 0.9 * 2 / 3, rel=1e-6)
    gray.requires_grad_(True)
    color.requires_grad_(True)
    first, last = _fit([gray, color], lambda: guide_loss(gray, color, y))
    assert last < first


# -- VGG16 weights ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg_state():
    torch.manual_seed(0)
    return {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}


def test_vgg_from_fp16_safetensors(vgg_state, tmp_path):
    path = tmp_path / "vgg16_features_fp16.safetensors"
    save_file({k: v.half() for k, v in vgg_state.items()}, str(path))
    features = load_vgg16_features(path)
    assert features[0].weight.dtype == torch.float32
    assert torch.equal(features[0].weight, vgg_state["features.0.weight"].half().float())
    assert not any(p.requires_grad for p in features.parameters())


def test_vgg_from_torchvision_file_in_hub_cache(vgg_state, tmp_path, monkeypatch):
    full = {**vgg_state, "classifier.0.weight": torch.zeros(2, 2), "classifier.0.bias": torch.zeros(2)}
    (tmp_path / "checkpoints").mkdir()
    torch.save(full, tmp_path / "checkpoints" / "vgg16-397923af.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    features = load_vgg16_features(None)
    assert torch.equal(features[28].bias, vgg_state["features.28.bias"])


def test_vgg_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="--vgg-weights"):
        load_vgg16_features(None)
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        load_vgg16_features(tmp_path / "nope.pth")


def test_vgg_wrong_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "other.safetensors"
    save_file({"features.0.weight": torch.zeros(2, 3, 3, 3)}, str(bad))
    with pytest.raises(MangacolorError, match="other.safetensors: not VGG16"):
        load_vgg16_features(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip")
    with pytest.raises(MangacolorError, match="junk.pth: cannot read"):
        load_vgg16_features(junk)

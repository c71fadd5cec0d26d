"""Architecture-specific behaviour beyond the registry test: attention starts as identity, the
ResNet50 encoder loads the Danbooru and torchvision files, SGRU's k outputs, the reference model's
guides and style weights, the multi-scale discriminator's outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mangacolor import checkpoint
from mangacolor.errors import MangacolorError, WeightsNotFoundError
from mangacolor.losses import FeatureMatchingLoss, GANLoss
from mangacolor.models import create_model, get_spec
from mangacolor.models.blocks import SelfAttention, norm_layer, vgg16_features
from mangacolor.models.resnet_unet import freeze_encoder, load_encoder_weights
from mangacolor.models.sgru import Swish


def _toy(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, get_spec(name).toy, **overrides)


def test_self_attention_starts_as_identity_and_learns():
    torch.manual_seed(0)
    attention = SelfAttention(16, kv_pool=2)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(attention(x), x)
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    out = attention(x)
    assert out.shape == x.shape and not torch.equal(out, x)


def test_attention_unet_has_both_attention_layers():
    model = _toy("unet-attn")
    assert model.decoder_attention is not None
    assert create_model("unet-attn", base_width=4, depth=4).decoder_attention is None
    gammas = [n for n, _ in model.named_parameters() if n.endswith("gamma")]
    assert gammas == ["bottleneck_attention.gamma", "decoder_attention.gamma"]


@pytest.fixture(scope="module")
def resnet50_files(tmp_path_factory):
    """A random torchvision resnet50 saved as the Danbooru release (Sequential(body, head)) and as torchvision's."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    net = resnet50(weights=None)
    body = nn.Sequential(*list(net.children())[:-2])
    danbooru = nn.Sequential(body, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 6)))
    root = tmp_path_factory.mktemp("resnet")
    torch.save(danbooru.state_dict(), root / "resnet50-13306192.pth")
    torch.save(net.state_dict(), root / "resnet50-0676ba61.pth")
    return root, body.state_dict()


@pytest.mark.parametrize("name", ["resnet50-13306192.pth", "resnet50-0676ba61.pth"])
def test_encoder_loads_danbooru_and_torchvision_files(resnet50_files, name):
    root, body_state = resnet50_files
    model = create_model("resnet-unet", decoder_widths=(8, 8, 8, 8, 8))  # real ResNet50 encoder, tiny decoder
    load_encoder_weights(model, root / name)
    own = model.encoder.state_dict()
    assert own.keys() == body_state.keys()
    for key, value in body_state.items():
        assert torch.equal(own[key], value), key


def test_encoder_weights_errors(resnet50_files, tmp_path):
    root, _ = resnet50_files
    with pytest.raises(WeightsNotFoundError, match="missing.pth"):
        load_encoder_weights(_toy("resnet-unet"), tmp_path / "missing.pth")
    with pytest.raises(MangacolorError, match="default ResNet50 config"):
        load_encoder_weights(_toy("resnet-unet"), root / "resnet50-13306192.pth")
    torch.save({"something.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(MangacolorError, match="other.pth: not a ResNet50"):
        load_encoder_weights(_toy("resnet-unet"), tmp_path / "other.pth")


def test_frozen_encoder_keeps_weights_and_statistics():
    model = _toy("resnet-unet")
    freeze_encoder(model)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.train()
    assert not model.encoder.training and model.decoder.training
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.rand(2, 1, 64, 64) * 2 - 1).mean().backward()
    opt.step()
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_sgru_outputs_k_colourings_and_swish_gate():
    model = _toy("sgru", num_outputs=4)
    assert model.num_outputs == 4
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 12, 32, 32)
    swish = Swish(2)
    x = torch.randn(1, 2, 4, 4)
    assert torch.allclose(swish(x), torch.sigmoid(swish.gate(x)) * x)


def test_reference_unet_guides_style_and_checkpoint(tmp_path):
    model = _toy("reference-unet").train()
    x, ref = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 3, 48, 40) * 2 - 1  # any reference size
    out = model.forward_train(x, ref)
    assert out["output"].shape == (2, 3, 32, 32)
    assert out["guide_gray"].shape == (2, 1, 32, 32) and out["guide_color"].shape == (2, 3, 32, 32)
    assert not any(p.requires_grad for p in model.style_encoder.parameters())
    assert not model.style_encoder.training
    with pytest.raises(ValueError, match="reference"):
        model(x)
    # the output follows the reference
    model.eval()
    with torch.no_grad():
        assert not torch.equal(model(x, ref), model(x, -ref))
    # pretrained weights go in, and come back from the checkpoint
    torch.manual_seed(1)
    features = vgg16_features(get_spec("reference-unet").toy["style_widths"])
    model.load_style_features(features)
    loaded, _ = checkpoint.load(checkpoint.save(tmp_path / "ref.safetensors", model))
    assert torch.equal(loaded.style_encoder[0].weight, features[0].weight)
    with pytest.raises(ValueError, match="style_widths"):
        model.load_style_features(vgg16_features())


def test_multiscale_discriminator_outputs_features_per_scale():
    d = _toy("patchgan-ms", num_scales=3)
    out = d(torch.randn(2, 4, 64, 64))
    assert len(out) == 3 and all(len(scale) == 4 for scale in out)  # 3 blocks + prediction per scale
    assert [scale[-1].shape[-1] for scale in out] == [14, 6, 2]  # 64, 32, 16 px inputs
    assert GANLoss("lsgan")(out, True).ndim == 0
    assert FeatureMatchingLoss()(out, d(torch.randn(2, 4, 64, 64))).item() > 0


def test_anime_feature_loss_from_danbooru_file(resnet50_files):
    from mangacolor.losses import AnimeFeatureLoss

    root, body_state = resnet50_files
    loss = AnimeFeatureLoss.from_file(root / "resnet50-13306192.pth")
    assert torch.equal(loss.body[4][0].conv1.weight, body_state["4.0.conv1.weight"])
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0 and loss(x, -x).item() > 0


def test_layer_norm_keeps_channel_levels_that_instance_norm_drops():
    # A 2x2 map whose channels differ only by a constant level, as at a deep U-Net's bottleneck.
    torch.manual_seed(0)
    pattern = torch.randn(1, 1, 2, 2)
    x = pattern + torch.tensor([0.0, 3.0, -2.0, 1.0]).view(1, 4, 1, 1)
    instance, layer = norm_layer("instance", 4), norm_layer("layer", 4)
    per_channel = instance(x).mean(dim=(2, 3))
    assert torch.allclose(per_channel, torch.zeros_like(per_channel), atol=1e-5)
    means = layer(x).mean(dim=(2, 3)).flatten()
    assert means.argsort().tolist() == [2, 0, 3, 1]  # the levels' order survives
    with pytest.raises(ValueError, match="'layer'"):
        norm_layer("group", 4)


def test_layer_norm_unet_is_per_image_and_round_trips(tmp_path):
    model = _toy("unet", norm="layer", dropout=0.0).train()
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    a, b = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        # Unlike batch norm, an image's output does not depend on the rest of the batch, in training
        # or at inference.
        alone = model(a)
        assert torch.allclose(model(torch.cat([a, b]))[:1], alone, atol=1e-5)
        assert torch.allclose(model.eval()(a), alone, atol=1e-5)
    path = checkpoint.save(tmp_path / "ln.safetensors", model, {"steps": 0})
    loaded, _ = checkpoint.load(path)
    assert loaded.config.norm == "layer"
    with torch.no_grad():
        assert torch.equal(loaded.eval()(a), model(a))

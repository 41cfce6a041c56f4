"""Backbone.pretrained_cfg: timm's resolve_data_config reports the backbone's real input, not ImageNet defaults."""

import pytest
import torch
from timm.data import resolve_data_config

from torchwm import load_backbone
from torchwm.backbone import Backbone
from torchwm.nn.encoders import SpatialEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def check_cfg(backbone: Backbone, size: int) -> None:
    cfg = resolve_data_config(model=backbone)
    assert cfg["input_size"] == (3, size, size)
    assert tuple(cfg["mean"]) == (0.0, 0.0, 0.0) and tuple(cfg["std"]) == (1.0, 1.0, 1.0)
    assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 1.0
    assert backbone.default_cfg == backbone.pretrained_cfg


def test_resolve_data_config_conv():
    check_cfg(Backbone(SpatialEncoder.conv(image_size=40, embed_dim=8, width=4)), 40)


def test_resolve_data_config_vit():
    check_cfg(Backbone(SpatialEncoder.vit(32, 8, 32, 1, 2)), 32)


def test_timm_transform_feeds_the_backbone_what_it_expects():
    """timm's eval transform built from the cfg turns a PIL image into the [0, 1] tensor the backbone takes (it
    normalises internally): the features equal those of the uint8 frame itself."""
    from PIL import Image
    from timm.data import create_transform

    torch.manual_seed(0)
    backbone = Backbone(SpatialEncoder.vit(32, 8, 32, 1, 2))
    frame = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    image = Image.fromarray(frame.permute(1, 2, 0).numpy())
    x = create_transform(**resolve_data_config(model=backbone))(image)
    assert x.shape == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    torch.testing.assert_close(backbone(x[None]), backbone(frame[None]), atol=1e-5, rtol=1e-4)


def test_load_backbone_has_cfg(tmp_path):
    encoder = SpatialEncoder.conv(image_size=24, embed_dim=8, width=4)
    torch.save({"encoder_spec": encoder.spec, "encoder": encoder.state_dict()}, tmp_path / "enc.pt")
    check_cfg(load_backbone(tmp_path / "enc.pt"), 24)

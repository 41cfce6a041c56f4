"""timm encoders are built offline: Hub ids and paths are refused before timm is asked for anything."""

import pytest
import timm

from torchwm.config import JEPAConfig
from torchwm.nn.encoders import SpatialEncoder

HUB_NAMES = ["hf-hub:timm/resnet18.a1_in1k", "hf_hub:timm/resnet18.a1_in1k", "timm/resnet18.a1_in1k",
             "local-dir:/tmp/some_model"]


@pytest.fixture
def no_create_model(monkeypatch):
    def create_model(*args, **kwargs):
        raise AssertionError(f"timm.create_model was called with {args}")

    monkeypatch.setattr(timm, "create_model", create_model)


@pytest.mark.parametrize("name", HUB_NAMES)
def test_from_timm_refuses_hub_names(name, no_create_model):
    with pytest.raises(ValueError) as info:
        SpatialEncoder.from_timm(name)
    msg = str(info.value)
    assert f"model.timm_model={name!r}" in msg
    assert "random init" in msg and "never downloads" in msg and "local file" in msg


def test_from_spec_refuses_hub_names(no_create_model):
    with pytest.raises(ValueError, match="never downloads"):
        SpatialEncoder.from_spec({"kind": "timm", "name": "hf-hub:timm/resnet18.a1_in1k", "image_size": None})


def test_from_timm_registry_name_still_builds():
    enc = SpatialEncoder.from_timm("resnet18")
    assert enc.kind == "timm" and enc.num_features == 512


@pytest.mark.parametrize("name", HUB_NAMES)
def test_config_refuses_hub_names(name):
    cfg = JEPAConfig()
    cfg.model.encoder = "timm"
    cfg.model.timm_model = name
    with pytest.raises(ValueError) as info:
        cfg.validate(check_paths=False)
    msg = str(info.value)
    assert f"model.timm_model={name!r}" in msg and "never downloads" in msg


def test_config_accepts_registry_name():
    cfg = JEPAConfig()
    cfg.model.encoder = "timm"
    cfg.model.timm_model = "resnet18"
    cfg.validate(check_paths=False)

"""SIGReg and multi-view SIGReg pretraining (LeJEPA-style): the statistic against hand-computed values, the
views, learning on a tiny folder, pretraining on episode frames with the state probe, and a world model on the
frozen result (CPU, seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from torchwm import JEPAAgent, JEPAConfig
from torchwm.data.images import MultiView, view_transform
from torchwm.losses import sigreg
from torchwm.runs import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sigreg_matches_a_hand_computed_value():
    z = torch.tensor([[0.0], [1.0]])  # N = 2 points in 1-D: every direction is +-1 and the statistic is even
    t, w = [0.0, 1.0, 2.0], [1.0, 2.0, 1.0]  # trapezoid on [0, 2] with 3 knots, doubled for [-2, 2]
    expected = 0.0
    for tk, wk in zip(t, w):
        phi = math.exp(-tk * tk / 2)
        cos_mean = (math.cos(0.0) + math.cos(tk)) / 2
        sin_mean = (math.sin(0.0) + math.sin(tk)) / 2
        expected += wk * phi * ((cos_mean - phi) ** 2 + sin_mean ** 2)
    expected *= 2  # times N
    assert float(sigreg(z, directions=5, knots=3, t_max=2.0)) == pytest.approx(expected, rel=1e-6)


def test_sigreg_separates_gaussian_from_collapsed_batches():
    gen = torch.Generator().manual_seed(0)
    gaussian = sigreg(torch.randn(512, 16, generator=gen), generator=gen)
    t = np.linspace(0, 3, 17)
    weights = np.full(17, 2 * 3 / 16)
    weights[[0, -1]] /= 2
    phi = np.exp(-t ** 2 / 2)
    collapsed_per_n = float(np.sum(weights * phi * (1 - phi) ** 2))  # ecf = 1 at every t
    collapsed = sigreg(torch.zeros(512, 16), generator=gen)
    assert float(collapsed) == pytest.approx(512 * collapsed_per_n, rel=1e-5)
    assert 0.5 < float(gaussian) < 1.6  # about 1 for Gaussian embeddings, whatever N
    assert float(sigreg(3 * torch.randn(512, 16, generator=gen), generator=gen)) > 5 * float(gaussian)  # too wide
    shifted = sigreg(torch.randn(512, 16, generator=gen) + 2, generator=gen)
    assert float(shifted) > 5 * float(gaussian)
    # leading dims: one statistic per view, averaged
    views = torch.stack([torch.randn(256, 8, generator=gen), torch.zeros(256, 8)])
    both = float(sigreg(views, generator=torch.Generator().manual_seed(1)))
    assert both > 0.4 * 256 * collapsed_per_n
    with pytest.raises(ValueError, match=r"\(\.\.\., N, D\)"):
        sigreg(torch.zeros(5))


def _write_folder(root, classes=("a", "b"), per_class=6, size=24, seed=0):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = np.full((size, size, 3), 40, dtype=np.uint8)
            lo = int(rng.integers(0, size // 2))
            image[lo: lo + size // 3, lo: lo + size // 3] = (200, 60 + 100 * c, 30)
            Image.fromarray(image).save(root / name / f"{i}.png")


def test_views_are_augmented_and_photometric_views_keep_geometry():
    image = torch.randint(0, 100, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    image[:, 4:12, 20:28] = 255  # a white square at the top right, on dark noise
    views = MultiView(_OneImage(image), 32, global_views=2, local_views=3, global_scale=(0.3, 1.0),
                      local_scale=(0.05, 0.3))
    torch.manual_seed(0)
    stack, label = views[0]
    assert stack.shape == (5, 3, 32, 32) and stack.dtype == torch.float32 and label == 0
    assert 0.0 <= float(stack.min()) and float(stack.max()) <= 1.0
    assert len({v.numpy().tobytes() for v in stack}) == 5, "views must differ"
    photometric = view_transform(32, (0.3, 1.0), geometric=False)
    torch.manual_seed(1)
    for _ in range(10):
        view = photometric(image).mean(0)
        inside, outside = view[4:12, 20:28].mean(), view[16:, :16].mean()
        assert abs(float(inside) - float(outside)) > 0.15, "the square must stay where it was"


class _OneImage(torch.utils.data.Dataset):
    def __init__(self, image):
        self.image = image

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return self.image, 0


def sigreg_config(root, run_dir, **overrides) -> JEPAConfig:
    items = {
        "dataset": "imagefolder", "pretrain.method": "sigreg", "root_path": str(root), "image_folder": "train",
        "image_size": 24, "embed_dim": 16, "model.encoder": "conv", "model.conv_width": 8, "batch_size": 6,
        "learning_rate": 3e-3, "device": "cpu", "pretrain.global_views": 2, "pretrain.local_views": 2,
        "pretrain.projector_dim": 16, "pretrain.projector_hidden": 32, "pretrain.sigreg_directions": 64,
        "pretrain.val_folder": "", "train.warmup_steps": 2, "logging.run_dir": str(run_dir),
        "logging.progress": False, "logging.tensorboard": False, "logging.log_every": 1,
    }
    items.update(overrides)
    return JEPAConfig().override([f"{k}={v}" for k, v in items.items()]).validate()


def test_sigreg_pretraining_loss_falls_on_a_tiny_folder(tmp_path):
    _write_folder(tmp_path / "images" / "train")
    agent = JEPAAgent(sigreg_config(tmp_path / "images", tmp_path / "run", **{"train.steps": 40}))
    metrics = agent.train()
    records = agent.run.read_metrics()
    losses = [r["loss/total"] for r in records]
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-8:]) < 0.75 * np.mean(losses[:4]), (losses[:4], losses[-8:])
    assert metrics["loss/sigreg"] > 0 and metrics["collapse/embedding_std"] > 1e-3
    with Image.open(agent.run.figures_dir / "views.png") as figure:
        assert figure.width == 4 * (24 + 2) + 2  # 4 views per row
    # the encoder is the backbone: a conv encoder that load_backbone rebuilds
    from torchwm import load_backbone

    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(load_backbone(agent.run_dir)(x), agent.model.encoder.eval()(x))


def test_ijepa_needs_a_vit_and_vjepa_needs_clips(tmp_path):
    _write_folder(tmp_path / "images" / "train", per_class=2)
    with pytest.raises(ValueError, match="ijepa trains a ViT"):
        sigreg_config(tmp_path / "images", tmp_path / "run", **{"pretrain.method": "ijepa"})
    with pytest.raises(ValueError, match="vjepa reads the datasets 'episodes', 'videos'"):
        sigreg_config(tmp_path / "images", tmp_path / "run", **{"pretrain.method": "vjepa", "model.encoder": "vit",
                                                                "patch_size": 8, "embed_dim": 32, "num_heads": 2})


@pytest.fixture(scope="module")
def point_mass_run(tmp_path_factory):
    """SIGReg on point_mass frames with photometric views and a keypoint encoder, then its state probe."""
    tmp = tmp_path_factory.mktemp("sigreg_pm")
    cfg = JEPAConfig().override([f"{k}={v}" for k, v in {
        "dataset": "episodes", "pretrain.method": "sigreg", "env.id": "dmc:point_mass-easy", "image_size": 16,
        "embed_dim": 2, "model.encoder": "conv", "model.conv_width": 4, "model.conv_head": "keypoints",
        "model.keypoints": 4, "batch_size": 8, "learning_rate": 3e-3, "device": "cpu",
        "data.path": str(tmp / "store"), "data.episodes": 4, "data.steps": 15, "data.policy": "noise",
        "data.workers": 1, "data.heldout_fraction": 0.25, "pretrain.geometric_augment": False,
        "pretrain.local_views": 0, "pretrain.projector_dim": 4, "pretrain.projector_hidden": 16,
        "pretrain.sigreg_directions": 32, "train.steps": 4, "train.warmup_steps": 1, "train.eval_every": 4,
        "logging.run_dir": str(tmp / "run"), "logging.progress": False, "logging.tensorboard": False}.items()])
    agent = JEPAAgent(cfg)
    return agent, agent.train(), tmp


def test_sigreg_on_episode_frames_logs_the_state_probe(point_mass_run):
    agent, metrics, _ = point_mass_run
    assert metrics["steps"] == 4  # train.steps; one epoch would be 3 x 16 frames / 8
    assert "eval/probe_r2" in metrics and metrics["eval/probe_r2_train"] <= 1.0
    assert "state probe R^2" in agent.describe(metrics)
    assert len(agent.images()) == 3 * 16  # the frames of the 3 training episodes


def test_world_model_on_a_frozen_pretrained_encoder(point_mass_run, frozen_world_model_config):
    pretrained, _, tmp = point_mass_run
    cfg = frozen_world_model_config(pretrained.run_dir, "dmc:point_mass-easy", tmp / "store", tmp / "wm",
                                    image_size=16, episodes=4, steps=15)
    agent = JEPAAgent(cfg)
    before = {k: v.clone() for k, v in pretrained.model.backbone.state_dict().items()}
    agent.train()
    model = agent.world_model
    assert model.freeze_encoder and not model.encoder.training and model.training is False
    after = model.encoder.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before), \
        "a frozen encoder's weights must not change"
    moved = [k for k, v in model.state_dict().items() if k.startswith("predictor.")]
    assert moved and any(float(model.state_dict()[k].abs().sum()) > 0 for k in moved), "the predictor trains"
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert "loss/variance" in agent.run.final_metrics()  # VICReg on the temporal contexts
    loaded = JEPAAgent.load(agent.run_dir)  # plans unchanged
    assert loaded.world_model.freeze_encoder
    result = loaded.evaluate(episodes=1, baseline=False)
    assert len(result.results["planner"].success) == 1
    assert RunDir(agent.run_dir).model.exists()

"""Encoders, temporal encoder, predictor, losses, EMA, the world model and evaluation (torchwm.nn & co.)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from torchwm.config import JEPAConfig
from torchwm.ema import EMA, momentum_schedule
from torchwm.eval import LinearProbe, prediction_errors, probe_targets
from torchwm.eval.probes import probe_kinds
from torchwm.losses import (covariance_loss, effective_rank, embedding_std, prediction_loss, temporal_smoothness,
                            variance_loss)
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.predictor import Predictor
from torchwm.nn.temporal import TemporalEncoder
from torchwm.world_model import WorldModel


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ helpers
IMG, EMBED = 16, 16


def tiny_world_model(history: int = 2, horizon: int = 2, ema: float | None = None, low=(-1.0, -1.0),
                     high=(1.0, 1.0), seed: int = 0, **kwargs) -> WorldModel:
    torch.manual_seed(seed)
    encoder = SpatialEncoder.conv(IMG, EMBED, width=4)
    temporal = TemporalEncoder(EMBED, 16)
    predictor = Predictor(temporal.context_dim, len(low), EMBED, 32)
    return WorldModel(encoder, temporal, predictor, torch.tensor(low), torch.tensor(high), history, horizon,
                      ema_momentum=ema, **kwargs)


def random_frames(*lead: int, size: int = IMG, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*lead, 3, size, size), dtype=torch.uint8, generator=g)


def random_actions(*lead: int, dim: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*lead, dim, generator=g) * 2 - 1


# ------------------------------------------------------------------------------------ spatial encoders
def test_vit_encoder_shapes_and_uint8_input():
    torch.manual_seed(0)
    enc = SpatialEncoder.vit(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2).eval()
    assert enc.kind == "vit" and enc.embed_dim == enc.num_features == 32
    frames = random_frames(5, size=32)
    z = enc(frames)
    tokens = enc.forward_features(frames)
    assert z.shape == (5, 32) and z.dtype == torch.float32
    assert tokens.shape == (5, (32 // 8) ** 2, 32)
    # uint8 frames are scaled to [0, 1] inside: same result as float frames / 255
    torch.testing.assert_close(enc(frames.float() / 255), z)
    torch.testing.assert_close(enc.forward_features(frames.float() / 255), tokens)
    assert not torch.allclose(z[0], z[1]), "different images must give different embeddings"


@pytest.mark.parametrize("image_size, width, tokens", [(32, 4, 4), (64, 8, 16), (40, 4, 9)])
def test_conv_encoder_shapes(image_size, width, tokens):
    torch.manual_seed(0)
    enc = SpatialEncoder.conv(image_size=image_size, embed_dim=24, width=width)
    frames = random_frames(3, size=image_size)
    assert enc(frames).shape == (3, 24) and enc.embed_dim == 24
    # one token per cell of the stride-16 feature map, 8 * width channels
    assert enc.forward_features(frames).shape == (3, tokens, 8 * width)
    torch.testing.assert_close(enc(frames.float() / 255), enc(frames))


@pytest.mark.parametrize("build", [
    lambda: SpatialEncoder.vit(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2),
    lambda: SpatialEncoder.conv(image_size=32, embed_dim=16, width=4),
], ids=["vit", "conv"])
def test_from_spec_rebuilds_identical_encoder(build):
    torch.manual_seed(0)
    enc = build().eval()
    torch.manual_seed(1)  # a different init: the outputs only match after loading the weights
    rebuilt = SpatialEncoder.from_spec(enc.spec).eval()
    assert rebuilt.spec == enc.spec and rebuilt.kind == enc.kind and rebuilt.embed_dim == enc.embed_dim
    frames = random_frames(4, size=32)
    assert not torch.allclose(rebuilt(frames), enc(frames))
    rebuilt.load_state_dict(enc.state_dict())
    assert torch.equal(rebuilt(frames), enc(frames))
    assert torch.equal(rebuilt.forward_features(frames), enc.forward_features(frames))


def test_spec_contents_and_unknown_kind():
    assert SpatialEncoder.conv(32, 16, 4).spec == {"kind": "conv", "image_size": 32, "embed_dim": 16, "width": 4,
                                                   "head": "flatten", "keypoints": 64}
    assert SpatialEncoder.vit(32, 8, 32, 1, 2).spec == {"kind": "vit", "image_size": 32, "patch_size": 8,
                                                        "embed_dim": 32, "depth": 1, "num_heads": 2,
                                                        "mlp_ratio": 4.0}
    with pytest.raises(ValueError, match="unknown encoder kind 'mlp'"):
        SpatialEncoder.from_spec({"kind": "mlp"})


def test_from_timm_resnet18_offline():
    torch.manual_seed(0)
    enc = SpatialEncoder.from_timm("resnet18").eval()
    assert enc.kind == "timm" and enc.embed_dim == 512 and enc.spec == {"kind": "timm", "name": "resnet18",
                                                                        "image_size": None}
    frames = random_frames(2, size=32)
    z = enc(frames)
    assert z.shape == (2, 512) and torch.isfinite(z).all()
    assert enc.forward_features(frames).shape == (2, 1, 512)  # 32 px / stride 32 = one cell
    rebuilt = SpatialEncoder.from_spec(enc.spec).eval()
    rebuilt.load_state_dict(enc.state_dict())
    assert torch.equal(rebuilt(frames), z)


def test_from_timm_unknown_name_raises_value_error():
    with pytest.raises(ValueError, match="model.timm_model='no_such_net_42'"):
        SpatialEncoder.from_timm("no_such_net_42")


# ------------------------------------------------------------------------------- temporal, predictor
def test_temporal_encoder_forward_update_latest():
    torch.manual_seed(0)
    temporal = TemporalEncoder(embed_dim=8, hidden_dim=12)
    assert temporal.context_dim == 20
    z = torch.randn(3, 4, 8)
    context = temporal(z)
    assert context.shape == (3, 20)
    assert torch.equal(temporal.latest(context), z[:, -1])
    # update() continues the recurrence of forward(): one more frame either way gives the same context
    stepped = temporal.update(temporal(z[:, :3]), z[:, 3])
    assert stepped.shape == (3, 20)
    torch.testing.assert_close(stepped, context)
    z_next = torch.randn(3, 8)
    assert torch.equal(temporal.latest(temporal.update(context, z_next)), z_next)
    # the hidden state depends on the history, not only on the last frame
    other = z.clone()
    other[:, 0] += 1.0
    assert not torch.allclose(temporal(other), context)
    for bad in (torch.randn(3, 8), torch.randn(3, 4, 7)):
        with pytest.raises(ValueError, match=r"z_history must be \(B, h, 8\)"):
            temporal(bad)


def test_predictor_shape_and_errors():
    torch.manual_seed(0)
    predictor = Predictor(context_dim=20, action_dim=3, embed_dim=8, hidden_dim=16, depth=2)
    out = predictor(torch.randn(5, 20), torch.randn(5, 3))
    assert out.shape == (5, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="action has 2 dims, the predictor expects 3"):
        predictor(torch.randn(5, 20), torch.randn(5, 2))
    with pytest.raises(ValueError, match="depth=0"):
        Predictor(20, 3, 8, depth=0)


# --------------------------------------------------------------------------------------- world model
def test_world_model_encode_context_rollout_shapes():
    model = tiny_world_model(history=2, horizon=2).eval()
    frames = random_frames(3, 5)
    z = model.encode(frames)
    assert z.shape == (3, 5, EMBED) and model.embed_dim == EMBED and model.action_dim == 2
    # encode() is the encoder applied frame by frame
    torch.testing.assert_close(z[1, 4], model.encoder(frames[1, 4:5])[0])
    torch.testing.assert_close(model.encode(frames.float() / 255), z)
    context = model.context(z[:, :2])
    assert context.shape == (3, model.temporal.context_dim)
    actions = random_actions(3, 7)  # longer than the training horizon (2)
    preds = model.rollout(context, actions)
    assert preds.shape == (3, 7, EMBED) and torch.isfinite(preds).all()
    # the first step is the latest embedding plus the predicted change
    first = z[:, 1] + model.predictor(context, model.normalise_actions(actions[:, 0]))
    torch.testing.assert_close(preds[:, 0], first)


def test_rollout_is_autoregressive():
    model = tiny_world_model().eval()
    torch.nn.init.normal_(model.predictor.net[-1].weight, std=0.1)  # trained-like: Δz depends on the action
    context = model.context(model.encode(random_frames(4, 2)))
    actions = random_actions(4, 4)
    with torch.no_grad():
        short = model.rollout(context, actions[:, :2])
        long = model.rollout(context, actions)
    torch.testing.assert_close(short, long[:, :2], atol=1e-6, rtol=1e-6)
    # and later actions matter for later steps only
    changed = actions.clone()
    changed[:, 3] = -changed[:, 3]
    with torch.no_grad():
        other = model.rollout(context, changed)
    torch.testing.assert_close(other[:, :3], long[:, :3], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(other[:, 3], long[:, 3])


def test_rollout_errors():
    model = tiny_world_model()
    context = model.context(model.encode(random_frames(2, 2)))
    with pytest.raises(ValueError, match=r"actions must be \(B, T, 2\)"):
        model.rollout(context, random_actions(2, 3, dim=3))
    with pytest.raises(ValueError, match=r"actions must be \(B, T, 2\)"):
        model.rollout(context, random_actions(2))
    with pytest.raises(ValueError, match="actions batch 3 != context batch 2"):
        model.rollout(context, random_actions(3, 2))


def test_action_normalisation():
    model = tiny_world_model(low=(-2.0, 0.0), high=(2.0, 1.0))
    low, high = torch.tensor([[-2.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    torch.testing.assert_close(model.normalise_actions(low), torch.tensor([[-1.0, -1.0]]))
    torch.testing.assert_close(model.normalise_actions(high), torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(model.normalise_actions(torch.tensor([[0.0, 0.5], [1.0, 0.25]])),
                               torch.tensor([[0.0, 0.0], [0.5, -0.5]]))
    for low_, high_ in [((-1.0, 0.0), (1.0, 0.0)), ((-1.0,), (1.0, 2.0))]:
        with pytest.raises(ValueError, match="action bounds"):
            tiny_world_model(low=low_, high=high_)


def test_loss_terms_match_hand_computation():
    model = tiny_world_model(history=2, horizon=3, var_weight=0.7, cov_weight=0.05)
    frames, actions = random_frames(4, 5), random_actions(4, 3)
    out = model.loss(frames, actions)
    assert set(out.terms) == {"total", "prediction", "variance", "covariance", "prediction_step1",
                              "prediction_step2", "prediction_step3"}
    assert out.frames == 20 and out.embeddings.shape == (20, EMBED) and not out.embeddings.requires_grad
    assert out.total.requires_grad and all(not v.requires_grad for v in out.terms.values())
    with torch.no_grad():
        z = model.encode(frames)
        preds = model.rollout(model.context(z[:, :2]), actions)
        per_step = ((preds - z[:, 2:]) ** 2).mean(dim=(0, 2))
        flat = z.reshape(20, EMBED)
        var, cov = variance_loss(flat), covariance_loss(flat)
    torch.testing.assert_close(out.terms["prediction"], per_step.mean())
    for k in range(3):
        torch.testing.assert_close(out.terms[f"prediction_step{k + 1}"], per_step[k])
    torch.testing.assert_close(out.terms["variance"], var)
    torch.testing.assert_close(out.terms["covariance"], cov)
    torch.testing.assert_close(out.total.detach(), per_step.mean() + 0.7 * var + 0.05 * cov)
    torch.testing.assert_close(out.embeddings, flat)

    # zero weights switch the regularisers off
    plain = tiny_world_model(history=2, horizon=3, var_weight=0.0, cov_weight=0.0)
    out = plain.loss(frames, actions)
    assert float(out.terms["variance"]) == 0.0 and float(out.terms["covariance"]) == 0.0
    torch.testing.assert_close(out.total.detach(), out.terms["prediction"])


def test_loss_rejects_mismatched_lengths():
    model = tiny_world_model(history=2, horizon=2)
    with pytest.raises(ValueError, match=r"frames has 4 steps.*history \+ horizon = 2 \+"):
        model.loss(random_frames(2, 4), random_actions(2, 3))  # 4 frames need 4 - 2 = 2 actions


def test_vicreg_within_sequence_sees_only_what_changes():
    model = tiny_world_model(history=2, horizon=2, var_weight=0.7, cov_weight=0.05, vicreg_within_sequence=True)
    frames, actions = random_frames(4, 5), random_actions(4, 3)
    out = model.loss(frames, actions)
    with torch.no_grad():
        z = model.encode(frames)
        dev = (z - z.mean(dim=1, keepdim=True)).reshape(20, EMBED)
    torch.testing.assert_close(out.terms["variance"], variance_loss(dev))
    torch.testing.assert_close(out.terms["covariance"], covariance_loss(dev))
    torch.testing.assert_close(out.embeddings, z.reshape(20, EMBED))  # the collapse metrics still see the frames

    # sequences of one repeated frame each: different between sequences, so the usual terms are met in
    # part; constant within each, so the within-sequence terms see no variance at all
    still = random_frames(8, 1).expand(8, 5, 3, IMG, IMG)
    across = tiny_world_model(history=2, horizon=2).loss(still, random_actions(8, 3)).terms["variance"]
    within = model.loss(still, random_actions(8, 3)).terms["variance"]
    torch.testing.assert_close(within, torch.tensor(1.0 - 1e-2), atol=1e-3, rtol=0)  # relu(1 - sqrt(0 + 1e-4))
    assert float(across) < float(within) - 0.05


def test_within_sequence_std_splits_the_variance_hinge():
    """Frames over the batch at std 1 (the scale) plus the within-sequence deviations at within_sequence_std."""
    model = tiny_world_model(history=2, horizon=2, cov_weight=0.05, vicreg_within_sequence=True,
                             within_sequence_std=0.3)
    frames, actions = random_frames(4, 5), random_actions(4, 3)
    out = model.loss(frames, actions)
    with torch.no_grad():
        z = model.encode(frames)
    flat = z.reshape(20, EMBED)
    dev = (z - z.mean(dim=1, keepdim=True)).reshape(20, EMBED)
    torch.testing.assert_close(out.terms["variance"], variance_loss(flat) + variance_loss(dev, gamma=0.3))
    torch.testing.assert_close(out.terms["covariance"], covariance_loss(dev))  # covariance stays within sequences
    # sequences that stand still but differ from each other: the frames' hinge sees their spread, the deviations'
    # hinge pays its whole target (0.3 - sqrt(1e-4)) since nothing moves
    still = random_frames(8, 1).expand(8, 5, 3, IMG, IMG)
    with torch.no_grad():
        spread = variance_loss(model.encode(still.reshape(40, 3, IMG, IMG)))
    torch.testing.assert_close(model.loss(still, random_actions(8, 3)).terms["variance"], spread + 0.29,
                               atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="within_sequence_std=0.3: must be 0, or > 0 together with"):
        tiny_world_model(history=2, horizon=2, within_sequence_std=0.3)
    with pytest.raises(ValueError, match=r"train.within_sequence_std=0.3, train.vicreg_within_sequence=False"):
        JEPAConfig.from_dict({"train": {"within_sequence_std": 0.3}}).validate(check_paths=False)
    with pytest.raises(ValueError, match="a frozen encoder's frame embeddings cannot be scaled"):
        tiny_world_model(history=2, horizon=2, vicreg_within_sequence=True, within_sequence_std=0.3,
                         freeze_encoder=True)
    with pytest.raises(ValueError, match=r"train.window_motion_threshold=0.55, train.within_sequence_std=0: the"):
        JEPAConfig.from_dict({"train": {"window_motion_threshold": 0.55}}).validate(check_paths=False)
    with pytest.raises(ValueError, match=r"train.window_motion_threshold=1.5: must be in \[0, 1\]"):
        JEPAConfig.from_dict({"train": {"window_motion_threshold": 1.5}}).validate(check_paths=False)
    with pytest.raises(ValueError, match=r"model.freeze_encoder=True, train.within_sequence_std=0.3: a frozen"):
        JEPAConfig.from_dict({"model": {"freeze_encoder": True},
                              "train": {"within_sequence_std": 0.3, "vicreg_within_sequence": True}}
                             ).validate(check_paths=False)


def test_smoothness_term_adds_the_mean_squared_step():
    frames, actions = random_frames(4, 5), random_actions(4, 3)
    plain = tiny_world_model(history=2, horizon=2).loss(frames, actions)
    model = tiny_world_model(history=2, horizon=2, smoothness_weight=2.5)
    out = model.loss(frames, actions)
    with torch.no_grad():
        z = model.encode(frames)
    steps = z[:, 1:] - z[:, :-1]
    torch.testing.assert_close(out.terms["smoothness"], (steps ** 2).sum() / (4 * 4 * EMBED))
    torch.testing.assert_close(out.total, plain.total + 2.5 * out.terms["smoothness"])
    assert "smoothness" not in plain.terms


def test_temporal_smoothness_ranks_a_steady_sweep_below_a_flickering_one():
    sweep = torch.linspace(0, 1, 16)[None, :, None].expand(8, 16, 1)
    flicker = sweep[:, torch.randperm(16, generator=torch.Generator().manual_seed(0))]  # the same values, shuffled
    torch.testing.assert_close(temporal_smoothness(sweep), torch.tensor(1 / 15 ** 2))
    assert float(temporal_smoothness(flicker)) > 10 * float(temporal_smoothness(sweep))
    torch.testing.assert_close(temporal_smoothness(sweep[:, :1].expand(8, 16, 1)), torch.tensor(0.0))
    # its gradient alone lowers it
    z = torch.randn(3, 6, 4, requires_grad=True)
    before = temporal_smoothness(z)
    before.backward()
    with torch.no_grad():
        assert float(temporal_smoothness(z - 0.1 * z.grad)) < float(before)
    with pytest.raises(ValueError, match=r"needs sequences \(B, L >= 2, D\), got \(3, 4\)"):
        temporal_smoothness(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="smoothness_weight=-1.0: must be >= 0"):
        tiny_world_model(smoothness_weight=-1.0)
    with pytest.raises(ValueError, match="a frozen encoder's embeddings cannot be made smoother"):
        tiny_world_model(smoothness_weight=1.0, freeze_encoder=True)
    with pytest.raises(ValueError, match=r"model.freeze_encoder=True, train.smoothness_weight=1.0: a frozen"):
        JEPAConfig.from_dict({"model": {"freeze_encoder": True}, "train": {"smoothness_weight": 1.0}}
                             ).validate(check_paths=False)


def test_the_agent_builds_the_world_model_its_config_describes():
    from torchwm import JEPAAgent

    cfg = JEPAConfig(image_size=32, patch_size=8, embed_dim=32, num_layers=1, num_heads=2, predict_horizon=3)
    cfg.model.temporal_hidden, cfg.model.predictor_hidden, cfg.model.history = 16, 32, 2
    cfg.train.var_weight, cfg.train.cov_weight = 0.5, 0.1
    model = JEPAAgent(cfg).build_model([-2.0, 0.0], [2.0, 1.0])
    assert model.encoder.kind == "vit" and model.embed_dim == 32 and model.action_dim == 2
    assert (model.history, model.horizon, model.var_weight, model.cov_weight) == (2, 3, 0.5, 0.1)
    assert model.target_encoder is None and model.temporal.context_dim == 16 + 32
    assert not model.vicreg_within_sequence
    torch.testing.assert_close(model.normalise_actions(torch.tensor([[-2.0, 1.0]])), torch.tensor([[-1.0, 1.0]]))
    out = model.loss(random_frames(2, 5, size=32), random_actions(2, 3))
    assert torch.isfinite(out.total) and "prediction_step3" in out.terms

    cfg.model.encoder, cfg.model.conv_width, cfg.train.ema, cfg.train.ema_momentum = "conv", 4, True, 0.95
    cfg.train.vicreg_within_sequence, cfg.train.smoothness_weight = True, 0.5
    model = JEPAAgent(cfg).build_model([-1.0], [1.0])
    assert model.vicreg_within_sequence and model.smoothness_weight == 0.5
    assert model.encoder.kind == "conv" and model.encoder.spec["width"] == 4
    assert model.target_encoder is not None and model.ema_momentum == 0.95 and model.action_dim == 1


# ------------------------------------------------------------------------------------------- losses
def test_prediction_loss_per_step():
    pred = torch.zeros(2, 3, 4)
    target = torch.zeros(2, 3, 4)
    target[:, 1] = 1.0
    target[0, 2] = 2.0
    loss, per_step = prediction_loss(pred, target)
    torch.testing.assert_close(per_step, torch.tensor([0.0, 1.0, 2.0]))  # step 3: (4 + 0) / 2
    torch.testing.assert_close(loss, torch.tensor(1.0))
    with pytest.raises(ValueError, match="differ in shape"):
        prediction_loss(pred, target[:, :2])


def test_variance_loss_by_hand():
    # columns with unbiased variances 4/3, 1/12 and 0
    z = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0], [2.0, 0.5, 3.0], [2.0, 0.5, 3.0]])
    eps = 1e-4
    expected = np.mean([max(0.0, 1 - math.sqrt(v + eps)) for v in (4 / 3, 1 / 12, 0.0)])
    assert float(variance_loss(z, eps=eps)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx((1 - math.sqrt(1 / 12 + eps) + 1 - math.sqrt(eps)) / 3)
    # gamma sets the target standard deviation
    expected2 = np.mean([max(0.0, 2 - math.sqrt(v + eps)) for v in (4 / 3, 1 / 12, 0.0)])
    assert float(variance_loss(z, gamma=2.0, eps=eps)) == pytest.approx(expected2, rel=1e-6)
    # a well-spread batch pays nothing
    assert float(variance_loss(torch.tensor([[-3.0, 5.0], [3.0, -5.0]]))) == 0.0


def test_covariance_loss_by_hand():
    x = torch.tensor([0.0, 0.0, 2.0, 2.0])  # unbiased variance v = 4/3
    correlated = torch.stack([x, 2 * x, -x], dim=1)
    # cov = v * [[1, 2, -1], [2, 4, -2], [-1, -2, 1]]; off-diagonal squares: 2 * v^2 * (4 + 1 + 4)
    v = 4 / 3
    assert float(covariance_loss(correlated)) == pytest.approx(18 * v**2 / 3, rel=1e-6)
    # orthogonal zero-mean +-1 columns (a Hadamard matrix without its constant column): no covariance
    hadamard = torch.tensor([[1.0, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]])
    assert float(covariance_loss(hadamard)) == pytest.approx(0.0, abs=1e-12)
    assert float(covariance_loss(hadamard + 5.0)) == pytest.approx(0.0, abs=1e-10)  # centred inside


def test_effective_rank_and_embedding_std():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(256, 1, generator=g), torch.randn(1, 16, generator=g)
    assert effective_rank(u @ v) == pytest.approx(1.0, abs=0.01)
    iso = effective_rank(torch.randn(512, 16, generator=g))
    assert 12 < iso <= 16
    two = torch.zeros(100, 16)
    two[:50, 0], two[50:, 1] = 1.0, 1.0  # two orthogonal directions of equal energy
    assert effective_rank(two) == pytest.approx(2.0, abs=0.01)
    assert embedding_std(torch.full((10, 8), 3.0)) == 0.0
    z = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # per-dim std sqrt(2) and 2 * sqrt(2)
    assert embedding_std(z) == pytest.approx(1.5 * math.sqrt(2), rel=1e-6)


# ---------------------------------------------------------------------------------------------- EMA
def test_ema_update_math():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    ema = EMA(model)
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.parameters())
    assert all(p.requires_grad for p in model.parameters())
    old = {k: v.clone() for k, v in ema.module.state_dict().items()}
    # change the online model: new weights and fresh BatchNorm statistics from a few training batches
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.train()
    for _ in range(3):
        model(torch.randn(8, 4) * 2 + 1)
    new = model.state_dict()
    assert int(new["1.num_batches_tracked"]) == 3 and int(old["1.num_batches_tracked"]) == 0
    # the copy is independent of the model until update()
    for k, v in ema.module.state_dict().items():
        assert torch.equal(v, old[k])

    m = 0.9
    ema.update(model, m)
    got = ema.module.state_dict()
    float_keys = [k for k, v in got.items() if v.dtype.is_floating_point]
    assert {"0.weight", "1.running_mean", "1.running_var", "2.bias"} <= set(float_keys)
    for k in float_keys:
        expected = m * old[k].double() + (1 - m) * new[k].double()
        assert torch.allclose(got[k].double(), expected, rtol=1e-6, atol=1e-7), k
        assert not torch.allclose(got[k], new[k]) or torch.allclose(old[k], new[k]), k
    assert int(got["1.num_batches_tracked"]) == 3  # integer buffers are copied
    assert all(not p.requires_grad for p in ema.parameters())
    # momentum 0 copies, momentum 1 keeps
    ema.update(model, 1.0)
    torch.testing.assert_close(ema.module.state_dict()["0.weight"], got["0.weight"], rtol=0, atol=0)
    ema.update(model, 0.0)
    torch.testing.assert_close(ema.module.state_dict()["0.weight"], new["0.weight"], rtol=0, atol=1e-7)


def test_momentum_schedule():
    total = 100
    values = [momentum_schedule(step, total, 0.99) for step in range(total + 1)]
    assert values[0] == pytest.approx(0.99) and values[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[50] == pytest.approx(0.995)  # cosine: half way at the midpoint
    assert momentum_schedule(150, total, 0.99) == pytest.approx(1.0)  # clamped
    assert momentum_schedule(5, 0, 0.9) == 1.0
    assert momentum_schedule(0, 10, 0.5, end=0.7) == pytest.approx(0.5)
    assert momentum_schedule(10, 10, 0.5, end=0.7) == pytest.approx(0.7)


def test_world_model_ema_target_gets_no_gradient():
    model = tiny_world_model(ema=0.9)
    assert model.target_encoder is not None
    target_params = list(model.target_encoder.parameters())
    assert target_params and all(not p.requires_grad for p in target_params)
    frames, actions = random_frames(4, 4), random_actions(4, 2)
    out = model.loss(frames, actions)
    out.total.backward()
    assert all(p.grad is None for p in target_params)
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    # the targets are the EMA encoder's embeddings of the future frames
    with torch.no_grad():
        model.encoder.head[1].weight.add_(1.0)  # online and target now differ
        targets = model.target_embeddings(frames[:, 2:])
        torch.testing.assert_close(targets, model.target_encoder(frames[:, 2:].reshape(-1, 3, IMG, IMG))
                                   .reshape(4, 2, EMBED))
        assert not torch.allclose(targets, model.encode(frames[:, 2:]))
        z = model.encode(frames)
        preds = model.rollout(model.context(z[:, :2]), actions)
    out = model.loss(frames, actions)
    torch.testing.assert_close(out.terms["prediction"], ((preds - targets) ** 2).mean())


def test_world_model_after_step_moves_target_toward_online():
    model = tiny_world_model(ema=0.9)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    online = [p.detach().clone() for p in model.encoder.parameters()]
    before = [p.detach().clone() for p in model.target_encoder.parameters()]
    model.after_step(2, 10)
    m = momentum_schedule(2, 10, 0.9)
    assert 0.9 < m < 1.0
    after = list(model.target_encoder.parameters())
    for o, b, a in zip(online, before, after):
        torch.testing.assert_close(a, m * b + (1 - m) * o, rtol=1e-6, atol=1e-7)
    dist = lambda ps: sum(float((p - o).pow(2).sum()) for p, o in zip(ps, online))  # noqa: E731
    assert dist(after) < dist(before)
    # without EMA, after_step is a no-op and targets come from the online encoder
    plain = tiny_world_model()
    plain.after_step(1, 10)
    frames = random_frames(2, 3)
    assert torch.equal(plain.target_embeddings(frames), plain.encode(frames).detach())


# ----------------------------------------------------------------------------------------- evaluation
def test_prediction_errors_against_hand_computation():
    model = tiny_world_model(history=2, horizon=2, ema=0.9).eval()
    with torch.no_grad():
        model.encoder.head[1].bias.add_(0.5)  # online != target: the targets must come from the target encoder
    batches = [(random_frames(3, 5, seed=1), random_actions(3, 3, seed=1)),
               (random_frames(5, 5, seed=2), random_actions(5, 3, seed=2))]
    errors = prediction_errors(model, batches, history=2)
    assert len(errors.model) == len(errors.baseline) == len(errors.ratio) == 3

    sq_model, sq_copy = torch.zeros(3), torch.zeros(3)
    with torch.no_grad():
        for frames, actions in batches:
            z_online = model.encode(frames)
            z_target = model.target_encoder(frames.reshape(-1, 3, IMG, IMG)).reshape(*frames.shape[:2], EMBED)
            preds = model.rollout(model.context(z_online[:, :2]), actions)
            for k in range(3):
                sq_model[k] += ((preds[:, k] - z_target[:, 2 + k]) ** 2).mean(dim=1).sum()
                sq_copy[k] += ((z_target[:, 1] - z_target[:, 2 + k]) ** 2).mean(dim=1).sum()
    np.testing.assert_allclose(errors.baseline, (sq_copy / 8).numpy(), rtol=1e-5)
    np.testing.assert_allclose(errors.model, (sq_model / 8).numpy(), rtol=1e-5)
    np.testing.assert_allclose(errors.ratio, (sq_model / sq_copy).numpy(), rtol=1e-5)
    scalars = errors.as_scalars("heldout")
    assert scalars["heldout/copy_error_step2"] == errors.baseline[1] and len(scalars) == 9
    assert errors.table().count("\n") == 2 + 3 - 1
    with pytest.raises(ValueError, match="no held-out windows"):
        prediction_errors(model, [], history=2)


def test_linear_probe_r2():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 3))
    x_train, x_test = rng.normal(size=(400, 16)), rng.normal(size=(200, 16))
    y_train = x_train @ w + 0.05 * rng.normal(size=(400, 3))
    y_test = x_test @ w + 0.05 * rng.normal(size=(200, 3))
    probe = LinearProbe().fit(torch.from_numpy(x_train).float(), y_train)
    assert probe.predict(x_test).shape == (200, 3)
    assert probe.r2(x_test, y_test) > 0.95
    noise = LinearProbe().fit(x_train, rng.normal(size=(400, 2)))
    assert noise.r2(x_test, rng.normal(size=(200, 2))) < 0.1
    with pytest.raises(ValueError, match="400 inputs but 10 targets"):
        LinearProbe().fit(x_train, y_train[:10])


def test_probe_targets():
    rng = np.random.default_rng(0)
    reacher_states = rng.normal(size=(7, 4))  # qpos (2 joint angles), qvel (2)
    joints = probe_targets("dmc:reacher-easy", reacher_states, kind="joints")
    assert joints.shape == (7, 4) and joints.dtype == np.float64
    np.testing.assert_allclose(joints, np.concatenate([np.sin(reacher_states[:, :2]),
                                                       np.cos(reacher_states[:, :2])], axis=1))
    # positions: elbow then fingertip, by hand for a straight arm and for a right-angled one
    bent = np.array([[0.0, 0.0, 5.0, 5.0], [np.pi / 2, np.pi / 2, 0.0, 0.0]])
    np.testing.assert_allclose(probe_targets("dmc:reacher-easy", bent),
                               [[0.12, 0.0, 0.24, 0.0], [0.0, 0.12, -0.12, 0.12]], atol=1e-12)
    pm_states = torch.from_numpy(rng.normal(size=(5, 4)))
    np.testing.assert_array_equal(probe_targets("dmc:point_mass-easy", pm_states), pm_states[:, :2].numpy())
    other = rng.normal(size=(3, 6))
    np.testing.assert_array_equal(probe_targets("dmc:walker-walk", other), other[:, :3])
    cartpole = rng.normal(size=(3, 4))  # the cart in metres, the pole's angle as its sine and cosine
    np.testing.assert_allclose(probe_targets("dmc:cartpole-swingup", cartpole),
                               np.stack([cartpole[:, 0], np.sin(cartpole[:, 1]), np.cos(cartpole[:, 1])], axis=1))
    with pytest.raises(ValueError, match="probe kind must be one of .* for reacher, not 'angles'"):
        probe_targets("dmc:reacher-easy", reacher_states, kind="angles")
    assert probe_kinds("dmc:reacher-hard") == ("positions", "joints")
    assert probe_kinds("dmc:point_mass-easy") == ("positions",)


def test_reacher_probe_positions_match_the_physics():
    """The elbow and fingertip positions computed from the joint angles are where MuJoCo puts the bodies."""
    from dm_control import suite

    physics = suite.load("reacher", "easy", task_kwargs={"random": 0}).physics
    rng = np.random.default_rng(1)
    for _ in range(5):
        qpos = np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-2.7, 2.7)])
        with physics.reset_context():
            physics.data.qpos[:] = qpos
        expected = np.concatenate([physics.named.data.xpos["hand", :2], physics.named.data.xpos["finger", :2]])
        np.testing.assert_allclose(probe_targets("dmc:reacher-easy", np.r_[qpos, 0.0, 0.0][None])[0], expected,
                                   atol=1e-9)


def test_keypoint_head_shapes_and_coordinates():
    from torchwm.nn.encoders import SpatialSoftmax

    enc = SpatialEncoder.conv(32, 16, width=4, head="keypoints", keypoints=6)
    x = torch.rand(3, 3, 32, 32)
    assert enc(x).shape == (3, 16)
    assert enc.forward_features(x).shape == (3, 8 * 8, 6)  # 1/4-resolution map, one channel per keypoint
    rebuilt = SpatialEncoder.from_spec(enc.spec)
    rebuilt.load_state_dict(enc.state_dict())
    torch.testing.assert_close(rebuilt(x), enc(x))
    # a sharp peak at row 1, column 3 of a 5x5 map lands at its image coordinates in [-1, 1]
    fmap = torch.zeros(1, 1, 5, 5)
    fmap[0, 0, 1, 3] = 50.0
    xy = SpatialSoftmax()(fmap)
    torch.testing.assert_close(xy, torch.tensor([[0.5, -0.5]]), atol=1e-4, rtol=0)
    weights = SpatialSoftmax().attention(fmap)  # (1, 1, 25): all on the peak's position, row-major
    assert weights.shape == (1, 1, 25) and int(weights.argmax()) == 1 * 5 + 3 and float(weights.max()) > 0.999
    flat = SpatialSoftmax().attention(torch.zeros(2, 3, 4, 4))  # no peak: uniform over the map
    torch.testing.assert_close(flat, torch.full((2, 3, 16), 1 / 16))
    with pytest.raises(ValueError, match="conv head"):
        SpatialEncoder.conv(32, 16, head="pool")


def test_projector_pads_embeddings_narrower_than_three(tmp_path):
    """TensorBoard's projector draws nothing below 3 dimensions: a 2-d embedding gets a zero third column."""
    from torch.utils.tensorboard import SummaryWriter

    from torchwm.viz.projector import add_projector

    z = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]])
    frames = np.zeros((3, 3, 8, 8), dtype=np.uint8)
    states = np.array([[0.1, -0.2, 0.0, 0.0], [0.2, 0.1, 0.0, 0.0], [-0.1, 0.0, 0.0, 0.0]])
    with SummaryWriter(tmp_path) as writer:
        add_projector(writer, z, frames, "dmc:point_mass-easy", states, step=7)
    rows = (tmp_path / "00007" / "heldout_frames" / "tensors.tsv").read_text().splitlines()
    written = np.array([[float(v) for v in row.split("\t")] for row in rows])
    np.testing.assert_allclose(written, np.c_[z.numpy(), np.zeros(3)])
    metadata = (tmp_path / "00007" / "heldout_frames" / "metadata.tsv").read_text().splitlines()
    assert len(metadata) == 4 and metadata[0].split("\t")[:2] == ["root_x", "root_y"]


def test_copy_baseline_check_warns_once_after_a_streak():
    from torchwm.eval.heldout import CopyBaselineCheck, StaticEmbeddingWarning

    check = CopyBaselineCheck(threshold=0.98, patience=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(100, 1.0)    # one evaluation at the baseline: not yet
        check(200, 0.5)    # beats copying: the streak restarts
        check(300, 0.99)
    with pytest.warns(StaticEmbeddingWarning, match=r"step 400: held-out prediction error is 1\.01x"):
        check(400, 1.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(500, 1.0)    # warned once already


# ------------------------------------------------------------------------------------------ action chunks
def chunked_world_model(chunk: int, history: int = 2, horizon: int = 2, seed: int = 0, **kwargs) -> WorldModel:
    torch.manual_seed(seed)
    encoder = SpatialEncoder.conv(IMG, EMBED, width=4)
    temporal = TemporalEncoder(EMBED, 16)
    predictor = Predictor(temporal.context_dim, 2 * chunk, EMBED, 32)
    model = WorldModel(encoder, temporal, predictor, torch.tensor((-1.0, -1.0)), torch.tensor((1.0, 1.0)), history,
                       horizon, action_chunk=chunk, **kwargs)
    torch.nn.init.normal_(model.predictor.net[-1].weight, std=0.1)  # trained-like: Δz depends on the actions
    return model


def test_rollout_steps_over_chunks_of_actions():
    model = chunked_world_model(3).eval()
    assert (model.action_chunk, model.context_span) == (3, 4)  # history 2, frames 3 steps apart
    context = model.context(model.encode(random_frames(2, 2)))
    actions = random_actions(2, 6)
    with torch.no_grad():
        preds = model.rollout(context, actions)
        assert preds.shape == (2, 2, EMBED)  # one frame per chunk of 3 actions
        # the first step reads the first three actions side by side
        chunk = model.normalise_actions(actions[:, :3]).reshape(2, 6)
        torch.testing.assert_close(preds[:, 0], model.temporal.latest(context) + model.predictor(context, chunk))
        # every action of a chunk matters, and only for its own and later steps
        changed = actions.clone()
        changed[:, 4] = -changed[:, 4]
        other = model.rollout(context, changed)
    torch.testing.assert_close(other[:, 0], preds[:, 0])
    assert not torch.allclose(other[:, 1], preds[:, 1])
    with pytest.raises(ValueError, match="T must be a multiple of 3"):
        model.rollout(context, random_actions(2, 4))
    with pytest.raises(ValueError, match="a chunk of 3 actions of 2 needs 6"):
        WorldModel(model.encoder, model.temporal, Predictor(model.temporal.context_dim, 2, EMBED, 8),
                   torch.tensor((-1.0, -1.0)), torch.tensor((1.0, 1.0)), 2, 2, action_chunk=3)
    with pytest.raises(ValueError, match="action_chunk=0: must be an int >= 1"):
        chunked_world_model(0)


def test_chunked_loss_matches_the_rollout_of_its_chunks():
    """Frames k steps apart, every step's action: the loss is the rollout's error on those frames."""
    model = chunked_world_model(2, history=2, horizon=2, var_weight=0.0, cov_weight=0.0)
    frames, actions = random_frames(3, 5), random_actions(3, 6)  # 5 frames: 3 predicted, 2 actions each
    out = model.loss(frames, actions)
    with torch.no_grad():
        z = model.encode(frames)
        first = model.rollout(model.context(z[:, :2]), actions[:, :4])  # anchor 0: frames 2, 3
        second = model.rollout(model.context(z[:, 1:3]), actions[:, 2:6])  # anchor 1: frames 3, 4
        step1 = torch.cat([(first[:, 0] - z[:, 2]) ** 2, (second[:, 0] - z[:, 3]) ** 2]).mean()
        step2 = torch.cat([(first[:, 1] - z[:, 3]) ** 2, (second[:, 1] - z[:, 4]) ** 2]).mean()
    torch.testing.assert_close(out.terms["prediction_step1"], step1)
    torch.testing.assert_close(out.terms["prediction_step2"], step2)
    with pytest.raises(ValueError, match=r"\(frames - history\) x action_chunk = 6 actions"):
        model.loss(frames, actions[:, :3])


def test_chunked_model_learns_a_displacement_it_can_only_see_over_the_whole_chunk():
    """A bright pixel moves by the sum of a chunk's actions: a chunked model learns to predict where (its error
    falls far below that of copying the last embedding, on the embedding it learned)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    b, k, length = 32, 3, 5
    actions = torch.randint(-1, 2, (b, (length - 1) * k, 1), generator=g).float()
    pos = torch.cat([torch.full((b, 1), 7.0), 7 + torch.cumsum(actions[..., 0], dim=1)], dim=1)[:, ::k]  # (B, L)
    frames = torch.zeros(b, length, 3, IMG, IMG)
    frames[torch.arange(b)[:, None], torch.arange(length), :, 8, pos.long()] = 1.0
    encoder = SpatialEncoder.conv(IMG, 4, width=4, head="keypoints", keypoints=4)
    temporal = TemporalEncoder(4, 16)
    model = WorldModel(encoder, temporal, Predictor(temporal.context_dim, k, 4, 32), torch.tensor((-1.0,)),
                       torch.tensor((1.0,)), 1, 2, action_chunk=k, var_weight=1.0, cov_weight=0.04)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        out = model.loss(frames, actions)
        optimiser.zero_grad()
        out.total.backward()
        optimiser.step()
    with torch.no_grad():
        z = model.encode(frames)
        preds = model.rollout(model.context(z[:, :1]), actions)  # (B, 4, D): frames 1..4
        error = float(((preds[:, 0] - z[:, 1]) ** 2).mean())
        copy = float(((z[:, 0] - z[:, 1]) ** 2).mean())
    assert float(z.std(dim=(0, 1)).min()) > 0.3  # not collapsed
    assert error < 0.2 * copy, (error, copy)

"""SIGReg as the world model's regulariser (``train.regularizer: sigreg``): its value, its collapse signal, learning."""

import pytest
import torch

from test_world_model import EMBED, random_frames, tiny_world_model
from torchwm.losses import sigreg

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(seed: int = 0, same: bool = False):
    frames = random_frames(6, 5, seed=seed)
    if same:
        frames = frames[:1, :1].expand(6, 5, -1, -1, -1).contiguous()
    actions = torch.rand(6, 3, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return frames, actions


def test_sigreg_term_is_the_statistic_of_the_projected_embeddings():
    model = tiny_world_model(regularizer="sigreg", sigreg_weight=0.3, sigreg_directions=64)
    frames, actions = batch()
    torch.manual_seed(5)
    out = model.loss(frames, actions)
    torch.manual_seed(5)  # the loss draws nothing else: the same random directions
    z = model.encode(frames).reshape(-1, EMBED)
    expected = sigreg(model.sigreg_projector(z)[None], 64)
    assert set(out.terms) >= {"prediction", "sigreg"} and "variance" not in out.terms
    torch.testing.assert_close(out.terms["sigreg"], expected.detach())
    torch.testing.assert_close(out.total.detach(), (out.terms["prediction"] + 0.3 * expected).detach())


def test_a_collapsed_batch_scores_the_collapsed_value():
    """Identical embeddings (constant frames) reach SIGReg's collapsed value, about 0.40 x N (N = 30 frames)."""
    model = tiny_world_model(regularizer="sigreg", sigreg_directions=128)
    torch.manual_seed(0)
    collapsed = float(model.loss(*batch(same=True)).terms["sigreg"])
    assert collapsed == pytest.approx(0.40 * 6 * 5, rel=0.1)


def test_the_world_model_learns_with_sigreg():
    model = tiny_world_model(regularizer="sigreg", sigreg_weight=0.05, sigreg_directions=64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    frames, actions = batch()
    torch.manual_seed(0)
    losses, statistics = [], []
    for _ in range(30):
        out = model.loss(frames, actions)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        losses.append(float(out.total.detach()))
        statistics.append(float(out.terms["sigreg"]))
    assert losses[-1] < 0.7 * losses[0]
    assert statistics[-1] < 0.5 * statistics[0]  # the embeddings spread towards an isotropic Gaussian
    assert all(p.grad is not None for p in model.sigreg_projector.parameters())


def test_unknown_regularizer_is_refused():
    with pytest.raises(ValueError, match="regularizer must be 'vicreg' or 'sigreg'"):
        tiny_world_model(regularizer="barlow")

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


@pytest.mark.parametrize("proj_dim", [0, 16])
def test_sigreg_term_is_the_statistic_of_the_embeddings(proj_dim):
    """Default: SIGReg of the embeddings themselves; ``sigreg_proj_dim > 0``: of their BatchNorm MLP projection."""
    model = tiny_world_model(regularizer="sigreg", sigreg_weight=0.3, sigreg_directions=64, sigreg_proj_dim=proj_dim)
    frames, actions = batch()
    torch.manual_seed(5)
    out = model.loss(frames, actions)
    torch.manual_seed(5)  # the loss draws nothing else: the same random directions
    z = model.encode(frames).reshape(-1, EMBED)
    assert (model.sigreg_projector is None) == (proj_dim == 0)
    expected = sigreg((z if proj_dim == 0 else model.sigreg_projector(z))[None], 64)
    assert set(out.terms) >= {"prediction", "sigreg"} and "variance" not in out.terms
    torch.testing.assert_close(out.terms["sigreg"], expected.detach())
    torch.testing.assert_close(out.total.detach(), (out.terms["prediction"] + 0.3 * expected).detach())


def _sigreg_at_scale(model, frames, actions, scale: float) -> float:
    """The SIGReg term when the encoder's embeddings are standardised, then multiplied by ``scale``."""
    encode = model.encode

    def scaled(f):
        z = encode(f)
        return (z - z.mean(dim=(0, 1))) / z.std(dim=(0, 1)) * scale

    model.encode = scaled
    try:
        torch.manual_seed(0)
        return float(model.loss(frames, actions).terms["sigreg"])
    finally:
        del model.encode


def test_sigreg_pins_the_scale_of_the_embeddings_the_prediction_loss_measures():
    """Shrinking the embeddings shrinks the prediction error for free; the default SIGReg must charge for it, as a
    BatchNorm projector (``sigreg_proj_dim > 0``) does not: it rescales what reaches it."""
    frames, actions = batch()
    plain = tiny_world_model(regularizer="sigreg", sigreg_directions=64)
    unit, shrunk = (_sigreg_at_scale(plain, frames, actions, s) for s in (1.0, 0.1))
    assert shrunk > 3 * unit
    assert shrunk > 0.2 * 6 * 5  # near the collapsed value 0.40 N
    projected = tiny_world_model(regularizer="sigreg", sigreg_directions=64, sigreg_proj_dim=16)
    unit_p, shrunk_p = (_sigreg_at_scale(projected, frames, actions, s) for s in (1.0, 0.1))
    assert shrunk_p == pytest.approx(unit_p, rel=0.02)


def test_a_collapsed_batch_scores_at_least_the_collapsed_value():
    """Identical embeddings (constant frames) score at least SIGReg's value for a batch collapsed onto the origin,
    about 0.40 x N (N = 30 frames): a constant elsewhere also misses the Gaussian's centre."""
    model = tiny_world_model(regularizer="sigreg", sigreg_directions=128)
    torch.manual_seed(0)
    collapsed = float(model.loss(*batch(same=True)).terms["sigreg"])
    at_origin = float(sigreg(torch.zeros(1, 6 * 5, EMBED), 128))
    assert at_origin == pytest.approx(0.40 * 6 * 5, rel=0.05)
    assert collapsed >= at_origin * (1 - 1e-4)


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


def test_unknown_regularizer_is_refused():
    with pytest.raises(ValueError, match="regularizer must be 'vicreg' or 'sigreg'"):
        tiny_world_model(regularizer="barlow")

"""The training loop (torchwm.training): schedule, optimiser groups, data order, learning, exact resume,
NaN guard, atomic checkpoints."""

from __future__ import annotations

import math
import os
import stat

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from torchwm.eval import prediction_errors
from torchwm.io import atomic_write, atomic_write_text
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.predictor import Predictor
from torchwm.nn.temporal import TemporalEncoder
from torchwm.runs import RunDir
from torchwm.schedules import lr_factor
from torchwm.training import NonFiniteLossError, ResumableBatchSampler, Trainer, TrainSettings, make_optimizer
from torchwm.world_model import WorldModel


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ helpers
IMG, SQUARE, EMBED = 16, 4, 16


class MovingSquare(Dataset):
    """A white square on black whose position the actions drive: ``p_{t+1} = clip(p_t + 2 a_t)``.

    Items are ``(frames uint8 (history + horizon, 3, 16, 16), actions float32 (horizon, 2))`` like the
    frames and actions of a :class:`~torchwm.data.Window`; the history frames move under random actions
    that are not part of the item.
    """

    def __init__(self, n: int, history: int, horizon: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        length = history + horizon
        moves = rng.uniform(-1, 1, (n, length - 1, 2)).astype(np.float32)
        pos = np.zeros((n, length, 2))
        pos[:, 0] = rng.uniform(0, IMG - SQUARE, (n, 2))
        for t in range(1, length):
            pos[:, t] = np.clip(pos[:, t - 1] + 2.0 * moves[:, t - 1], 0, IMG - SQUARE)
        cells = np.round(pos).astype(int)
        frames = np.zeros((n, length, 3, IMG, IMG), np.uint8)
        for i in range(n):
            for t in range(length):
                x, y = cells[i, t]
                frames[i, t, :, y:y + SQUARE, x:x + SQUARE] = 255
        self.frames = torch.from_numpy(frames)
        self.actions = torch.from_numpy(moves[:, history - 1:])  # a_t .. a_{t+horizon-1}, t = history - 1

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frames[i], self.actions[i]


def tiny_world_model(history: int = 2, horizon: int = 2, ema: float | None = None, seed: int = 0,
                     cls: type[WorldModel] = WorldModel) -> WorldModel:
    torch.manual_seed(seed)
    encoder = SpatialEncoder.conv(IMG, EMBED, width=4)
    temporal = TemporalEncoder(EMBED, 16)
    predictor = Predictor(temporal.context_dim, 2, EMBED, 32)
    return cls(encoder, temporal, predictor, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]), history,
               horizon, ema_momentum=ema)


def settings(**overrides) -> TrainSettings:
    fields = dict(total_steps=12, batch_size=8, learning_rate=3e-3, warmup_steps=3, log_every=1,
                  metrics_every=4, eval_every=10**6, checkpoint_every=10**6, tensorboard=False, progress=False)
    fields.update(overrides)
    return TrainSettings(**fields)


def frames_and_actions(batch):
    frames, actions = batch
    return frames, actions


class NoisyWorldModel(WorldModel):
    """Draws from torch's global RNG in every loss, so exact resume needs the RNG state restored too."""

    def loss(self, frames, actions):
        return super().loss(frames, actions + 0.05 * torch.randn_like(actions))


class NaNAfter(WorldModel):
    """Its loss turns NaN at the ``nan_at``-th call; ``on_nan`` runs just before (to snapshot files)."""

    nan_at = 5
    on_nan = None
    calls = 0

    def loss(self, frames, actions):
        out = super().loss(frames, actions)
        self.calls += 1
        if self.calls >= self.nan_at:
            if self.on_nan is not None:
                self.on_nan()
            out.total = out.total * float("nan")
            out.terms["total"] = out.total.detach()
        return out


# ------------------------------------------------------------------------------- schedule, optimiser
def test_lr_factor_warmup_then_cosine():
    warmup, total, floor = 10, 110, 0.1
    ramp = [lr_factor(s, warmup, total, floor) for s in range(warmup)]
    np.testing.assert_allclose(ramp, [(s + 1) / warmup for s in range(warmup)])  # linear
    assert ramp[-1] == pytest.approx(1.0)  # peak at the end of warm-up
    assert lr_factor(warmup, warmup, total, floor) == pytest.approx(1.0)
    mid = warmup + (total - warmup) // 2
    assert lr_factor(mid, warmup, total, floor) == pytest.approx(floor + (1 - floor) * 0.5)
    quarter = warmup + (total - warmup) // 4
    expected = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi / 4))
    assert lr_factor(quarter, warmup, total, floor) == pytest.approx(expected)
    assert lr_factor(total, warmup, total, floor) == pytest.approx(floor)
    assert lr_factor(total + 50, warmup, total, floor) == pytest.approx(floor)  # stays at the floor
    decay = [lr_factor(s, warmup, total, floor) for s in range(warmup, total + 1)]
    assert all(b < a for a, b in zip(decay, decay[1:]))
    assert lr_factor(0, 0, 100, 0.0) == pytest.approx(1.0)  # no warm-up: start at the peak


def test_trainer_scheduler_follows_lr_factor(tmp_path):
    s = settings(total_steps=8, warmup_steps=3, learning_rate=0.01, min_lr_ratio=0.2)
    trainer = Trainer(tiny_world_model(), MovingSquare(16, 2, 2), s, tmp_path, batch_fn=frames_and_actions)
    history = trainer.fit()
    # the lr logged after step k is the one the next step would use: lr_factor(k)
    np.testing.assert_allclose([r["train/lr"] for r in history],
                               [0.01 * lr_factor(k, 3, 8, 0.2) for k in range(1, 9)], rtol=1e-6)


def test_make_optimizer_decays_matrices_only():
    model = tiny_world_model(ema=0.9)
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.05)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decay["params"] and no_decay["params"]
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) and set(grouped) == trainable
    # the frozen EMA target encoder is not optimised
    assert not {id(p) for p in model.target_encoder.parameters()} & set(grouped)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} >= {"encoder.backbone.layers.0.bias",
                                                           "encoder.backbone.layers.1.weight",  # GroupNorm
                                                           "predictor.net.1.weight"}  # LayerNorm
    assert "encoder.backbone.layers.0.weight" in {names[id(p)] for p in decay["params"]}  # conv kernel


# ------------------------------------------------------------------------------------- batch sampler
def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_sampler_same_seed_same_batches_and_epochs():
    batches = take(ResumableBatchSampler(10, 3, seed=5), 9)
    assert batches == take(ResumableBatchSampler(10, 3, seed=5), 9)
    assert batches != take(ResumableBatchSampler(10, 3, seed=6), 9)
    assert len(ResumableBatchSampler(10, 3)) == 3
    for epoch in range(3):  # 3 batches per epoch (drop last): distinct indices, a fresh order each epoch
        seen = [i for b in batches[3 * epoch: 3 * epoch + 3] for i in b]
        assert all(len(b) == 3 for b in batches) and len(set(seen)) == 9 and set(seen) <= set(range(10))
    assert batches[:3] != batches[3:6]


@pytest.mark.parametrize("consumed", [0, 2, 3, 7])
def test_sampler_resume_continues_exactly(consumed):
    full = take(ResumableBatchSampler(10, 3, seed=1), 12)
    first = ResumableBatchSampler(10, 3, seed=1)
    take(first, consumed + 2)  # a loader may have prefetched further than what was trained on
    state = first.position(consumed)
    assert state == {"size": 10, "epoch": consumed // 3, "batch": consumed % 3}
    resumed = ResumableBatchSampler(10, 3, seed=1)
    resumed.load_state_dict(state)
    assert take(resumed, 12 - consumed) == full[consumed:]


def test_sampler_errors():
    with pytest.raises(ValueError, match="fewer than batch_size=8"):
        ResumableBatchSampler(5, 8)
    sampler = ResumableBatchSampler(10, 3)
    with pytest.raises(ValueError, match="trained on 12 samples, the dataset now has 10"):
        sampler.load_state_dict({"size": 12, "epoch": 0, "batch": 1})


# ------------------------------------------------------------------------------------------ learning
def test_world_model_learns_moving_square(tmp_path):
    history, horizon = 2, 2
    model = tiny_world_model(history, horizon)
    train_set, heldout = MovingSquare(512, history, horizon, seed=0), MovingSquare(128, history, horizon, seed=1)
    before = prediction_errors(model.eval(), [(heldout.frames, heldout.actions)], history)
    s = settings(total_steps=150, batch_size=64, learning_rate=1e-2, warmup_steps=10, metrics_every=50)
    records = Trainer(model, train_set, s, tmp_path / "run", batch_fn=frames_and_actions).fit()
    assert [r["step"] for r in records] == list(range(1, 151))
    first = records[0]["loss/total"]
    final = np.mean([r["loss/total"] for r in records[-10:]])  # one batch is noisy: last 10 steps
    assert final < 0.5 * first, (first, final)
    # not by collapsing: the embeddings keep their spread...
    assert records[-1]["collapse/embedding_std"] > 0.5 and records[-1]["collapse/effective_rank"] > 4
    # ...and on held-out windows the model now beats "nothing moves"; untrained, it *is* "nothing moves"
    # (the predictor's output layer starts at zero)
    after = prediction_errors(model, [(heldout.frames, heldout.actions)], history)
    assert before.ratio[0] == pytest.approx(1.0) and after.ratio[0] < 0.8, (before.ratio, after.ratio)
    assert RunDir(tmp_path / "run").read_metrics() == records


def test_collapse_metrics_show_collapse_without_vicreg(tmp_path):
    """Prediction loss alone is minimised by a constant encoder: with the VICReg terms off (and no EMA)
    the embeddings collapse and the collapse metrics say so; with them on, they do not."""
    history, horizon = 2, 2
    data = MovingSquare(256, history, horizon, seed=0)
    s = settings(total_steps=120, batch_size=64, learning_rate=1e-2, warmup_steps=10, metrics_every=120)
    final = {}
    for name, (var, cov) in {"off": (0.0, 0.0), "on": (1.0, 0.04)}.items():
        model = tiny_world_model(history, horizon)
        model.var_weight, model.cov_weight = var, cov
        records = Trainer(model, data, s, tmp_path / name, batch_fn=frames_and_actions).fit()
        final[name] = records[-1]
        assert records[-1]["loss/variance"] == (0.0 if var == 0 else records[-1]["loss/variance"])
    off, on = final["off"], final["on"]
    assert off["collapse/embedding_std"] < 0.1 * on["collapse/embedding_std"], (off, on)
    assert off["collapse/effective_rank"] < 0.5 * on["collapse/effective_rank"], (off, on)
    assert off["loss/prediction"] < on["loss/prediction"]  # the loss alone would call the collapsed run better


# ------------------------------------------------------------------------------------- exact resume
class Killed(Exception):
    """Stands in for the process being killed mid-run."""


def test_resume_is_exact(tmp_path):
    data = MovingSquare(64, 2, 2, seed=3)  # 8 batches per epoch: the 12 steps cross an epoch boundary
    s = settings(total_steps=12, checkpoint_every=6)

    def build(seed):  # different inits: a resumed run must take everything from the checkpoint
        return tiny_world_model(ema=0.9, seed=seed, cls=NoisyWorldModel)

    straight = Trainer(build(0), data, s, tmp_path / "a", batch_fn=frames_and_actions)
    straight_records = straight.fit()

    calls = 0

    def dies_at_step_9(batch):
        nonlocal calls
        calls += 1
        if calls == 9:
            raise Killed
        return frames_and_actions(batch)

    first = Trainer(build(0), data, s, tmp_path / "b", batch_fn=dies_at_step_9)
    with pytest.raises(Killed):
        first.fit()
    assert first.step == 8
    assert torch.load(first.checkpoint_path, weights_only=True)["step"] == 6
    assert [r["step"] for r in RunDir(tmp_path / "b").read_metrics()] == list(range(1, 9))  # 7, 8 are redone

    resumed = Trainer(build(1), data, s, tmp_path / "b", batch_fn=frames_and_actions)
    resumed_records = resumed.fit()
    assert [r["step"] for r in resumed_records] == list(range(7, 13))

    want, got = straight.model.state_dict(), resumed.model.state_dict()
    assert want.keys() == got.keys() and any(k.startswith("target_encoder.") for k in got)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6, msg=key)
    steps = lambda t: [float(st["step"]) for st in t.optimizer.state_dict()["state"].values()]  # noqa: E731
    assert steps(resumed) == steps(straight) == [12.0] * len(steps(straight))
    assert resumed.scheduler.last_epoch == straight.scheduler.last_epoch == 12
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(straight.optimizer.param_groups[0]["lr"])

    metrics = RunDir(tmp_path / "b").read_metrics()
    assert [r["step"] for r in metrics] == list(range(1, 13))  # no duplicate steps
    reference = RunDir(tmp_path / "a").read_metrics()
    for a, b in zip(reference, metrics):
        assert b["loss/total"] == pytest.approx(a["loss/total"], rel=1e-5, abs=1e-7), a["step"]
    assert [r["step"] for r in reference] == [r["step"] for r in straight_records] == list(range(1, 13))

    # a finished run resumes to a no-op
    again = Trainer(build(2), data, s, tmp_path / "b", batch_fn=frames_and_actions)
    assert again.fit() == [] and again.step == 12
    torch.testing.assert_close(again.model.state_dict()["encoder.head.1.weight"], want["encoder.head.1.weight"],
                               rtol=0, atol=0)


def test_resume_refuses_different_dataset_size(tmp_path):
    s = settings(total_steps=2)
    Trainer(tiny_world_model(), MovingSquare(16, 2, 2), s, tmp_path, batch_fn=frames_and_actions).fit()
    other = Trainer(tiny_world_model(), MovingSquare(24, 2, 2), settings(total_steps=4), tmp_path,
                    batch_fn=frames_and_actions)
    with pytest.raises(ValueError, match="trained on 16 samples, the dataset now has 24"):
        other.fit()


# ------------------------------------------------------------------------------------------ NaN guard
def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    model = tiny_world_model(cls=NaNAfter)
    trainer = Trainer(model, MovingSquare(32, 2, 2), settings(total_steps=10, checkpoint_every=2), tmp_path,
                      batch_fn=frames_and_actions)
    path = trainer.checkpoint_path
    snapshot = {}

    def before_nan():
        snapshot.update(bytes=path.read_bytes(), mtime=path.stat().st_mtime_ns,
                        params={k: v.clone() for k, v in model.state_dict().items()})

    model.nan_at, model.on_nan = 5, before_nan
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "non-finite loss at step 5" in message and str(path) in message and "left intact" in message
    assert "total=nan" in message
    assert path.read_bytes() == snapshot["bytes"] and path.stat().st_mtime_ns == snapshot["mtime"]
    assert not [f for f in path.parent.iterdir() if f.name != path.name], "no temporary files left"
    state = torch.load(path, weights_only=True)
    assert state["step"] == 4 and trainer.step == 4
    # the NaN step changed nothing: the model still equals the checkpoint
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshot["params"][key]) and torch.equal(value, state["model"][key]), key
    assert [r["step"] for r in RunDir(tmp_path).read_metrics()] == [1, 2, 3, 4]

    # after the fix, training resumes from that checkpoint
    model.nan_at = 10**9
    fixed = Trainer(model, MovingSquare(32, 2, 2), settings(total_steps=10, checkpoint_every=2), tmp_path,
                    batch_fn=frames_and_actions)
    assert [r["step"] for r in fixed.fit()] == list(range(5, 11))


def test_nan_before_any_checkpoint(tmp_path):
    model = tiny_world_model(cls=NaNAfter)
    model.nan_at = 1
    trainer = Trainer(model, MovingSquare(16, 2, 2), settings(total_steps=4), tmp_path, batch_fn=frames_and_actions)
    with pytest.raises(NonFiniteLossError, match="at step 1 .*no checkpoint had been written yet"):
        trainer.fit()
    assert not trainer.checkpoint_path.exists()


# -------------------------------------------------------------------------------------- atomic writes
def test_atomic_write_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    atomic_write(path, lambda f: f.write(b"old contents"))
    assert path.read_bytes() == b"old contents"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()

    def half_then_crash(f):
        f.write(b"new, half writ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"old contents"
    assert sorted(os.listdir(path.parent)) == ["last.pt"], "the temporary file must be removed"

    with pytest.raises(KeyboardInterrupt):  # also on Ctrl-C
        atomic_write(path, lambda f: (_ for _ in ()).throw(KeyboardInterrupt))
    assert sorted(os.listdir(path.parent)) == ["last.pt"] and path.read_bytes() == b"old contents"

    fresh = tmp_path / "ckpt" / "new.pt"
    with pytest.raises(OSError):
        atomic_write(fresh, half_then_crash)
    assert not fresh.exists() and sorted(os.listdir(path.parent)) == ["last.pt"]

    atomic_write_text(path, "replaced ✓")
    assert path.read_text(encoding="utf-8") == "replaced ✓"
    assert sorted(os.listdir(path.parent)) == ["last.pt"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

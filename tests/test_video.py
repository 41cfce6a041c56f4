"""Video pretraining (V-JEPA): 3-D and temporal masks, tubelet embedding, clips from stores and video folders,
the model, exact resume, and encoders from a video run under a frozen world model (CPU, seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from torchwm import JEPAAgent, JEPAConfig
from torchwm.data import CollectSpec, StoreClips, VideoFolder, collect
from torchwm.masks import FutureMask, TubeMask
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.video import TubeletEmbed, sincos_positions
from torchwm.runs import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, PATCH, EMBED, FRAMES = 16, 4, 32, 4  # 4x4 patches per frame, 2 tubelets of 2 frames


# ------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("blocks,scale", [(8, 0.15), (2, 0.7), (3, (0.1, 0.3))])
def test_tube_mask_properties_over_many_draws(blocks, scale):
    grid = (4, 8, 8)
    t, h, w = grid
    sampler = TubeMask(grid, blocks, scale, aspect=(0.75, 1.5), min_keep=6)
    low, high = (scale, scale) if isinstance(scale, float) else scale
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        bh, bw = sampler.block_size(gen)
        # some area in the scale range and some aspect in range round to (bh, bw): sqrt(area * aspect) is within
        # half a patch of bh, sqrt(area / aspect) within half a patch of bw
        assert 1 <= bh <= h and 1 <= bw <= w
        assert (bh - 0.5) * (bw - 0.5) <= high * h * w and (bh + 0.5) * (bw + 0.5) >= low * h * w, (bh, bw)
        assert (bh - 0.5) / (bw + 0.5) <= 1.5 and (bh + 0.5) / (bw - 0.5) >= 0.75, (bh, bw)
        batch = sampler(5, gen)
        assert batch.grid == grid and batch.targets.shape[:2] == (5, 1)
        context, targets = batch.bool_masks()
        assert int(batch.context.min()) >= 0 and int(batch.context.max()) < t * h * w  # inside the grid
        assert int(batch.targets.min()) >= 0 and int(batch.targets.max()) < t * h * w
        assert not (context & targets).any(), "context and targets overlap"
        assert batch.context.shape[1] >= 6, "fewer than min_keep context tokens"
        per_step = targets.view(5, t, h * w)
        assert (per_step == per_step[:, :1]).all(), "a target tube does not span every time step"
        assert torch.equal(batch.context, batch.context.sort(dim=1).values)


def test_tube_mask_checks_its_arguments():
    with pytest.raises(ValueError, match="grid"):
        TubeMask((8, 8), 2, 0.5)
    with pytest.raises(ValueError, match="blocks=0"):
        TubeMask((2, 4, 4), 0, 0.5)
    with pytest.raises(ValueError, match="scale"):
        TubeMask((2, 4, 4), 1, 1.5)
    with pytest.raises(ValueError, match="min_keep=31"):
        TubeMask((2, 4, 4), 1, 0.5, min_keep=31)


def test_future_mask_hides_exactly_the_last_frames():
    grid = (4, 3, 5)
    batch = FutureMask(grid, 1)(2)
    context, targets = batch.bool_masks()
    steps = targets.view(2, 4, 15)
    assert steps[:, 3].all() and not steps[:, :3].any(), "targets must be every token of the last time step only"
    assert torch.equal(context, ~targets)
    assert batch.targets.shape == (2, 1, 15) and batch.context.shape == (2, 45)
    assert torch.equal(FutureMask(grid, 2)(1).targets[0, 0], torch.arange(30, 60))
    with pytest.raises(ValueError, match="steps=4"):
        FutureMask(grid, 4)


# ------------------------------------------------------------------------------------- the encoder
def test_tubelet_embedding_and_positions():
    embed = TubeletEmbed(patch_size=4, tubelet=2, embed_dim=8)
    clips = torch.rand(3, 6, 3, 16, 12)
    tokens = embed(clips)
    assert tokens.shape == (3, 3 * 4 * 3, 8)  # (6 / 2) time steps x (16 / 4) rows x (12 / 4) columns
    # token 0 sees frames 0-1 and pixels [0:4, 0:4] only: changing frame 2 leaves it alone, frame 1 does not
    changed = clips.clone()
    changed[:, 2] += 1
    assert torch.allclose(embed(changed)[:, 0], tokens[:, 0])
    changed = clips.clone()
    changed[:, 1, :, :4, :4] += 1
    assert not torch.allclose(embed(changed)[:, 0], tokens[:, 0])
    with pytest.raises(ValueError, match="multiple of the tubelet 2"):
        embed(torch.rand(1, 5, 3, 16, 16))
    pos = sincos_positions((2, 3, 4), 32)
    assert pos.shape == (24, 32) and len({tuple(p.tolist()) for p in pos}) == 24  # every token its own position
    # the time band (first quarter) is the same for tokens of one time step
    assert torch.equal(pos[0, :8], pos[11, :8]) and not torch.equal(pos[0, :8], pos[12, :8])


def test_video_encoder_embeds_frames_as_still_clips():
    torch.manual_seed(0)
    enc = SpatialEncoder.video_vit(SIZE, PATCH, 2, FRAMES, EMBED, 1, 2).eval()
    frames = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        z = enc(frames)
        still = enc.pool(enc.forward_clip_tokens(frames.unsqueeze(1).expand(-1, 2, -1, -1, -1)))
        assert z.shape == (3, EMBED) and torch.allclose(z, still, atol=1e-6)
        tokens = enc.forward_clip_tokens(torch.rand(2, FRAMES, 3, SIZE, SIZE))
        assert tokens.shape == (2, (FRAMES // 2) * (SIZE // PATCH) ** 2, EMBED)
        keep = torch.tensor([[0, 5, 17], [1, 2, 31]])
        assert enc.forward_clip_tokens(torch.rand(2, FRAMES, 3, SIZE, SIZE), keep).shape == (2, 3, EMBED)
    assert enc.token_grid(FRAMES) == (2, 4, 4)
    rebuilt = SpatialEncoder.from_spec(enc.spec).eval()
    rebuilt.load_state_dict(enc.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(frames), z)
    with pytest.raises(ValueError, match="takes up to 32"):
        enc.forward_clip_tokens(torch.rand(1, 2 * FRAMES, 3, SIZE, SIZE))


# ------------------------------------------------------------------------------------------- clips
@pytest.fixture(scope="module")
def reacher_store(tmp_path_factory):
    spec = CollectSpec("dmc:reacher-easy", steps=12, policy="noise", image_size=SIZE, seed=1)
    return collect(spec, tmp_path_factory.mktemp("store") / "reacher", episodes=4, progress=False)


def test_store_clips(reacher_store):
    clips = StoreClips(reacher_store, frames=4, stride=2, episodes=[0, 1])
    assert len(clips) == 2 * (12 - 6 + 1)
    clip = clips[3]
    episode = reacher_store.episode(0)
    assert clip.shape == (4, 3, SIZE, SIZE) and clip.dtype == torch.uint8
    np.testing.assert_array_equal(clip.numpy(), episode.frames[3:10:2])
    np.testing.assert_array_equal(clips.clip_states(3), episode.states[3:10:2])
    with pytest.raises(ValueError, match="clips of 25 frames"):
        StoreClips(reacher_store, frames=13, stride=2)


def _write_frames(folder, count, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (count, 12, 20, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{i:03d}.png")
    return frames


def test_video_folder_reads_frame_folders_and_animations(tmp_path):
    _write_frames(tmp_path / "videos" / "walk", 6, 0)
    frames = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp_path / "videos" / "spin.gif", save_all=True, append_images=images[1:], duration=40)
    (tmp_path / "videos" / "notes.txt").write_text("not a video")
    clips = VideoFolder(tmp_path / "videos", frames=3, stride=2, image_size=8)
    assert [p.name for p in clips.videos] == ["spin.gif", "walk"] and len(clips) == 1 + 2
    clip = clips[0]
    assert clip.shape == (3, 3, 8, 8) and clip.dtype == torch.uint8
    walk = VideoFolder(tmp_path / "videos" / "walk", frames=2, stride=1, image_size=12)
    assert len(walk) == 5 and walk[0].shape == (2, 3, 12, 12)
    with pytest.raises(FileNotFoundError, match="f000.png' is a file, not a folder"):
        VideoFolder(tmp_path / "videos" / "walk" / "f000.png", frames=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no videos"):
        VideoFolder(tmp_path / "empty", frames=2)
    with pytest.raises(ValueError, match="long enough for clips of 9 frames"):
        VideoFolder(tmp_path / "videos", frames=9)


# ------------------------------------------------------------------------------------------- agent
def vjepa_config(run_dir, store_path, **overrides) -> JEPAConfig:
    items = {
        "dataset": "episodes", "pretrain.method": "vjepa", "env.id": "dmc:reacher-easy", "image_size": SIZE,
        "patch_size": PATCH, "embed_dim": EMBED, "num_layers": 1, "num_heads": 2, "batch_size": 4,
        "learning_rate": 1e-3, "device": "cpu", "seed": 1, "data.path": str(store_path), "data.episodes": 4,
        "data.steps": 12, "data.policy": "noise", "data.workers": 1, "data.heldout_fraction": 0.25,
        "pretrain.clip_frames": FRAMES, "pretrain.predictor_dim": 16, "pretrain.predictor_depth": 1,
        "pretrain.predictor_heads": 2, "pretrain.min_keep": 2, "pretrain.short_blocks": 2,
        "pretrain.short_scale": 0.15, "pretrain.long_scale": 0.5, "pretrain.ema_start": 0.9,
        "train.steps": 6, "train.warmup_steps": 1, "train.eval_every": 3, "train.checkpoint_every": 3,
        "logging.run_dir": str(run_dir), "logging.progress": False, "logging.tensorboard": False, "logging.log_every": 1,
    }
    items.update(overrides)
    return JEPAConfig().override([f"{k}={v}" for k, v in items.items()]).validate()


def test_vjepa_run_trains_probes_and_draws_its_masks(reacher_store, tmp_path):
    from torchwm.agents import VideoPretrainingAgent

    cfg = vjepa_config(tmp_path / "run", reacher_store.path, **{"logging.tensorboard": True})
    agent = JEPAAgent(cfg)
    assert type(agent) is VideoPretrainingAgent and set(agent.mask_samplers()) == {"short", "long", "future"}
    metrics = agent.train()
    assert metrics["steps"] == 6 and math.isfinite(metrics["loss/prediction"])
    for name in ("short", "long", "future"):
        assert metrics[f"loss/prediction_{name}"] > 0
    assert -1.0 < metrics["eval/probe_r2_train"] <= 1.0 and "eval/probe_r2_joints" in metrics
    assert [r["step"] for r in agent.run.read_metrics() if "eval/probe_r2" in r] == [3, 6]
    with Image.open(agent.run.figures_dir / "masks.png") as figure:
        assert figure.width > 300 and figure.height > 300
    # the saved backbone is the EMA target encoder, a video ViT that embeds frames
    from torchwm import load_backbone

    backbone = load_backbone(agent.run_dir)
    frames = torch.randint(0, 256, (2, 3, SIZE, SIZE), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(backbone(frames), agent.model.backbone(frames), atol=1e-6, rtol=0)
    assert backbone.encoder.kind == "video_vit"


def test_vjepa_resume_is_exact(reacher_store, tmp_path, monkeypatch):
    from torchwm.pretrain.vjepa import VJEPA

    straight = JEPAAgent(vjepa_config(tmp_path / "a", reacher_store.path))
    straight.train()
    cfg = vjepa_config(tmp_path / "b", reacher_store.path)
    real_loss, calls = VJEPA.loss, []

    def dies_at_step_5(model, *args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return real_loss(model, *args)

    monkeypatch.setattr(VJEPA, "loss", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        JEPAAgent(cfg).train()
    monkeypatch.setattr(VJEPA, "loss", real_loss)
    assert torch.load(RunDir(tmp_path / "b").checkpoint, weights_only=True)["step"] == 3
    resumed = JEPAAgent(cfg)
    resumed.train()  # from the step-3 checkpoint to step 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda records: [{k: v for k, v in r.items() if "per_s" not in k} for r in records]  # noqa: E731
    assert strip(RunDir(tmp_path / "b").read_metrics()) == strip(RunDir(tmp_path / "a").read_metrics())


def test_world_model_plans_on_a_frozen_video_encoder(reacher_store, tmp_path, frozen_world_model_config):
    video = JEPAAgent(vjepa_config(tmp_path / "video", reacher_store.path, **{"train.steps": 2, "train.eval_every": 100}))
    video.train()
    cfg = frozen_world_model_config(video.run_dir, "dmc:reacher-easy", reacher_store.path, tmp_path / "wm",
                                    image_size=SIZE, episodes=4, steps=12, seed=1)
    agent = JEPAAgent(cfg)
    before = {k: v.clone() for k, v in video.model.backbone.state_dict().items()}
    agent.train()
    model = agent.world_model
    assert model.encoder.kind == "video_vit" and model.freeze_encoder
    after = model.encoder.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    result = JEPAAgent.load(agent.run_dir).evaluate(episodes=1, baseline=False)
    assert len(result.results["planner"].success) == 1

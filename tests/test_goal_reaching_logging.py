"""Goal-reaching evaluation: planning time per batched call, and episodes logged as animated GIFs."""

import io
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from torchwm.agents.world_model import WorldModelAgent
from torchwm.eval.goal_reaching import GoalReaching, PolicyResult, gif_bytes, run_episodes, save_gif
from torchwm.viz.summary import add_gif

SLEEP = 0.02  # seconds per act call


class LineEnv:
    """1-D position on a line, rendered as an 8x8 frame; the goal is position 3."""

    def reset(self, seed=None):
        self.x = 0
        return self._frame(), {"goal_image": self._frame(3), "distance": 3.0, "success": False}

    def step(self, action):
        self.x += 1
        return self._frame(), 0.0, False, False, {"distance": float(abs(3 - self.x)), "success": self.x == 3}

    def _frame(self, x=None):
        img = np.zeros((3, 8, 8), np.uint8)
        img[:, :, (self.x if x is None else x) % 8] = 255
        return img

    def close(self):
        pass


class SleepyPolicy:
    """Takes ``SLEEP`` seconds per ``act`` call, whatever the batch size."""

    def reset(self, first_frames, goal_frames):
        pass

    def act(self, frames):
        time.sleep(SLEEP)
        return np.zeros((len(frames), 1))


def _video(frames: int = 5) -> np.ndarray:
    """``(T, 8, 10, 3)`` frames of two colours with a moving white column."""
    video = np.zeros((frames, 8, 10, 3), np.uint8)
    video[..., 0] = 200
    for t in range(frames):
        video[t, :, t % 10] = 255
    return video


def _events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def _gif_frames(data: bytes) -> list[np.ndarray]:
    frames = []
    with Image.open(io.BytesIO(data)) as img:
        for i in range(img.n_frames):
            img.seek(i)
            frames.append(np.asarray(img.convert("RGB")))
    return frames


# ------------------------------------------------------------------------------------------ timing
def test_ms_per_step_is_one_batched_call():
    result, _ = run_episodes(LineEnv, SleepyPolicy(), seeds=[0, 1, 2, 3], episode_steps=3, parallel=4, progress=False)
    # one call per step for all 4 episodes: ~SLEEP per call, ~SLEEP / 4 per episode-step
    assert SLEEP * 1e3 <= result.ms_per_step < SLEEP * 1e3 * 10
    assert result.ms_per_episode_step == pytest.approx(result.ms_per_step / 4)
    summary = result.summary()
    assert summary["ms_per_step"] == result.ms_per_step
    assert summary["ms_per_episode_step"] == result.ms_per_episode_step
    assert result.success.all()


def test_ms_per_step_with_smaller_last_batch():
    # 3 episodes, 2 side by side: 2 batches x 2 steps = 4 calls covering 6 episode-steps
    result, _ = run_episodes(LineEnv, SleepyPolicy(), seeds=[0, 1, 2], episode_steps=2, parallel=2, progress=False)
    assert result.ms_per_episode_step == pytest.approx(result.ms_per_step * 4 / 6)


# ------------------------------------------------------------------------------------------- GIFs
def test_gif_bytes_holds_every_frame():
    video = _video(5)
    data = gif_bytes(video, fps=10, scale=2)
    assert data.startswith(b"GIF8")
    frames = _gif_frames(data)
    assert len(frames) == 5
    np.testing.assert_array_equal(frames[3], video[3].repeat(2, 0).repeat(2, 1))


def test_save_gif_writes_the_same_gif(tmp_path):
    video = _video(4)
    path = save_gif(video, tmp_path / "videos" / "episode_00.gif")
    assert path.read_bytes() == gif_bytes(video)


def test_add_gif_logs_an_animated_image(tmp_path):
    video = _video(6)
    with SummaryWriter(str(tmp_path)) as writer:
        add_gif(writer, "episodes/gif", video, step=7)
    events = _events(tmp_path).Images("episodes/gif")
    assert [e.step for e in events] == [7]
    image = events[0]
    assert image.encoded_image_string.startswith(b"GIF8")
    assert (image.width, image.height) == (20, 16)
    assert len(_gif_frames(image.encoded_image_string)) == 6


def test_evaluation_logging_writes_gifs_and_timing(tmp_path):
    planner = PolicyResult(np.array([True, False]), np.array([0.0, 1.0]), np.array([0.0, 0.5]), np.array([3, -1]),
                           ms_per_step=40.0, ms_per_episode_step=20.0)
    result = GoalReaching("dmc:point_mass-easy", [0, 1], 5, {"planner": planner})
    agent = SimpleNamespace(cfg=SimpleNamespace(logging=SimpleNamespace(tensorboard=True)), trained_steps=11,
                            _writer=lambda: SummaryWriter(str(tmp_path)))
    clips = [_video(6), _video(4)]
    WorldModelAgent._log_evaluation(agent, result, clips, traces=[])

    acc = _events(tmp_path)
    for i, clip in enumerate(clips):
        gif = acc.Images(f"goal_reaching/episode_{i:02d}_video")[-1]
        assert gif.step == 11 and gif.encoded_image_string.startswith(b"GIF8")
        assert len(_gif_frames(gif.encoded_image_string)) == len(clip) > 1
    assert [e.value for e in acc.Scalars("goal_reaching/ms_per_step")] == [40.0]
    assert [e.value for e in acc.Scalars("goal_reaching/ms_per_episode_step")] == [20.0]
    saved = json.loads(json.dumps(result.to_dict()))  # goal_reaching.json keeps its key
    assert saved["summary"]["planner"]["ms_per_step"] == 40.0

"""Statistics of a trajectory store's frames that a recipe can decide from (numpy only, no torch)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def coarse_grey(frames: np.ndarray, cells: int) -> np.ndarray:
    """Frames ``(T, 3, H, W)`` → mean grey levels on a ``cells x cells`` grid ``(T, cells, cells)`` (float32; the
    frame's bottom and right rows beyond a multiple of ``cells`` are left out)."""
    t, _, h, w = frames.shape
    ph, pw = h // cells, w // cells
    if ph < 1 or pw < 1:
        raise ValueError(f"cells={cells}: frames of {h}x{w} pixels have fewer than {cells} rows or columns")
    grey = np.asarray(frames[:, :, :ph * cells, :pw * cells], dtype=np.float32).mean(axis=1)
    return grey.reshape(t, cells, ph, cells, pw).mean(axis=(2, 4))


def window_motion_share(store, episodes: Iterable[int], window: int, cells: int = 4, limit: int = 50) -> float:
    """How much of an episode's motion a training window of ``window`` frames sees, over up to ``limit`` episodes.

    Each frame becomes a ``cells x cells`` grid of mean grey levels (:func:`coarse_grey`): where the bodies are,
    not their edges. The variance of each cell within consecutive, non-overlapping windows of ``window`` frames
    (averaged over the windows of all episodes) over its variance within whole episodes (averaged over the
    episodes), summed over the cells. Near 1 a window sees as much motion as a whole episode; a body that moves
    little in a window compared with its range over an episode gives a small share (64 px frames, 100-step episodes,
    16-frame windows: point_mass 0.34; cartpole and acrobot 0.46-0.47; reacher 0.66, ball_in_cup 0.75, pendulum
    0.84; docs/BENCHMARKS.md). Content fixed within an episode is in neither term. At full resolution the share
    measures how soon a body leaves its own pixels, not how far it goes (0.76-0.93 on the same six domains).
    Returns a number in [0, 1] (0 for episodes whose frames never change).
    """
    if window < 2:
        raise ValueError(f"window={window}: a window needs at least 2 frames")
    in_windows, in_episodes = [], []
    for i in list(episodes)[:limit]:
        grey = coarse_grey(store.episode(i).frames, cells)  # (T+1, cells, cells)
        starts = range(0, grey.shape[0] - window + 1, window)
        in_windows += [grey[s:s + window].var(axis=0) for s in starts]
        in_episodes.append(grey.var(axis=0))
    if not in_windows:
        raise ValueError(f"window_motion_share: no episode among those given holds a window of {window} frames")
    episode_var = float(np.mean(in_episodes, axis=0).sum())
    return float(np.mean(in_windows, axis=0).sum()) / episode_var if episode_var > 0 else 0.0

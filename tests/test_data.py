"""Trajectory store, reward-free collection and training windows (torchwm.data)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from torchwm.data import (CollectSpec, StoreError, StoreMeta, TrajectoryStore, TrajectoryWindows, Window, collect,
                          ensure_collected, split_episodes)
from torchwm.data.store import FORMAT_VERSION

collect_module = importlib.import_module("torchwm.data.collect")

SIZE = 16  # tiny frames keep collection fast (rendering cost is mostly the shadow map, not the frame)
PM, REACHER = "dmc:point_mass-easy", "dmc:reacher-easy"


# ------------------------------------------------------------------------------------------ helpers
def make_meta(**overrides) -> StoreMeta:
    fields = dict(env_id=PM, image_size=8, action_repeat=1, camera=-1, seed=0, policy="random",
                  noise_beta=0.8, steps=10, frame_shape=(3, 8, 8), action_dim=2, state_dim=4)
    fields.update(overrides)
    return StoreMeta(**fields)


def fake_episode(T: int, seed: int, meta: StoreMeta | None = None) -> tuple[np.ndarray, ...]:
    """Random arrays with the shapes and dtypes of one episode of ``T`` steps."""
    meta = meta or make_meta()
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T + 1, *meta.frame_shape), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (T, meta.action_dim)).astype(np.float32)
    states = rng.normal(size=(T + 1, meta.state_dim))
    rewards = rng.uniform(0, 1, T).astype(np.float32)
    return frames, actions, states, rewards


def fake_store(path: Path, lengths: dict[int, int]) -> TrajectoryStore:
    store = TrajectoryStore.create(path, make_meta())
    for index, T in lengths.items():
        store.write_episode(index, *fake_episode(T, seed=index))
    return store


def lag1_autocorr(actions: np.ndarray) -> float:
    """Mean over action dims of the lag-1 autocorrelation of a (T, A) sequence."""
    x = actions - actions.mean(axis=0)
    return float(np.mean((x[1:] * x[:-1]).sum(axis=0) / (x * x).sum(axis=0)))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def snapshot(store_path: Path) -> dict[str, tuple[int, bytes]]:
    """``{relative file: (mtime_ns, bytes)}`` of every episode file."""
    out = {}
    for f in sorted((store_path / "episodes").glob("ep_*/*.npy")):
        out[str(f.relative_to(store_path))] = (f.stat().st_mtime_ns, f.read_bytes())
    return out


# ------------------------------------------------------------------------------------------- store
def test_store_round_trip(tmp_path):
    meta = make_meta()
    store = TrajectoryStore.create(tmp_path / "s", meta)
    written = {0: fake_episode(5, 0), 3: fake_episode(7, 1)}
    for index, arrays in written.items():
        store.write_episode(index, *arrays)
    assert len(store) == 2 and store.indices == [0, 3]

    reopened = TrajectoryStore(tmp_path / "s")
    assert reopened.indices == [0, 3]
    assert reopened.num_frames == 6 + 8 and reopened.num_steps == 12
    assert reopened.lengths == {0: 5, 3: 7}
    assert dataclasses.replace(reopened.meta, created="") == meta
    assert reopened.meta.created and reopened.meta.format_version == FORMAT_VERSION
    for index, arrays in written.items():
        ep = reopened.episode(index)
        assert ep.length == arrays[1].shape[0]
        for got, want in zip(ep, arrays):
            assert isinstance(got, np.memmap)  # read lazily from disk
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    with pytest.raises(KeyError, match="no episode 1"):
        reopened.episode(1)
    # Re-creating with the same meta opens the existing store.
    assert TrajectoryStore.create(tmp_path / "s", meta).indices == [0, 3]


def test_write_episode_refuses_bad_input(tmp_path):
    store = TrajectoryStore.create(tmp_path / "s", make_meta())
    frames, actions, states, rewards = fake_episode(4, 0)
    with pytest.raises(ValueError, match="actions has shape"):
        store.write_episode(0, frames, actions[:-1], states, rewards)
    with pytest.raises(ValueError, match="uint8"):
        store.write_episode(0, frames.astype(np.float32), actions, states, rewards)
    store.write_episode(0, frames, actions, states, rewards)
    store.write_episode(0, frames, actions, states, rewards)  # the same episode again: already done
    with pytest.raises(StoreError, match="already stored with different frames"):
        store.write_episode(0, frames[::-1].copy(), actions, states, rewards)
    store.write_episode(0, *fake_episode(6, 1), overwrite=True)
    assert TrajectoryStore(tmp_path / "s").lengths == {0: 6}


def test_truncated_npy_raises_store_error_naming_episode(tmp_path):
    fake_store(tmp_path / "s", {0: 5, 1: 5})
    file = tmp_path / "s" / "episodes" / "ep_000001" / "frames.npy"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 100])  # a write cut short
    with pytest.raises(StoreError, match=r"episode 1.*frames\.npy.*truncated.*delete the episode directory"):
        TrajectoryStore(tmp_path / "s")
    file.write_bytes(data[:40])  # cut inside the header
    with pytest.raises(StoreError, match=r"episode 1.*frames\.npy"):
        TrajectoryStore(tmp_path / "s")


def test_missing_file_raises_store_error(tmp_path):
    fake_store(tmp_path / "s", {0: 5, 1: 5})
    (tmp_path / "s" / "episodes" / "ep_000000" / "states.npy").unlink()
    with pytest.raises(StoreError, match=r"episode 0 .*states\.npy is missing"):
        TrajectoryStore(tmp_path / "s")


@pytest.mark.parametrize("name, array, message", [
    ("actions", np.zeros((4, 2), np.float32), r"actions\.npy has shape \(4, 2\), expected \(5, 2\)"),
    ("states", np.zeros((6, 3)), r"states\.npy has shape \(6, 3\), expected \(6, 4\)"),
    ("rewards", np.zeros(5, np.float64), r"rewards\.npy has dtype float64, expected float32"),
    ("frames", np.zeros((6, 3, 4, 4), np.uint8), r"frames\.npy has shape \(6, 3, 4, 4\), expected \(T\+1, 3, 8, 8\)"),
])
def test_inconsistent_episode_raises_store_error(tmp_path, name, array, message):
    fake_store(tmp_path / "s", {0: 5, 2: 5})
    np.save(tmp_path / "s" / "episodes" / "ep_000002" / f"{name}.npy", array)
    with pytest.raises(StoreError, match=rf"episode 2 .*{message}"):
        TrajectoryStore(tmp_path / "s")


def test_corrupt_or_missing_meta_raises_store_error(tmp_path):
    fake_store(tmp_path / "s", {0: 5})
    meta_file = tmp_path / "s" / "meta.json"
    good = meta_file.read_text()
    meta_file.write_text(good[:30])
    with pytest.raises(StoreError, match=r"meta\.json: corrupt"):
        TrajectoryStore(tmp_path / "s")
    data = json.loads(good)
    del data["env_id"], data["state_dim"]
    meta_file.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="missing keys env_id, state_dim"):
        TrajectoryStore(tmp_path / "s")
    meta_file.unlink()
    with pytest.raises(StoreError, match="not a trajectory store"):
        TrajectoryStore(tmp_path / "s")
    with pytest.raises(StoreError, match="does not exist"):
        TrajectoryStore(tmp_path / "nowhere")
    with pytest.raises(StoreError, match="not empty"):  # episodes but no meta: refuse to adopt it
        TrajectoryStore.create(tmp_path / "s", make_meta())


def test_metadata_mismatch_names_field_and_values(tmp_path):
    fake_store(tmp_path / "s", {0: 5})
    with pytest.raises(StoreError, match=r"image_size: stored 8, requested 16"):
        TrajectoryStore.create(tmp_path / "s", make_meta(image_size=16))
    with pytest.raises(StoreError, match=r"env_id: stored 'dmc:point_mass-easy', requested 'dmc:reacher-easy'"):
        TrajectoryStore.create(tmp_path / "s", make_meta(env_id=REACHER))
    with pytest.raises(StoreError, match=r"policy: stored 'random', requested 'noise'"):
        TrajectoryStore.create(tmp_path / "s", make_meta(policy="noise"))
    # noise_beta only matters for the noise policy
    TrajectoryStore.create(tmp_path / "s", make_meta(noise_beta=0.3))


def test_leftover_temp_dir_is_ignored_then_cleaned(tmp_path):
    fake_store(tmp_path / "s", {0: 5})
    stale = tmp_path / "s" / "episodes" / f".tmp-ep_000001-{dead_pid()}-0123abcd"
    stale.mkdir()
    np.save(stale / "frames.npy", np.zeros((3, 3, 8, 8), np.uint8))  # a half-written episode
    live = tmp_path / "s" / "episodes" / f".tmp-ep_000002-{os.getpid()}-0123abcd"
    live.mkdir()  # a write in progress in a running process
    reopened = TrajectoryStore(tmp_path / "s")
    assert reopened.indices == [0]
    reopened.write_episode(1, *fake_episode(4, 1))
    assert not stale.exists() and live.exists()
    assert TrajectoryStore(tmp_path / "s").indices == [0, 1]


# ------------------------------------------------------------------------------------- collection
@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Small real collections shared by the tests below (collection is the slow part)."""
    root = tmp_path_factory.mktemp("stores")
    return {
        "pm": collect(CollectSpec(PM, steps=15, seed=3, image_size=SIZE), root / "pm", 3, progress=False),
        "reacher": collect(CollectSpec(REACHER, steps=15, seed=3, image_size=SIZE), root / "reacher", 2,
                           progress=False),
        "pm_noise": collect(CollectSpec(PM, steps=40, policy="noise", seed=3, image_size=SIZE), root / "pm_noise", 2,
                            progress=False),
    }


# Random actions barely move the point mass (~0.0005 in 40 steps: often not a single pixel), so its
# frames are only required to change under the correlated "noise" policy.
@pytest.mark.parametrize("key, env_id, frames_move", [("pm", PM, False), ("pm_noise", PM, True),
                                                     ("reacher", REACHER, True)])
def test_collected_episodes_are_well_formed(stores, key, env_id, frames_move):
    from torchwm.envs import make

    store = stores[key]
    assert store.meta.env_id == env_id and store.meta.frame_shape == (3, SIZE, SIZE)
    env = make(env_id, image_size=SIZE)
    low, high = env.action_space.low, env.action_space.high
    for index in store.indices:
        ep = store.episode(index)
        T = ep.length
        assert T == store.meta.steps
        assert ep.frames.shape == (T + 1, 3, SIZE, SIZE) and ep.frames.dtype == np.uint8
        assert ep.actions.shape == (T, env.action_space.shape[0]) and ep.actions.dtype == np.float32
        assert ep.states.shape == (T + 1, env.unwrapped.state_dim) and ep.states.dtype == np.float64
        assert ep.rewards.shape == (T,) and ep.rewards.dtype == np.float32
        assert np.all(ep.actions >= low) and np.all(ep.actions <= high)
        if frames_move:
            assert len({frame.tobytes() for frame in ep.frames}) > 1, "the scene should move"
        assert np.abs(np.diff(ep.states, axis=0)).max() > 0, "the physics state should change"
    assert not np.array_equal(store.episode(0).states[0], store.episode(1).states[0]), "episodes differ"


def test_noise_policy_is_temporally_correlated(stores):
    noise = np.mean([lag1_autocorr(np.asarray(stores["pm_noise"].episode(i).actions))
                     for i in stores["pm_noise"].indices])
    rand = np.mean([lag1_autocorr(np.asarray(stores["pm"].episode(i).actions)) for i in stores["pm"].indices])
    assert noise > 0.5 and noise > rand + 0.4, (noise, rand)
    # The policies themselves, on long sequences: AR(1) coefficient ~ beta, i.i.d. ~ 0.
    low, high = np.array([-1.0, -2.0], np.float32), np.array([1.0, 0.0], np.float32)
    for name, beta, expected in [("noise", 0.8, 0.8), ("noise", 0.0, 0.0), ("random", 0.8, 0.0)]:
        policy = collect_module.make_policy(name, low, high, np.random.default_rng(0), beta)
        acts = np.stack([policy() for _ in range(5000)])
        assert acts.dtype == np.float32 and np.all(acts >= low) and np.all(acts <= high)
        assert abs(lag1_autocorr(acts) - expected) < 0.08, (name, beta, lag1_autocorr(acts))
    # "mixed": each episode's own RNG makes it i.i.d. or correlated, about half and half
    kinds = [type(collect_module.make_policy("mixed", low, high, np.random.default_rng(i), 0.8)).__name__
             for i in range(200)]
    assert set(kinds) == {"RandomPolicy", "NoisePolicy"} and 70 < kinds.count("NoisePolicy") < 130, kinds
    policy = collect_module.make_policy("mixed", low, high, np.random.default_rng(0), 0.8)
    again = collect_module.make_policy("mixed", low, high, np.random.default_rng(0), 0.8)
    assert type(policy) is type(again) and np.array_equal(policy(), again())  # a seed gives one episode
    correlated = next(collect_module.make_policy("mixed", low, high, np.random.default_rng(i), 0.6)
                      for i in range(200) if kinds[i] == "NoisePolicy")
    acts = np.stack([correlated() for _ in range(5000)])
    assert abs(lag1_autocorr(acts) - 0.6) < 0.08 and np.all(acts >= low) and np.all(acts <= high)
    spec = CollectSpec(PM, steps=15, seed=3, image_size=SIZE, policy="mixed", noise_beta=0.7)
    assert "_mixed0.7_" in spec.store_name()


def test_two_workers_give_identical_episodes(stores, tmp_path):
    parallel = collect(CollectSpec(PM, steps=15, seed=3, image_size=SIZE), tmp_path / "pm2", episodes=3, workers=2,
                       progress=False)
    serial = stores["pm"]
    assert parallel.indices == serial.indices == [0, 1, 2]
    for index in serial.indices:
        for name in ("frames", "actions", "states", "rewards"):
            a = (serial.episode_dir(index) / f"{name}.npy").read_bytes()
            b = (parallel.episode_dir(index) / f"{name}.npy").read_bytes()
            assert a == b, f"episode {index} {name} differs between workers=1 and workers=2"


def test_append_and_ensure_collected(stores, tmp_path):
    path = tmp_path / "pm"
    shutil.copytree(stores["pm"].path, path)
    spec = CollectSpec(PM, steps=15, seed=3, image_size=SIZE)
    assert spec.action_repeat == 4, "action_repeat=0 is resolved to the domain's default on construction"
    before = snapshot(path)

    store = collect(spec, path, episodes=1, progress=False)
    assert store.indices == [0, 1, 2, 3]
    after = snapshot(path)
    assert {k: v for k, v in after.items() if k in before} == before, "old episodes must be untouched"

    # Reuse: nothing is collected when enough episodes exist.
    again = ensure_collected(spec, path, episodes=4, progress=False)
    assert again.indices == [0, 1, 2, 3] and snapshot(path) == after
    # Top-up: only the missing indices are collected, and they equal a fresh collection's.
    shutil.rmtree(path / "episodes" / "ep_000001")
    topped = ensure_collected(spec, path, episodes=6, progress=False)
    assert topped.indices == [0, 1, 2, 3, 4, 5]
    final = snapshot(path)
    assert {k: final[k] for k in after if "ep_000001" not in k} == {k: v for k, v in after.items()
                                                                     if "ep_000001" not in k}
    assert final["episodes/ep_000001/frames.npy"][1] == before["episodes/ep_000001/frames.npy"][1]

    # Settings that change the data are refused, naming the field.
    with pytest.raises(StoreError, match=r"image_size: stored 16, requested 24"):
        collect(dataclasses.replace(spec, image_size=24), path, episodes=1, progress=False)
    with pytest.raises(StoreError, match=r"policy: stored 'random', requested 'noise'"):
        ensure_collected(dataclasses.replace(spec, policy="noise"), path, episodes=1, progress=False)
    with pytest.raises(StoreError, match=r"action_repeat: stored 4, requested 2"):
        ensure_collected(dataclasses.replace(spec, action_repeat=2), path, episodes=1, progress=False)


@pytest.mark.parametrize("spec_args, run_args, message", [
    ({}, dict(episodes=0), "episodes=0: must be an integer >= 1"),
    (dict(steps=0), {}, "steps=0: must be an integer >= 1"),
    ({}, dict(workers=0), "workers=0: must be an integer >= 1"),
    (dict(action_repeat=-1), {}, "action_repeat=-1: must be an integer >= 1"),
    (dict(policy="greedy"), {}, "unknown collection policy 'greedy'; valid policies: mixed, noise, random"),
    (dict(noise_beta=1.0), {}, r"noise_beta=1.0: must be in \[0, 1\)"),
    (dict(env_id="dmc:nope-easy"), {}, r"unknown environment id 'dmc:nope-easy'; valid ids: .*dmc:reacher-easy"),
])
def test_collect_validates_arguments(tmp_path, spec_args, run_args, message):
    spec = CollectSpec(**{"env_id": PM, "steps": 5, "image_size": SIZE, **spec_args})
    with pytest.raises(ValueError, match=message):
        collect(spec, tmp_path / "s", **{"episodes": 1, "progress": False, **run_args})
    assert not (tmp_path / "s").exists()
    with pytest.raises(TypeError, match="spec must be a CollectSpec"):
        collect(PM, tmp_path / "s", 1)


def test_collect_spec_names_its_store():
    spec = CollectSpec(REACHER, steps=100, policy="noise", image_size=64)
    assert spec.store_name() == "dmc-reacher-easy_64px_ar4_noise0.8_100steps_seed0"
    assert CollectSpec(PM, steps=5, seed=2, camera=1, action_repeat=2).store_name() == \
        "dmc-point_mass-easy_64px_ar2_cam1_random_5steps_seed2"
    # the domain's default repeat and the same repeat asked for explicitly share a store
    assert CollectSpec(REACHER, steps=9).store_name() == CollectSpec(REACHER, steps=9, action_repeat=4).store_name()
    assert CollectSpec("dmc:walker-walk", steps=9).action_repeat == 1


def test_collect_from_unguarded_script(tmp_path):
    """A script calling collect() at top level, without ``if __name__ == "__main__"``, works with workers:
    spawned workers must not re-import (and so re-run) the caller's ``__main__``."""
    script = tmp_path / "script.py"
    script.write_text(
        "import os\n"
        "from torchwm.data import CollectSpec, collect\n"
        "with open('ran.txt', 'a') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n"
        f"store = collect(CollectSpec({PM!r}, steps=5, image_size={SIZE}), 'store', episodes=2, workers=2, "
        "progress=False)\n"
        "print('episodes', len(store))\n")
    env = dict(os.environ, MUJOCO_GL="egl")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "episodes 2" in proc.stdout
    assert len((tmp_path / "ran.txt").read_text().split()) == 1, "the script's top level ran again in a worker"
    store = TrajectoryStore(tmp_path / "store")
    assert store.indices == [0, 1] and store.lengths == {0: 5, 1: 5}


def test_collection_modules_do_not_import_torch():
    code = ("import sys, torchwm.data, torchwm.data.collect, torchwm.data.store; "
            "from torchwm.data import collect, TrajectoryStore; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------- statistics
def _store_of_frames(path: Path, episodes: list[np.ndarray]) -> TrajectoryStore:
    """A store holding the given uint8 frame arrays ``(T+1, 3, 8, 8)``, one per episode."""
    meta = make_meta()
    store = TrajectoryStore.create(path, meta)
    for i, frames in enumerate(episodes):
        T = frames.shape[0] - 1
        _, actions, states, rewards = fake_episode(T, seed=i)
        store.write_episode(i, frames, actions, states, rewards)
    return store


def _block_frames(columns: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """A white 2x1 block in the top two rows, at ``columns[t]`` in frame t, on black (or on ``background`` (4, 8)
    in the bottom four rows): uint8 ``(len(columns), 3, 8, 8)``."""
    frames = np.zeros((len(columns), 3, 8, 8), dtype=np.uint8)
    for t, x in enumerate(columns):
        frames[t, :, :2, x] = 255
    if background is not None:
        frames[:, :, 4:, :] = background
    return frames


def test_window_motion_share_tells_a_slow_body_from_a_fast_one(tmp_path):
    from torchwm.data.statistics import coarse_grey, window_motion_share

    t = np.arange(64)
    rng = np.random.default_rng(0)
    backgrounds = [rng.integers(0, 256, (4, 8), dtype=np.uint8) for _ in range(3)]
    # Fast: the block crosses the frame in every 8-frame window, so a window sees all of an episode's motion.
    fast = _store_of_frames(tmp_path / "fast", [_block_frames(t % 8, b) for b in backgrounds])
    assert window_motion_share(fast, range(3), window=8) == pytest.approx(1.0)
    # Slow: one column per 8 frames, so a window sees none (content fixed within each episode counts in neither term).
    slow = _store_of_frames(tmp_path / "slow", [_block_frames(t // 8, b) for b in backgrounds])
    assert window_motion_share(slow, range(3), window=8) == pytest.approx(0.0, abs=1e-9)
    # A random walk, against the definition computed here: per 2x2 cell, mean window variance over mean episode
    # variance, summed over cells (64 frames: windows of 10 start at 0, 10, ..., 50).
    walks = [np.clip(np.cumsum(rng.integers(-1, 2, 64)) + 4, 0, 7) for _ in range(3)]
    store = _store_of_frames(tmp_path / "walk", [_block_frames(w) for w in walks])
    grey = [np.stack([f.astype(np.float64).mean(axis=0).reshape(4, 2, 4, 2).mean(axis=(1, 3))
                      for f in _block_frames(w)]) for w in walks]
    windows = [g[s:s + 10].var(axis=0) for g in grey for s in range(0, 55, 10)]
    want = np.mean(windows, axis=0).sum() / np.mean([g.var(axis=0) for g in grey], axis=0).sum()
    assert 0.05 < want < 0.95
    assert window_motion_share(store, range(3), window=10) == pytest.approx(want, rel=1e-5)
    assert coarse_grey(_block_frames(walks[0]), 4).shape == (64, 4, 4)
    with pytest.raises(ValueError, match="window=1: a window needs at least 2 frames"):
        window_motion_share(store, range(3), window=1)
    with pytest.raises(ValueError, match="no episode among those given holds a window of 65 frames"):
        window_motion_share(store, range(3), window=65)
    with pytest.raises(ValueError, match="cells=16: frames of 8x8 pixels have fewer than 16 rows"):
        window_motion_share(store, range(3), window=8, cells=16)


# ---------------------------------------------------------------------------------------- windows
def test_windows_count_and_contents(tmp_path):
    store = fake_store(tmp_path / "s", {0: 10, 1: 4, 4: 6})
    history, horizon = 3, 2
    ds = TrajectoryWindows(store, history, history + horizon)
    assert (ds.length, ds.future) == (5, 2)
    # anchors t in [history-1, T-horizon]: T - history - horizon + 2 per episode (if positive)
    assert len(ds) == (10 - 3) + (4 - 3) + (6 - 3)
    seen = []
    for item in range(len(ds)):
        index, t = ds.locate(item)
        seen.append((index, t))
        window = ds[item]
        assert isinstance(window, Window)
        ep = store.episode(index)
        lo, hi = t - history + 1, t + horizon + 1
        assert str(window.frames.dtype) == "torch.uint8" and window.frames.shape == (5, 3, 8, 8)
        np.testing.assert_array_equal(window.frames.numpy(), ep.frames[lo:hi])
        np.testing.assert_array_equal(window.actions.numpy(), ep.actions[t:t + horizon])
        np.testing.assert_array_equal(window.states.numpy(), ep.states[lo:hi])
        assert str(window.actions.dtype) == "torch.float32" and str(window.states.dtype) == "torch.float64"
    assert seen == [(0, t) for t in range(2, 9)] + [(1, 2)] + [(4, t) for t in range(2, 5)]
    assert ds[-1].frames.shape[0] == 5
    with pytest.raises(IndexError):
        ds[len(ds)]

    subset = TrajectoryWindows(store, history, history + horizon, episodes=[4])
    assert len(subset) == 3 and subset.locate(0) == (4, 2)
    # Episodes too short for a window are skipped.
    assert TrajectoryWindows(store, 4, 6).episodes == [0, 4]


def test_windows_with_dataloader_workers(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    store = fake_store(tmp_path / "s", {0: 12, 1: 9})
    ds = TrajectoryWindows(store, history=2, length=5)
    batches = list(DataLoader(ds, batch_size=4, num_workers=2, shuffle=False))
    assert isinstance(batches[0], Window) and batches[0].frames.shape == (4, 5, 3, 8, 8)
    frames = torch.cat([b.frames for b in batches])
    expected = torch.stack([ds[i].frames for i in range(len(ds))])
    assert torch.equal(frames, expected)


def test_windows_errors(tmp_path):
    store = fake_store(tmp_path / "s", {0: 5, 1: 3})
    with pytest.raises(ValueError, match="history=0: must be an integer >= 1"):
        TrajectoryWindows(store, 0, 2)
    with pytest.raises(ValueError, match="length=2: must be > history=2"):
        TrajectoryWindows(store, 2, 2)
    with pytest.raises(ValueError, match=r"needs episodes of >= 9 steps, the selected episodes have \[3, 5\] steps"):
        TrajectoryWindows(store, 5, 10)
    with pytest.raises(ValueError, match=r"episodes \[7\] are not in the store"):
        TrajectoryWindows(store, 1, 2, episodes=[7])


def test_windows_on_collected_store(stores):
    ds = TrajectoryWindows(stores["reacher"], history=3, length=7)
    assert len(ds) == 2 * (15 - 3 - 4 + 2)
    w = ds[0]
    assert w.frames.shape == (7, 3, SIZE, SIZE) and w.actions.shape == (4, 2) and w.states.shape == (7, 4)


def test_split_episodes():
    indices = list(range(0, 40, 2))
    train, held = split_episodes(indices, 0.25, seed=1)
    assert (train, held) == split_episodes(indices, 0.25, seed=1)
    assert len(held) == 5 and not set(train) & set(held) and sorted(train + held) == indices
    assert train == sorted(train) and held == sorted(held)
    assert split_episodes(indices, 0.25, seed=2) != (train, held)
    assert len(split_episodes([3, 5], 0.01)[1]) == 1  # at least one held out...
    assert len(split_episodes([3, 5], 0.9)[0]) == 1  # ...and at least one kept
    assert split_episodes(indices, 0.0) == (indices, [])
    assert split_episodes([7], 0.5) == ([7], [])
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_episodes(indices, 1.0)


def test_split_episodes_of_store(tmp_path):
    store = fake_store(tmp_path / "s", {i: 3 for i in range(6)})
    train, held = split_episodes(store, 0.3, seed=0)
    assert len(held) == 2 and sorted(train + held) == store.indices
    ds = TrajectoryWindows(store, 1, 2, episodes=held)
    assert {ds.locate(i)[0] for i in range(len(ds))} == set(held)


def test_strided_windows_take_every_kth_frame_and_every_action(tmp_path):
    store = fake_store(tmp_path / "s", {0: 12, 1: 6})
    ds = TrajectoryWindows(store, history=2, length=4, stride=3)  # frames t-3, t, t+3, t+6; actions t .. t+5
    assert (ds.future, ds.stride) == (2, 3) and len(ds) == 12 - 9 + 1  # episode 1 is too short for 10 steps
    for item in range(len(ds)):
        index, t = ds.locate(item)
        ep, window = store.episode(index), ds[item]
        np.testing.assert_array_equal(window.frames.numpy(), ep.frames[t - 3:t + 7:3])
        np.testing.assert_array_equal(window.states.numpy(), ep.states[t - 3:t + 7:3])
        np.testing.assert_array_equal(window.actions.numpy(), ep.actions[t:t + 6])
    assert [ds.locate(i) for i in range(len(ds))] == [(0, t) for t in range(3, 7)]
    with pytest.raises(ValueError, match="stride=0: must be an integer >= 1"):
        TrajectoryWindows(store, 2, 4, stride=0)

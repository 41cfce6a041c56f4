"""One writer per run directory and per trajectory store (torchwm.locks): a second trainer stops at once, a
second collector waits and then finds its episodes done, and an episode written twice alike is no error."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from torchwm.data import CollectSpec, StoreError, StoreMeta, TrajectoryStore, ensure_collected
from torchwm.locks import LOCK_FILE, RunLockedError, hold, is_held_here
from torchwm.training import Trainer, TrainSettings

from trainer_doubles import Killed, LinearFit, locked_elsewhere, regression_data, tiny_settings

collect_module = importlib.import_module("torchwm.data.collect")
store_module = importlib.import_module("torchwm.data.store")
locks_module = importlib.import_module("torchwm.locks")

pytestmark = pytest.mark.usefixtures("one_thread")

PM = "dmc:point_mass-easy"

# Holds the lock of argv[1] (a run directory or store), touches argv[2] once it does, then sleeps argv[3] s; with
# argv[4] (a meta.json), creates a store there first and writes 3 fake episodes of it before releasing.
HOLDER = """
import json, sys, time
import numpy as np
from torchwm.data.store import StoreMeta, TrajectoryStore
from torchwm.locks import hold
path, ready, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
with hold(path):
    meta = StoreMeta.from_dict(json.load(open(sys.argv[4]))) if len(sys.argv) > 4 else None
    store = TrajectoryStore.create(path, meta) if meta is not None else None
    open(ready, "w").close()
    time.sleep(seconds)
    for i in range(3 if store is not None else 0):
        m = store.meta
        store.write_episode(i, np.full((6, *m.frame_shape), i, np.uint8), np.zeros((5, m.action_dim)),
                            np.zeros((6, m.state_dim)), np.zeros(5))
"""

@contextlib.contextmanager
def held_by_another_process(path: Path, seconds: float = 120, meta: Path | None = None):
    """A child process holding the lock of ``path`` while the block runs; yields the ``Popen``."""
    ready = path.parent / f"{path.name}.ready"
    args = [sys.executable, "-c", HOLDER, str(path), str(ready), str(seconds)] + ([str(meta)] if meta else [])
    proc = subprocess.Popen(args)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the lock holder died"
            assert time.monotonic() < deadline, "the lock holder did not start"
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def settings(**overrides) -> TrainSettings:
    return tiny_settings(dict(total_steps=6, batch_size=8, learning_rate=1e-2, warmup_steps=1, log_every=1,
                              metrics_every=3, checkpoint_every=3), **overrides)


# ---------------------------------------------------------------------------------------- run lock
def test_lock_is_reentrant_here_and_exclusive_between_processes(tmp_path):
    run = tmp_path / "run"
    with hold(run):
        assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
        assert locked_elsewhere(run)
        with hold(run):  # the trainer inside an agent's train() takes it again
            assert is_held_here(run)
        assert is_held_here(run) and locked_elsewhere(run)
    assert not is_held_here(run) and not locked_elsewhere(run)
    assert (run / LOCK_FILE).read_text() == ""  # no stale PID once released


def test_a_second_trainer_stops_at_once_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    with held_by_another_process(run) as other:
        trainer = Trainer(LinearFit(), regression_data(), settings(), run)
        start = time.monotonic()
        with pytest.raises(RunLockedError) as info:
            trainer.fit()
        assert time.monotonic() - start < 5  # no waiting
    assert str(info.value) == (f"{run} is in use by another torchwm process (PID {other.pid}); wait for it or use "
                               "another logging.run_dir")
    assert isinstance(info.value, RuntimeError)
    assert not (run / "metrics.jsonl").exists() and not (run / "checkpoints").exists()
    # the holder is gone (killed): the kernel dropped its lock, and training goes ahead
    assert [r["step"] for r in Trainer(LinearFit(), regression_data(), settings(), run).fit()] == list(range(1, 7))


def test_the_lock_is_held_while_training_and_released_when_it_raises(tmp_path):
    run, seen = tmp_path / "run", []

    def dies_at_step_4(batch):
        seen.append(locked_elsewhere(run))
        if len(seen) == 4:
            raise Killed
        return batch

    with pytest.raises(Killed):
        Trainer(LinearFit(), regression_data(), settings(), run, batch_fn=dies_at_step_4).fit()
    assert seen == [True] * 4
    assert not locked_elsewhere(run) and not is_held_here(run)


def test_a_lock_file_of_another_user_is_locked_read_only(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text("")
    real_open = os.open

    def not_writable(file, flags, *args):  # as a file of another user with mode 0644 would be
        if Path(file) == run / LOCK_FILE and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(locks_module.os, "open", not_writable)
    with hold(run):
        assert locked_elsewhere(run)
    assert not locked_elsewhere(run)


# ------------------------------------------------------------------------------------------- stores
def small_meta(**overrides) -> StoreMeta:
    fields = dict(env_id=PM, image_size=8, action_repeat=1, camera=-1, seed=0, policy="random", noise_beta=0.8,
                  steps=5, frame_shape=(3, 8, 8), action_dim=2, state_dim=4)
    fields.update(overrides)
    return StoreMeta(**fields)


def episode(seed: int, T: int = 5, meta: StoreMeta | None = None) -> tuple[np.ndarray, ...]:
    meta = meta or small_meta()
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (T + 1, *meta.frame_shape), dtype=np.uint8),
            rng.uniform(-1, 1, (T, meta.action_dim)).astype(np.float32), rng.normal(size=(T + 1, meta.state_dim)),
            rng.uniform(0, 1, T).astype(np.float32))


def test_an_episode_already_stored_alike_is_done_and_a_different_one_is_refused(tmp_path):
    first = TrajectoryStore.create(tmp_path / "s", small_meta())
    second = TrajectoryStore(tmp_path / "s")  # another collector's view, opened before episode 0 existed
    arrays = episode(0)
    first.write_episode(0, *arrays)
    files = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in (tmp_path / "s" / "episodes").rglob("*.npy")}
    assert second.write_episode(0, *arrays) == first.episode_dir(0)
    assert second.indices == [0] and second.lengths == {0: 5}
    assert {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == files  # left as it was
    nan_states = episode(1)
    nan_states[2][1, 0] = np.nan  # NaN equals NaN here: the same physics state
    second.write_episode(1, *nan_states)
    second.write_episode(1, *nan_states)

    frames, actions, states, rewards = arrays
    other_frames = frames.copy()
    other_frames[3, 0, 0, 0] ^= 1
    with pytest.raises(StoreError, match=r"episode 0 is already stored with different frames than collected now"):
        second.write_episode(0, other_frames, actions, states, rewards)
    with pytest.raises(StoreError, match=r"different frames \(6, 3, 8, 8\), actions \(5, 2\), states \(6, 4\), "
                                         r"rewards \(5,\)"):
        second.write_episode(0, *episode(0, T=3))
    assert TrajectoryStore(tmp_path / "s").lengths == {0: 5, 1: 5}
    assert not [p for p in (tmp_path / "s" / "episodes").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("same", [True, False], ids=["same", "different"])
def test_an_episode_renamed_into_place_by_another_writer_meanwhile(tmp_path, monkeypatch, same):
    store = TrajectoryStore.create(tmp_path / "s", small_meta())
    other = TrajectoryStore(tmp_path / "s")
    arrays = episode(0)
    real_replace, raced = os.replace, []

    def other_writer_first(src, dst):  # the other collector renames its copy in just before this one does
        if not raced and Path(dst) == store.episode_dir(0):
            raced.append(1)
            other.write_episode(0, *(arrays if same else episode(1)))
        return real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", other_writer_first)
    if same:
        assert store.write_episode(0, *arrays) == store.episode_dir(0)
        assert store.indices == [0]
    else:
        with pytest.raises(StoreError, match="episode 0 is already stored with different frames"):
            store.write_episode(0, *arrays)
    assert raced
    assert not [p for p in (tmp_path / "s" / "episodes").iterdir() if p.name.startswith(".tmp-")]


def test_a_lock_file_does_not_make_a_directory_look_like_something_else(tmp_path):
    path = tmp_path / "s"
    with TrajectoryStore.writing(path):  # a collector locks the new store before creating it
        assert TrajectoryStore.create(path, small_meta()).indices == []
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty and has no meta.json"):
        TrajectoryStore.writing(tmp_path / "other")
    assert not (tmp_path / "other" / LOCK_FILE).exists()  # nothing left in a directory that is not a store
    with pytest.raises(StoreError, match="not a directory"):
        TrajectoryStore.writing(tmp_path / "other" / "notes.txt")


@pytest.fixture(scope="module")
def pm_meta(tmp_path_factory) -> tuple[CollectSpec, StoreMeta]:
    """A tiny point_mass spec and the meta its store gets (the environment is probed once)."""
    spec = CollectSpec(PM, steps=5, seed=1, image_size=16)
    path = tmp_path_factory.mktemp("probe") / "store"
    return spec, collect_module._open_store(spec, path).meta


def test_a_second_collector_waits_then_finds_its_episodes_done(tmp_path, pm_meta, monkeypatch, capsys):
    spec, meta = pm_meta
    path, meta_file = tmp_path / "store", tmp_path / "meta.json"
    meta_file.write_text(json.dumps(meta.to_dict()))
    collected = []
    monkeypatch.setattr(collect_module, "_collect_indices", lambda store, spec, indices, *a: collected.append(indices))
    with held_by_another_process(path, seconds=1.5, meta=meta_file) as other:
        store = ensure_collected(spec, path, episodes=3, progress=False)
        assert other.wait(timeout=60) == 0  # it wrote its episodes and released the lock: then this one ran
    assert store.indices == [0, 1, 2] and collected == []  # nothing left to collect
    assert int(store.episode(2).frames[0, 0, 0, 0]) == 2  # the other process's episodes, read after the wait
    err = capsys.readouterr().err
    assert err.count("waiting for") == 1 and f"waiting for {path} (PID {other.pid} is collecting)" in err
    assert not locked_elsewhere(path)


def test_two_processes_collecting_one_store_both_succeed(tmp_path, pm_meta):
    """The sweep of two runs over model settings: both derive the same store and collect into it at once."""
    spec, _ = pm_meta
    path, ready = tmp_path / "store", tmp_path / "ready"
    script = f"""
import importlib, time
from torchwm.data import CollectSpec, ensure_collected

collect = importlib.import_module("torchwm.data.collect")
real = collect._collect_indices
def slow(*args, **kwargs):  # hold the lock a moment so that the other process surely comes meanwhile
    open({str(ready)!r}, "w").close()
    time.sleep(1.0)
    return real(*args, **kwargs)
collect._collect_indices = slow
ensure_collected(CollectSpec({PM!r}, steps=5, seed=1, image_size=16), {str(path)!r}, episodes=2, progress=False)
"""
    other = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert other.poll() is None, other.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        mine = ensure_collected(spec, path, episodes=3, progress=False)  # this run wants one more episode
        assert other.wait(timeout=120) == 0, other.stderr.read()
    finally:
        other.kill()
        other.wait()
    assert mine.indices == [0, 1, 2] and TrajectoryStore(path).indices == [0, 1, 2]
    alone = collect_module.collect(spec, tmp_path / "alone", episodes=3, progress=False)
    for i in range(3):
        for name, a, b in zip(("frames", "actions", "states", "rewards"), mine.episode(i), alone.episode(i)):
            np.testing.assert_array_equal(a, b, err_msg=f"episode {i} {name}")

"""Restarting a run after a kill: a torn metrics line, the logs of a run killed before its first checkpoint,
TensorBoard events after the checkpoint, temporary files of unfinished writes, and the resume guard (which
names each changed field and lets through what cannot change the trained weights)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from torchwm.io import atomic_write, remove_stale_temp, temp_writer
from torchwm.runs import RunDir, TornMetricsWarning
from torchwm.training import Trainer, TrainSettings

from trainer_doubles import Killed, LinearFit, locked_elsewhere, regression_data, tiny_settings


pytestmark = pytest.mark.usefixtures("one_thread")


def Noisy(seed: int = 0) -> LinearFit:
    """A linear fit whose loss draws noise from torch's global RNG (so a resume must restore it)."""
    return LinearFit(noise=0.1, seed=seed)


def data() -> TensorDataset:
    return regression_data(samples=40)


def settings(**overrides) -> TrainSettings:
    return tiny_settings(dict(total_steps=12, batch_size=8, learning_rate=1e-2, warmup_steps=2, log_every=1,
                              metrics_every=4, checkpoint_every=6), **overrides)


def killed_at(call: int, on_kill=None):
    """A ``batch_fn`` that raises :class:`Killed` at its ``call``-th call (after ``on_kill()``)."""
    calls = []

    def batch_fn(batch):
        calls.append(1)
        if len(calls) == call:
            if on_kill is not None:
                on_kill()
            raise Killed
        return batch

    return batch_fn


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -------------------------------------------------------------------------------------- metrics log
def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3):
        run.append_metrics({"step": step, "loss": 1.0 / step})
    with open(run.metrics_log, "a", encoding="utf-8") as f:
        f.write('{"step": 4, "loss": 0.2')  # killed in the middle of the write
    with pytest.warns(TornMetricsWarning, match=r"metrics\.jsonl: line 4 is incomplete"):
        assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]
    with pytest.warns(TornMetricsWarning):
        assert run.finish_metrics(steps=3)["step"] == 3
    with pytest.warns(TornMetricsWarning):
        run.truncate_metrics(2)  # what a resume from step 2 does: the torn line goes too
    assert run.metrics_log.read_text() == '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["step"] for r in run.read_metrics()] == [1, 2]

    run.metrics_log.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')  # damage elsewhere is no tear
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 2 is not a JSON record"):
        run.read_metrics()


def test_a_run_with_a_torn_metrics_line_resumes(tmp_path):
    straight = Trainer(Noisy(), data(), settings(), tmp_path / "a").fit()

    def tear():
        with open(RunDir(tmp_path / "b").metrics_log, "a", encoding="utf-8") as f:
            f.write('{"step": 9, "loss/to')

    with pytest.raises(Killed):
        Trainer(Noisy(), data(), settings(), tmp_path / "b", batch_fn=killed_at(9, tear)).fit()
    with pytest.warns(TornMetricsWarning):
        resumed = Trainer(Noisy(seed=1), data(), settings(), tmp_path / "b").fit()
    assert [r["step"] for r in resumed] == list(range(7, 13))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = RunDir(tmp_path / "b").read_metrics()
    assert [r["step"] for r in records] == list(range(1, 13))
    assert [r["loss/total"] for r in records] == [r["loss/total"] for r in straight]


# ------------------------------------------------------------------------------------ TensorBoard
def scalar_steps(run: Path, tag: str = "loss/total") -> list[int]:
    """The steps of ``tag`` TensorBoard shows: events of every file in the order written, where a file that
    starts with ``purge_step`` s (a session START at step s) hides earlier events at steps >= s."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = [list(EventFileLoader(str(f)).Load()) for f in run.glob("events.out.tfevents.*")]
    steps: list[int] = []
    for events in sorted(files, key=lambda events: events[0].wall_time):
        for event in events:
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                steps = [s for s in steps if s < event.step]
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


def test_a_run_killed_before_its_first_checkpoint_starts_afresh(tmp_path):
    run = RunDir(tmp_path)
    first = Trainer(Noisy(), data(), settings(tensorboard=True), tmp_path, batch_fn=killed_at(5))
    with pytest.raises(Killed):
        first.fit()
    first.close()  # the worst case: everything it logged reached the disk
    assert not run.checkpoint.exists() and [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4]
    dead_events = set(tmp_path.glob("events.out.tfevents.*"))
    assert scalar_steps(tmp_path) == [1, 2, 3, 4] and dead_events

    again = Trainer(Noisy(), data(), settings(tensorboard=True), tmp_path)
    again.fit()
    again.close()
    assert [r["step"] for r in run.read_metrics()] == list(range(1, 13))  # each step once
    assert not dead_events & set(tmp_path.glob("events.out.tfevents.*"))  # the dead run's events are gone
    assert scalar_steps(tmp_path) == list(range(1, 13))


def test_a_resumed_run_does_not_log_tensorboard_scalars_twice(tmp_path):
    on_disk_at_kill = []

    def look():  # killed at step 9, after the checkpoint of step 6: what a kill -9 would leave
        on_disk_at_kill.extend(scalar_steps(tmp_path))

    first = Trainer(Noisy(), data(), settings(tensorboard=True), tmp_path, batch_fn=killed_at(9, look))
    with pytest.raises(Killed):
        first.fit()
    assert set(range(1, 7)) <= set(on_disk_at_kill)
    first.close()  # then steps 7 and 8 reach the disk too
    assert scalar_steps(tmp_path) == list(range(1, 9))
    resumed = Trainer(Noisy(), data(), settings(tensorboard=True), tmp_path)
    resumed.fit()
    resumed.close()
    assert scalar_steps(tmp_path) == list(range(1, 13))


def test_evaluation_does_not_change_training_however_often_it_runs(tmp_path):
    """An evaluation that draws random numbers (torch, numpy, python) leaves the trained weights alone, so a
    run may be resumed with another train.eval_every."""
    import random

    import numpy as np

    def evaluate(model, step):
        return {"eval/noise": float(torch.randn(3).sum()) + float(np.random.rand()) + random.random()}

    weights = {}
    for every in (1, 5, 100):
        model = Noisy()
        Trainer(model, data(), settings(eval_every=every), tmp_path / str(every), evaluate=evaluate).fit()
        weights[every] = model.state_dict()
    for key in weights[1]:
        assert torch.equal(weights[1][key], weights[100][key]) and torch.equal(weights[5][key], weights[100][key])


# ------------------------------------------------------------------------------- temporary files
def test_temporary_files_name_their_writer(tmp_path):
    names = []

    def crash(f):
        names.extend(os.listdir(tmp_path))
        raise OSError("killed")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "last.pt", crash)
    assert len(names) == 1 and names[0].startswith(".tmp-last.pt-") and temp_writer(names[0]) == os.getpid()
    assert temp_writer("last.pt") is None and temp_writer(".tmp-last.pt-abc") is None

    dead, alive = tmp_path / f".tmp-last.pt-{dead_pid()}-a1b2c3d4", tmp_path / f".tmp-x-{os.getppid()}-a1b2c3d4"
    mine, other = tmp_path / f".tmp-y-{os.getpid()}-a1b2c3d4", tmp_path / ".tmp-notes"
    for f in (dead, alive, mine, other):
        f.write_bytes(b"partial")
    assert remove_stale_temp(tmp_path) == [dead]
    assert remove_stale_temp(tmp_path, every_writer=True) == [alive]  # the caller holds the folder's lock
    assert mine.exists() and other.exists()


def test_training_removes_temporary_files_of_killed_writes(tmp_path):
    (tmp_path / "checkpoints").mkdir(parents=True)
    stale = [tmp_path / "checkpoints" / f".tmp-last.pt-{dead_pid()}-x7k2m9q1",
             tmp_path / f".tmp-metrics.json-{dead_pid()}-x7k2m9q1"]
    kept = [tmp_path / "figures" / f".tmp-pca.png-{dead_pid()}-x7k2m9q1", tmp_path / "checkpoints" / "mine.tmp"]
    for f in stale + kept:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"\0" * 64)
    Trainer(Noisy(), data(), settings(total_steps=2), tmp_path).fit()
    assert not any(f.exists() for f in stale) and all(f.exists() for f in kept)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["last.pt", "mine.tmp"]


# ----------------------------------------------------------------------------------- resume guard
def _config(tmp_path, **overrides):
    from torchwm import JEPAConfig

    items = {
        "image_size": 16, "embed_dim": 16, "batch_size": 4, "learning_rate": 1e-3, "predict_horizon": 2,
        "env.id": "dmc:point_mass-easy", "model.encoder": "conv", "model.conv_width": 4, "model.history": 2,
        "model.temporal_hidden": 16, "model.predictor_hidden": 32, "data.episodes": 4, "data.steps": 12,
        "data.workers": 1, "data.path": str(tmp_path / "store"), "train.steps": 6, "train.eval_every": 3,
        "train.checkpoint_every": 3, "train.metrics_every": 3, "train.warmup_steps": 2, "device": "cpu",
        "logging.log_every": 2, "logging.progress": False, "logging.tensorboard": False,
    }
    items.update(overrides)
    return JEPAConfig().override([f"{k}={v}" for k, v in items.items()]).validate()


def test_resume_refuses_a_training_change_naming_each_field(tmp_path):
    from torchwm import JEPAAgent

    run = tmp_path / "run"
    cfg = _config(tmp_path, **{"logging.run_dir": str(run)})
    cfg.save(run / "config.yaml")
    (run / "checkpoints").mkdir()  # a run was started here
    saved = (run / "config.yaml").read_text()
    changed = _config(tmp_path, **{"logging.run_dir": str(run), "learning_rate": 0.01, "train.grad_clip": 0.5,
                                   "device": "auto", "data.loader_workers": 1})
    with pytest.raises(ValueError, match="different config") as info:
        JEPAAgent(changed).train()
    message = str(info.value)
    assert "\n  learning_rate: 0.001 -> 0.01" in message and "\n  train.grad_clip: 1.0 -> 0.5" in message
    assert len(message.splitlines()) == 3  # one line per refused field, nothing else listed
    assert "device" not in message and "loader_workers" not in message and "{" not in message
    assert (run / "config.yaml").read_text() == saved  # left as it was


def test_resume_with_settings_that_cannot_change_the_weights_is_exact(tmp_path, monkeypatch):
    """Changed device, collection and loader workers, logging, planning and how often the run evaluates,
    measures and checkpoints: the resumed run is accepted and ends bitwise equal to an uninterrupted one."""
    from torchwm import JEPAAgent, JEPAConfig
    from torchwm.agents import base
    from torchwm.agents.base import resolve_device

    straight = JEPAAgent(_config(tmp_path, **{"logging.run_dir": str(tmp_path / "a")}))
    straight.train()

    cfg = _config(tmp_path, **{"logging.run_dir": str(tmp_path / "b")})
    real_save = Trainer.save_checkpoint

    def save_then_die(self):
        path = real_save(self)
        if self.step == 3:
            raise Killed
        return path

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            JEPAAgent(cfg).train()
    assert not locked_elsewhere(tmp_path / "b")  # released although train() raised

    changes = {"data.workers": 2, "data.loader_workers": 1, "train.eval_every": 2, "train.metrics_every": 1,
               "train.checkpoint_every": 5, "logging.log_every": 1, "logging.tensorboard": True,
               "planning.samples": 40, "planning.horizon": 2}
    if resolve_device("auto").type == "cpu":  # the same device, named otherwise
        changes["device"] = "auto"
    resumed_cfg = _config(tmp_path, **{"logging.run_dir": str(tmp_path / "b"), **changes})
    lock_seen = {}
    real_config_save, real_save_model = JEPAConfig.save, base.save_model

    def config_save(self, path):
        lock_seen["config.yaml"] = locked_elsewhere(tmp_path / "b")
        return real_config_save(self, path)

    def save_model(*args, **kwargs):
        lock_seen["model.pt"] = locked_elsewhere(tmp_path / "b")
        return real_save_model(*args, **kwargs)

    monkeypatch.setattr(JEPAConfig, "save", config_save)
    monkeypatch.setattr(base, "save_model", save_model)
    resumed = JEPAAgent(resumed_cfg)
    assert resumed.train()["steps"] == 6
    assert lock_seen == {"config.yaml": True, "model.pt": True}
    assert not locked_elsewhere(tmp_path / "b")
    assert JEPAConfig.load(tmp_path / "b" / "config.yaml") == resumed_cfg

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    loss = lambda run: {r["step"]: r["loss/total"] for r in RunDir(run).read_metrics() if "loss/total" in r}  # noqa: E731
    assert {s: v for s, v in loss(tmp_path / "b").items() if s in loss(tmp_path / "a")} == loss(tmp_path / "a")


def test_a_second_agent_on_a_run_in_use_stops_before_writing_anything(tmp_path):
    from torchwm import JEPAAgent
    from torchwm.locks import RunLockedError

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); f.write('%d' % __import__('os').getpid()); f.flush(); "
                               "print('ready', flush=True); time.sleep(120)", str(run / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunLockedError, match=rf"is in use by another torchwm process \(PID {holder.pid}\); "
                                                 "wait for it or use another logging.run_dir"):
            JEPAAgent(_config(tmp_path, **{"logging.run_dir": str(run)})).train()
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # no config.yaml, and no store collected
    assert not (tmp_path / "store").exists()


# ------------------------------------------------------------------------------------ run events
def test_run_events_are_logged(tmp_path, caplog):
    """Start, checkpoints, and a resume naming its step reach ``logging`` (what the command line shows)."""
    caplog.set_level("INFO", logger="torchwm")
    with pytest.raises(Killed):
        Trainer(Noisy(), data(), settings(), tmp_path / "r", batch_fn=killed_at(9)).fit()
    started = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("training 12 steps into") for m in started), started
    assert any(m.startswith("step 6: checkpoint") for m in started), started
    caplog.clear()
    Trainer(Noisy(), data(), settings(), tmp_path / "r").fit()
    resumed = [r.getMessage() for r in caplog.records]
    assert any("from step 6 of 12" in m for m in resumed), resumed
    assert any(m.startswith("step 12: checkpoint") for m in resumed) and not any("training 12" in m for m in resumed)

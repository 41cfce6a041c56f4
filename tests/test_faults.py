"""Ordinary mistakes on the command line: one ``error:`` line naming the file or field and what to do, exit status
1 (130 for Ctrl-C, with the command that resumes), and nothing half-written. Table-driven over every case."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from torchwm import JEPAAgent, JEPAConfig
from torchwm.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "image_size": 16, "embed_dim": 16, "batch_size": 4, "learning_rate": 1e-3, "predict_horizon": 2,
    "env.id": "dmc:point_mass-easy", "model.encoder": "conv", "model.conv_width": 4, "model.history": 2,
    "model.temporal_hidden": 16, "model.predictor_hidden": 32, "data.episodes": 4, "data.steps": 12,
    "data.workers": 1, "train.steps": 4, "train.eval_every": 2, "train.checkpoint_every": 2,
    "train.warmup_steps": 1, "planning.samples": 8, "planning.elites": 2, "planning.iterations": 1,
    "planning.horizon": 2, "planning.episode_steps": 2, "planning.eval_episodes": 1, "planning.parallel": 1,
    "planning.videos": 0, "logging.progress": False, "logging.tensorboard": False,
}


def _config(tmp: Path, **changes) -> JEPAConfig:
    items = dict(TINY, **{"data.path": str(tmp / "store"), "logging.run_dir": str(tmp / "run")}, **changes)
    return JEPAConfig().override([f"{k}={v}" for k, v in items.items()]).validate(check_paths=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny run (its folder holds ``config.yaml``, ``store/`` and ``run/``)."""
    tmp = tmp_path_factory.mktemp("faults")
    cfg = _config(tmp)
    cfg.save(tmp / "config.yaml")
    JEPAAgent(cfg).train()
    return tmp


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    code = exit_info.value.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # SystemExit("error: ...") prints its message and exits 1
        err, code = code, 1
    return code, err.strip()


def _copy_run(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained / "run", tmp_path / "run")
    cfg = JEPAConfig.load(trained / "config.yaml")
    cfg.logging.run_dir = str(tmp_path / "run")
    cfg.save(tmp_path / "config.yaml")
    return tmp_path / "config.yaml"


# ----------------------------------------------------------------------- cases: (argv maker, expected fragments)
def case_yaml_syntax(tmp: Path, trained: Path):
    (tmp / "bad.yaml").write_text("train:\n  steps: [1,\n")
    return ["train", "--config", str(tmp / "bad.yaml")], ["bad.yaml", "not valid YAML", "line", "fix the file"]


def case_config_is_a_directory(tmp: Path, trained: Path):
    return ["train", "--config", str(tmp)], ["is a directory", "preset"]


def case_run_dir_is_a_file(tmp: Path, trained: Path):
    (tmp / "taken").write_text("")
    return (["train", "--config", str(trained / "config.yaml"), "--set", f"logging.run_dir={tmp / 'taken'}"],
            ["logging.run_dir", "is a file", "choose another"])


def case_truncated_checkpoint(tmp: Path, trained: Path):
    config = _copy_run(trained, tmp)
    (tmp / "run" / "model.pt").unlink()
    last = tmp / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    return ["train", "--config", str(config)], ["last.pt", "delete"]


def case_garbage_checkpoint(tmp: Path, trained: Path):
    config = _copy_run(trained, tmp)
    (tmp / "run" / "model.pt").unlink()
    (tmp / "run" / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint at all")
    return ["train", "--config", str(config)], ["last.pt", "delete"]


def case_garbage_model_file(tmp: Path, trained: Path):
    _copy_run(trained, tmp)
    (tmp / "run" / "model.pt").write_bytes(b"\x00garbage")
    return ["plan", "--run", str(tmp / "run")], ["model.pt"]


def case_store_error_during_train(tmp: Path, trained: Path):
    (tmp / "notastore").mkdir()
    (tmp / "notastore" / "something.txt").write_text("x")
    return (["train", "--config", str(trained / "config.yaml"), "--set", f"data.path={tmp / 'notastore'}",
             "--set", f"logging.run_dir={tmp / 'run'}"], ["notastore"])


def case_empty_image_folder(tmp: Path, trained: Path):
    (tmp / "images").mkdir()
    return (["pretrain", "--set", f"root_path={tmp}", "--set", "image_folder=images", "--set",
             f"logging.run_dir={tmp / 'run'}"], ["images", "no usable images"])


def case_config_changed(tmp: Path, trained: Path):
    config = _copy_run(trained, tmp)
    return ["train", "--config", str(config), "--set", "learning_rate=0.01"], ["learning_rate", "run_dir"]


def case_plan_zero_episodes(tmp: Path, trained: Path):
    return ["plan", "--run", str(trained / "run"), "--episodes", "0"], ["--episodes 0", "positive"]


def case_embed_zero_batch(tmp: Path, trained: Path):
    (tmp / "images" / "a").mkdir(parents=True)
    return (["embed", "--run", str(trained / "run"), "--images", str(tmp / "images"), "--batch-size", "0"],
            ["--batch-size 0", "positive"])


def case_unknown_preset(tmp: Path, trained: Path):
    return ["train", "--config", "no_such_preset"], ["no_such_preset"]


def case_demo_without_goals(tmp: Path, trained: Path):
    return (["demo", "--config", str(trained / "config.yaml"), "--set", "env.id=dmc:walker-walk"],
            ["walker", "goal protocol", "point_mass"])


def case_bf16_on_cpu(tmp: Path, trained: Path):
    return (["train", "--config", str(trained / "config.yaml"), "--set", "device=cpu", "--set", "train.precision=bf16"],
            ["train.precision='bf16'", "device='cpu'", "fp32"])


CASES = [case_bf16_on_cpu, case_yaml_syntax, case_config_is_a_directory, case_run_dir_is_a_file, case_truncated_checkpoint,
         case_garbage_checkpoint, case_garbage_model_file, case_store_error_during_train, case_empty_image_folder,
         case_config_changed, case_plan_zero_episodes, case_embed_zero_batch, case_unknown_preset,
         case_demo_without_goals]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_gives_one_error_line(case, trained, tmp_path, capsys):
    argv, fragments = case(tmp_path, trained)
    before = sorted(p.relative_to(trained) for p in trained.rglob("*"))
    code, err = _run(argv, capsys)
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]  # run events (logging) may come before
    assert lines and lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1, err
    assert "Traceback" not in err and "weights_only" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert sorted(p.relative_to(trained) for p in trained.rglob("*")) == before  # the shared run is untouched


def test_ctrl_c_exits_130_with_the_resume_command(trained, tmp_path, capsys, monkeypatch):
    config = _copy_run(trained, tmp_path)
    monkeypatch.setattr(JEPAAgent._jobs["world_model"], "train", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    code, err = _run(["train", "--config", str(config)], capsys)
    assert code == 130
    assert "interrupted" in err and f"torchwm train --config {config}" in err and "resume" in err


def test_full_disk_is_one_line_naming_the_file(trained, tmp_path, capsys, monkeypatch):
    config = _copy_run(trained, tmp_path)

    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(JEPAConfig, "save", full)
    code, err = _run(["train", "--config", str(config), "--set", f"logging.run_dir={tmp_path / 'new'}"], capsys)
    assert code == 1 and err.startswith("error: no space left") and "config.yaml" in err and "rerun" in err


def test_a_bug_keeps_its_traceback(trained, tmp_path, monkeypatch):
    """Only errors a user can act on become one line; an unexpected exception propagates."""
    config = _copy_run(trained, tmp_path)
    monkeypatch.setattr(JEPAAgent._jobs["world_model"], "train", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["train", "--config", str(config)])


def test_no_config_uses_the_cpu_preset(capsys, monkeypatch, tmp_path):
    from torchwm import cli

    monkeypatch.chdir(tmp_path)
    cfg = cli._config(cli.argparse.Namespace(config=None, overrides=[], command="train"))
    assert cfg == JEPAConfig.load(cli.DEMO_PRESET) and cfg.image_size == 64
    assert cli.DEMO_PRESET in capsys.readouterr().err

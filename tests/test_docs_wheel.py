"""The README's and the docs' commands and Python snippets work as a new user runs them: against the installed
wheel (not the source tree), from a directory outside the repository, sized down only in their counts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY_WORLD_MODEL = ["train.steps=2", "data.episodes=4", "data.steps=20", "data.workers=1", "batch_size=4",
                    "logging.progress=false",
                    "planning.samples=16", "planning.elites=4", "planning.iterations=2", "planning.episode_steps=3"]


def _blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(encoding="utf-8"), re.S)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel built from this checkout, installed into a folder of its own; a working directory outside the
    repository."""
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(base / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((base / "dist").glob("torchwm-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(base / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    work = base / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(base / "site"), MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return {"site": base / "site", "work": work, "env": env}


def _python(installed: dict, code: str, timeout: int = 300) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=installed["work"], env=installed["env"],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"snippet failed:\n{code}\n--- stderr:\n{out.stderr[-3000:]}"
    return out.stdout


def _cli(installed: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torchwm", *args], cwd=installed["work"], env=installed["env"],
                          capture_output=True, text=True, timeout=timeout)


def test_the_wheel_is_what_runs(installed):
    where = _python(installed, "import torchwm; print(torchwm.__file__)")
    assert where.strip().startswith(str(installed["site"])), where
    listing = _cli(installed, "train", "--help")
    assert listing.returncode == 0 and "dmc_point_mass" in listing.stdout and "vjepa_tiny" in listing.stdout


def test_readme_and_docs_snippets_run_against_the_wheel(installed):
    # the README's command line: train a tiny world model into the run directory the docs' snippets read
    sets = [a for item in TINY_WORLD_MODEL for a in ("--set", item)]
    done = _cli(installed, "train", "--config", "dmc_point_mass", *sets, "--set", "logging.run_dir=runs/point_mass")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (installed["work"] / "runs" / "point_mass" / "model.pt").is_file()

    data_block = next(b for b in _blocks("README.md") if "store = collect(" in b)
    out = _python(installed, data_block + "\nprint(len(store), tuple(windows[0].frames.shape))")
    assert out.split()[-5:] == ["10", "(5,", "3,", "64,", "64)"]

    backbone, wrapper = _blocks("docs/backbone.md")
    out = _python(installed, backbone + "\nprint(tuple(features.shape), tokens.shape[0])")
    assert out.split()[-3:] == ["(8,", f"{_embed_dim(installed)})", "8"]
    out = _python(installed, wrapper + "\nprint(obs.dtype, obs.shape[0])")
    assert out.split()[-2:] == ["float32", str(3 * _embed_dim(installed))]

    collect_block, windows_block = _blocks("docs/data.md")
    out = _python(installed, collect_block.replace("episodes=50", "episodes=3").replace("steps=100", "steps=10")
                  + windows_block + "\nprint(len(store), w.frames.shape[0], w.actions.shape[0])")
    assert out.split()[-3:] == ["3", "5", "2"]

    (plan_block,) = _blocks("docs/planning.md")
    out = _python(installed, plan_block.replace("episodes=100", "episodes=2"))
    assert "planner" in out and "random" in out


def test_pretraining_snippet_runs_against_the_wheel(installed):
    made = _cli(installed, "shapes", "--out", "data/shapes", "--train-per-class", "4", "--val-per-class", "2",
                "--image-size", "32", "--no-progress")
    assert made.returncode == 0, made.stderr[-3000:]
    (block,) = _blocks("docs/pretraining.md")
    tiny = ('cfg = cfg.override(["train.steps=2", "image_size=32", "batch_size=8", "logging.progress=false", '
            '"logging.run_dir=runs/sigreg_snippet"])\n')
    code = block.replace("JEPAAgent(cfg).train()", tiny + "metrics = JEPAAgent(cfg).train()")
    out = _python(installed, code + "\nprint(metrics['steps'])")
    assert out.split()[-1] == "2"


def _embed_dim(installed: dict) -> int:
    import json

    return int(json.loads(_python(installed, "import json, torchwm; print(json.dumps(torchwm.load_backbone("
                                             "'runs/point_mass').num_features))").split()[-1]))

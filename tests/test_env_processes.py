"""Environments across processes: a process forked after its parent rendered gets an error naming the fix
(it would otherwise hang forever), and the documented spawn recipe for vector envs works."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from torchwm.envs import rendering

FORK_SCRIPT = """
import os
import gymnasium as gym
from torchwm.envs import gym_id, make

ENV = "dmc:point_mass-easy"

def in_child(fn):
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            code = 0
        except RuntimeError as err:
            code = 3 if 'vector_kwargs={"context": "spawn"}' in str(err) else 4
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

env = make(ENV, image_size=16)  # built, never rendered: children forked now render fine
assert in_child(lambda: make(ENV, image_size=16).reset(seed=0)) == 0
env.reset(seed=0)  # the parent's first frame
assert in_child(lambda: make(ENV, image_size=16).reset(seed=0)) == 3, "a new env in a forked child"
assert in_child(lambda: env.reset(seed=1)) == 3, "the parent's env in a forked child"
vec = gym.make_vec(gym_id(ENV), num_envs=2, vectorization_mode="async", image_size=16)  # forks on Linux
try:
    vec.reset(seed=0)
    raise AssertionError("reset of a forked vector env did not raise")
except RuntimeError as err:
    assert 'vector_kwargs={"context": "spawn"}' in str(err), err
vec.close()
print("ok")
"""

ROOT = Path(__file__).resolve().parent.parent


def _docs_recipe() -> str:
    """The vector-env example of docs/envs.md (the python block that uses the spawn context)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "envs.md").read_text(), flags=re.S)
    recipe = [b for b in blocks if 'vector_kwargs={"context": "spawn"}' in b]
    assert len(recipe) == 1, "docs/envs.md shows no (or several) spawn recipes for vector envs"
    return recipe[0]


def _run(tmp_path, script: str, timeout: float = 180) -> str:
    """Run ``script`` in a new session and return its stdout; on a hang, kill the whole session (forked
    children included)."""
    path = tmp_path / "script.py"
    path.write_text(script)
    env = dict(os.environ, MUJOCO_GL="egl")
    proc = subprocess.Popen([sys.executable, str(path)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{path.name} hung for {timeout:g} s")
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_rendering_in_a_child_forked_after_the_parent_rendered_raises(tmp_path):
    assert _run(tmp_path, FORK_SCRIPT).splitlines()[-1] == "ok"


def test_docs_spawn_recipe_steps_an_async_vector_env(tmp_path):
    """The documented recipe runs as written, after the parent rendered, and steps both envs."""
    assert _run(tmp_path, _docs_recipe()).splitlines()[-1] == "(2, 3, 64, 64) uint8"


def test_render_check_names_the_fix(monkeypatch):
    monkeypatch.setattr(rendering, "_gl_pid", os.getpid())
    rendering.check_render_process()
    monkeypatch.setattr(rendering, "_gl_pid", os.getpid() + 1)
    with pytest.raises(RuntimeError, match=r"forked from process \d+ .*vector_kwargs=\{\"context\": \"spawn\"\}"):
        rendering.check_render_process()


def test_docs_single_env_example_runs():
    block = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "envs.md").read_text(), flags=re.S)[0]
    namespace: dict = {}
    exec(compile(block, "docs/envs.md", "exec"), namespace)
    assert namespace["obs"].shape == (3, 64, 64) and {"state", "distance", "success"} <= set(namespace["info"])

"""Collection workers end with their parent, even when it is killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _children(pid: int) -> list[int]:
    """PIDs of the live processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for a reaper that does not reap counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def _kill_and_check(parent: subprocess.Popen, workers: list[int]) -> None:
    """SIGKILL ``parent``; every one of ``workers`` must be gone within a few seconds."""
    try:
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [w for w in workers if _alive(w)]
        assert not left, f"workers {left} outlived their killed parent"
    finally:
        for w in workers:  # only the workers this test started
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_collection_workers_exit_when_the_parent_is_killed(tmp_path):
    code = ("import sys\n"
            "from torchwm.data import CollectSpec, collect\n"
            "collect(CollectSpec('dmc:point_mass-easy', steps=20, image_size=8), sys.argv[1], episodes=5000, "
            "workers=2, progress=False)\n")
    store = tmp_path / "store"
    env = dict(os.environ, MUJOCO_GL="egl")
    parent = subprocess.Popen([sys.executable, "-c", code, str(store)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        # both workers built their env and wrote an episode: they run, past their start-up
        _wait_for(lambda: parent.poll() is not None or len(list(store.rglob("ep_*"))) >= 2, 120,
                  "the first episodes")
        assert parent.poll() is None, parent.stderr.read().decode()[-3000:]
        workers = [pid for pid in _children(parent.pid) if _is_worker(pid)]
        assert len(workers) == 2, f"expected 2 collection workers, found {workers}"
    except BaseException:
        parent.kill()
        raise
    _kill_and_check(parent, workers)


def test_pool_worker_watches_its_parent_without_deathsig():
    """The portable fallback alone (no ``PR_SET_PDEATHSIG``): a thread in the worker sees its parent die."""
    code = ("import time\n"
            "import multiprocessing as mp\n"
            "from concurrent.futures import ProcessPoolExecutor\n"
            "from torchwm.data.collect import _exit_with_parent\n"
            "pool = ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'), initializer=_exit_with_parent, "
            "initargs=(False,))\n"
            "pool.submit(time.sleep, 0).result()\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert parent.stdout.readline().strip() == b"ready", parent.stderr.read().decode()[-3000:]
        workers = [pid for pid in _children(parent.pid) if _is_worker(pid)]
        assert len(workers) == 1, f"expected 1 pool worker, found {workers}"
    except BaseException:
        parent.kill()
        raise
    _kill_and_check(parent, workers)

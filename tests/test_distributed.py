"""Several processes (gloo on the CPU, as torchrun starts them) train like one process on the global batch, batch
statistics are gathered across ranks, and a run whose rank is killed resumes to the same weights."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from torchwm import distributed
from torchwm.losses import covariance_loss, sigreg, variance_loss
from torchwm.training import Trainer, TrainSettings

from trainer_doubles import LinearFit, regression_data, tiny_settings

pytestmark = pytest.mark.usefixtures("one_thread")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def Regression(vicreg: bool) -> LinearFit:
    """A linear fit 6 -> 4; with ``vicreg``, VICReg terms on its outputs (batch statistics)."""
    return LinearFit(6, 4, vicreg=vicreg)


def data() -> TensorDataset:
    return regression_data(samples=64, in_dim=6, out_dim=4, seed=1)


def settings() -> TrainSettings:
    return tiny_settings(dict(total_steps=10, batch_size=16, learning_rate=5e-2, warmup_steps=2, log_every=5,
                              metrics_every=5, checkpoint_every=5))


def _train(rank: int, world: int, port: int, run_dir: str, vicreg: bool) -> None:
    _env(rank, world, port)
    try:
        model = Regression(vicreg)
        Trainer(model, data(), settings(), run_dir).fit()
        if distributed.is_main():
            torch.save(model.state_dict(), Path(run_dir) / "weights.pt")
    finally:
        distributed.cleanup()


@pytest.mark.parametrize("vicreg", [False, True], ids=["no_batch_statistics", "vicreg_gathered"])
def test_two_processes_train_like_one_on_the_global_batch(tmp_path, vicreg):
    _train(0, 1, free_port(), str(tmp_path / "one"), vicreg)
    mp.spawn(_train, args=(2, free_port(), str(tmp_path / "two"), vicreg), nprocs=2, join=True)
    one = torch.load(tmp_path / "one" / "weights.pt")
    two = torch.load(tmp_path / "two" / "weights.pt")
    start = Regression(vicreg).state_dict()
    for key in one:
        assert not torch.equal(one[key], start[key]), "training changed nothing"
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0)
    # the metrics log is rank 0's alone, averaged over the ranks: one record per logged step
    steps = [line.split(",")[0] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert steps == ['{"step": 5', '{"step": 10']


def _statistics(rank: int, world: int, port: int, out: str) -> None:
    _env(rank, world, port)
    try:
        torch.distributed.init_process_group("gloo")
        z_all = torch.randn(12, 5, generator=torch.Generator().manual_seed(3))
        z = z_all[rank * 6:(rank + 1) * 6].clone().requires_grad_(True)
        with distributed.batch_statistics_across_ranks():
            terms = {"variance": variance_loss(z), "covariance": covariance_loss(z),
                     "sigreg": sigreg(z[None], 32, generator=torch.Generator().manual_seed(rank))}
            grads = [torch.autograd.grad(v, z, retain_graph=True)[0] for v in terms.values()]
        torch.save({"values": {k: v.detach() for k, v in terms.items()}, "grads": grads}, f"{out}.{rank}")
    finally:
        distributed.cleanup()


def test_gathered_statistics_equal_the_single_process_ones(tmp_path):
    """VICReg and SIGReg over 2 ranks' shards: the values of one process on the whole batch, and (after DDP's
    averaging) the same gradients. SIGReg's random directions come from rank 0 (each rank seeds differently)."""
    mp.spawn(_statistics, args=(2, free_port(), str(tmp_path / "stats")), nprocs=2, join=True)
    z_all = torch.randn(12, 5, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    single = {"variance": variance_loss(z_all), "covariance": covariance_loss(z_all),
              "sigreg": sigreg(z_all[None], 32, generator=torch.Generator().manual_seed(0))}
    ranks = [torch.load(tmp_path / f"stats.{r}") for r in range(2)]
    for i, (name, value) in enumerate(single.items()):
        grad = torch.autograd.grad(value, z_all, retain_graph=True)[0]
        for r, result in enumerate(ranks):
            torch.testing.assert_close(result["values"][name], value.detach(), rtol=1e-5, atol=1e-6)
            # each rank's gradient is the sum over ranks of the same loss: world x the single-process share
            torch.testing.assert_close(result["grads"][i] / 2, grad[r * 6:(r + 1) * 6], rtol=1e-4, atol=1e-6)
    assert float(single["covariance"].detach()) > 0 and float(single["variance"].detach()) > 0


def test_a_global_batch_must_split_evenly():
    from torchwm.training import ResumableBatchSampler

    with pytest.raises(ValueError, match="batch_size=10 .* multiple of it"):
        ResumableBatchSampler(100, 10, world_size=3)
    shards = [next(iter(ResumableBatchSampler(40, 8, rank=r, world_size=2))) for r in range(2)]
    assert shards[0] + shards[1] == next(iter(ResumableBatchSampler(40, 8)))


# ------------------------------------------------------------------------------- kill -9 of one rank
SCRIPT = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    import torch
    sys.path.insert(0, {tests!r})
    from test_distributed import Regression, data, settings
    from torchwm import distributed
    from torchwm.training import Trainer

    torch.set_num_threads(1)
    run_dir = Path(sys.argv[1])
    s = settings()
    s.total_steps, s.checkpoint_every = 24, 4

    def slow(batch):
        time.sleep(0.05)
        (run_dir / f"pid{{os.environ['RANK']}}").write_text(str(os.getpid()))
        return batch

    model = Regression(vicreg=True)
    Trainer(model, data(), s, run_dir, batch_fn=slow).fit()
    if distributed.is_main():
        torch.save(model.state_dict(), run_dir / "weights.pt")
    distributed.cleanup()
''')


def _torchrun(script: Path, run_dir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(free_port()),
           str(script), str(run_dir)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_killing_one_rank_then_rerunning_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    straight = _torchrun(script, tmp_path / "straight")
    assert straight.wait(timeout=120) == 0, straight.stderr.read()[-2000:]

    killed = tmp_path / "killed"
    first = _torchrun(script, killed)
    deadline = time.time() + 60
    while not (killed / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    os.kill(int((killed / "pid1").read_text()), signal.SIGKILL)  # rank 1 dies mid-run
    assert first.wait(timeout=60) != 0
    assert not (killed / "weights.pt").exists(), "the run finished before the kill"
    again = _torchrun(script, killed)  # the same command
    assert again.wait(timeout=120) == 0, again.stderr.read()[-2000:]
    a, b = torch.load(tmp_path / "straight" / "weights.pt"), torch.load(killed / "weights.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_precision_auto_is_fp32_off_cuda(tmp_path):
    from torchwm import JEPAAgent, JEPAConfig

    cfg = JEPAConfig.load("dmc_point_mass").override([f"logging.run_dir={tmp_path}", "device=cpu"]).validate()
    assert cfg.train.precision == "auto" and JEPAAgent(cfg).precision() == "fp32"
    bad = cfg.override(["train.precision=bf16"])
    with pytest.raises(ValueError, match="bf16 autocast is for CUDA"):
        bad.validate()

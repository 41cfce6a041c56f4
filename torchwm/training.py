"""One training loop for every model in torchwm (world model, image pretraining): AdamW, warm-up + cosine
learning rate, gradient clipping, resumable data order, atomic checkpoints, exact resume, NaN guard,
progress bar, TensorBoard scalars and a metrics log.

A model is trainable when it has ``loss(*batch) -> LossOutput`` (``total``, ``terms``, ``embeddings``,
``frames``) and optionally ``after_step(step, total_steps)`` (e.g. an EMA update). Evaluation is a
callable handed to :class:`Trainer` that returns named scalars.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from torchwm import distributed
from torchwm.config import DataConfig, LoggingConfig, TrainConfig
from torchwm.io import atomic_torch_save
from torchwm.losses import effective_rank, embedding_std
from torchwm.runs import RunDir
from torchwm.resumable import ResumableBatchSampler, _rng_state, _rng_untouched, _set_rng_state
from torchwm.schedules import cosine_value, lr_factor


log = logging.getLogger(__name__)
"""run events (start, resume from step N, evaluations, checkpoints) at INFO; the command line shows them"""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped without touching the last checkpoint."""


@dataclass
class TrainSettings:
    """The trainer's settings as plain values. An agent builds them from its config; used alone, the
    defaults are the config's own (:class:`~torchwm.config.TrainConfig`, ``LoggingConfig``, ``DataConfig``)."""

    total_steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int = TrainConfig.warmup_steps
    min_lr_ratio: float = TrainConfig.min_lr_ratio
    weight_decay: float = TrainConfig.weight_decay
    weight_decay_end: float | None = None
    """if set, weight decay follows a cosine schedule from ``weight_decay`` to this value (I-JEPA)"""
    grad_clip: float = TrainConfig.grad_clip
    precision: str = "fp32"
    """"fp32", or "bf16": autocast to bfloat16 in the training step (CUDA only; "auto" is resolved by the agent)"""
    compile: bool = TrainConfig.compile
    seed: int = 0
    log_every: int = LoggingConfig.log_every
    metrics_every: int = TrainConfig.metrics_every
    eval_every: int = TrainConfig.eval_every
    checkpoint_every: int = TrainConfig.checkpoint_every
    loader_workers: int = DataConfig.loader_workers
    seeded_samples: bool = False
    """give each sample its own seed (``(index, seed)`` keys, see :class:`SeededSamples`), so random
    augmentations are the same with any number of loader workers and after a resume"""
    progress: bool = LoggingConfig.progress
    tensorboard: bool = LoggingConfig.tensorboard


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and kernels only (not on biases, norms, embeddings' scale)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay, "apply_decay": True},
              {"params": no_decay, "weight_decay": 0.0, "apply_decay": False}]
    return torch.optim.AdamW(groups, lr=lr)


@contextlib.contextmanager
def _threads_beside_workers(workers: int) -> Iterator[None]:
    """With ``workers`` loader processes, give the training process the remaining cores' worth of intra-op
    threads (at least one), and restore the setting after.

    Loader workers use one thread each; left at its default, the training process also takes every core, and
    the two oversubscribe. Measured on 2 cores, multi-view SIGReg on 64 px images with one loader worker
    (augmentation-bound): 39 images/s with 2 training threads, 52 with 1.
    """
    before = torch.get_num_threads()
    if workers > 0:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _headline(evaluation: dict[str, float], limit: int = 5) -> str:
    """The few figures of an evaluation worth a log line: probes, accuracies and the first prediction step."""
    keys = [k for k in evaluation if any(word in k for word in ("probe", "acc", "knn", "linear", "step1"))]
    return ", ".join(f"{k} {float(evaluation[k]):.4g}" for k in (keys or list(evaluation))[:limit])


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        items = [_to_device(b, device) for b in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return batch


class _LossForward(nn.Module):
    """``forward(*args)`` = ``(total, out)`` of ``out = model.loss(*args)``: the module DDP wraps. The total comes
    first, as a plain tensor, because DDP finds the outputs it hooks its gradient reduction to in tuples, not in
    a ``LossOutput``; backward must start from that returned tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any) -> tuple[torch.Tensor, Any]:
        out = self.model.loss(*args)
        return out.total, out


class Trainer:
    """Trains ``model`` on ``dataset`` into ``run_dir``; :meth:`fit` resumes from the last checkpoint.

    ``batch_fn(batch) -> args`` turns a loader batch into the arguments of ``model.loss``;
    ``evaluate(model, step) -> {name: float}`` runs every ``eval_every`` steps and at the end;
    ``visualize(model, step, writer)`` (figures for TensorBoard) runs at the same steps when TensorBoard is on;
    ``extra_state`` is stored in each checkpoint (plain values: e.g. the config as a dict).
    """

    def __init__(self, model: nn.Module, dataset: Dataset, settings: TrainSettings, run_dir: str | Path, *,
                 batch_fn: Callable[[Any], Sequence[Any]] = tuple, device: str | torch.device = "cpu",
                 evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None,
                 visualize: Callable[[nn.Module, int, Any], None] | None = None,
                 extra_state: dict[str, Any] | None = None) -> None:
        self.model, self.dataset, self.s = model, dataset, settings
        self.run = RunDir(run_dir)
        self.run_dir = self.run.path
        self.device = distributed.setup(torch.device(device))
        self.batch_fn, self.evaluate, self.visualize = batch_fn, evaluate, visualize
        self.writer: Any = None
        """``SummaryWriter`` on ``run_dir`` while :meth:`fit` runs (``settings.tensorboard``)"""
        self.extra_state = extra_state or {}
        self.model.to(self.device)
        self.optimizer = make_optimizer(model, settings.learning_rate, settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, settings.warmup_steps, settings.total_steps,
                                                   settings.min_lr_ratio))
        self.sampler = ResumableBatchSampler(len(dataset), settings.batch_size, settings.seed,
                                             with_seeds=settings.seeded_samples, rank=distributed.rank(),
                                             world_size=distributed.world_size())
        self.step = 0
        self.history: list[dict[str, float]] = []

    # --------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.run.checkpoint

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "sampler": self.sampler.position(self.step),
                "rng": _rng_state(), "settings": asdict(self.s), **self.extra_state}

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/last.pt`` atomically (the previous one stays valid until the rename). Under torchrun
        every rank calls it (their random-generator states are gathered) and rank 0 writes."""
        rng_ranks = distributed.all_ranks(_rng_state()) if distributed.active() else None
        if distributed.is_main():
            state = self.state_dict()
            if rng_ranks is not None:
                state["rng_ranks"] = rng_ranks
            atomic_torch_save(state, self.checkpoint_path)
        return self.checkpoint_path

    def load_checkpoint(self, path: str | Path | None = None) -> bool:
        """Restore everything from ``path`` (default ``checkpoints/last.pt``); False if there is none."""
        path = Path(path) if path is not None else self.checkpoint_path
        if not path.exists():
            return False
        from torchwm.runs import read_torch_file

        state = read_torch_file(path, self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        ranks = state.get("rng_ranks", [state["rng"]])
        if len(ranks) != distributed.world_size():
            raise ValueError(f"{path} was written by {len(ranks)} process(es); resume it with the same number "
                             f"(this run has {distributed.world_size()}), or train into a new logging.run_dir")
        _set_rng_state(ranks[distributed.rank()])
        self.step = int(state["step"])
        if distributed.is_main():
            self.run.truncate_metrics(self.step)  # records an interrupted run logged after it are redone
        return True

    # ------------------------------------------------------------------------------------ the loop
    def fit(self) -> list[dict[str, float]]:
        """Train until ``total_steps`` (resuming if a checkpoint exists); returns the logged records.

        Holds the run directory's lock throughout (another process training into it raises
        :class:`~torchwm.locks.RunLockedError`). Without a checkpoint it starts afresh: the metrics log and
        TensorBoard events of a run killed before its first checkpoint are removed first."""
        with self.run.writing(), _threads_beside_workers(self.s.loader_workers):
            return self._fit()

    def _fit(self) -> list[dict[str, float]]:
        from tqdm.auto import tqdm

        s = self.s
        main = distributed.is_main()
        if main:
            self.run.remove_stale_temp()  # of writes a killed run left unfinished
        distributed.barrier()  # a rank reads the checkpoint only once rank 0 has tidied the folder
        if not self.load_checkpoint():
            if main:
                self.run.start_fresh()
            seed = s.seed + distributed.rank()  # rank 0 draws what one process draws
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            log.info("training %d steps into %s (batch %d, %s)", s.total_steps, self.run_dir, s.batch_size,
                     self.device)
        elif self.step < s.total_steps:
            log.info("resuming %s from step %d of %d (%s)", self.run_dir, self.step, s.total_steps,
                     self.checkpoint_path)
        else:
            log.info("%s is complete (%d steps)", self.run_dir, self.step)
        if s.tensorboard and main:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events an interrupted run logged after the checkpoint we resume from (those up to
            # the checkpoint step were logged and flushed before it was saved, so they stay)
            self.writer = SummaryWriter(str(self.run_dir), purge_step=self.step + 1 if self.step else None)
        # A private generator: iter(loader) draws the workers' base seed from it. From the global RNG it
        # would shift the RNG state just restored from the checkpoint, and a resumed run whose model draws
        # random numbers (dropout, noise, masks) would diverge from an uninterrupted one.
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=s.loader_workers,
                            persistent_workers=False, generator=torch.Generator().manual_seed(s.seed))
        bar = tqdm(total=s.total_steps, initial=self.step, disable=not (s.progress and main), desc="train",
                   dynamic_ncols=True)
        step_model = self._data_parallel()
        if s.compile:
            step_model = torch.compile(step_model)
        if s.precision == "bf16" and self.device.type != "cuda":
            raise ValueError(f"train.precision='bf16' needs a CUDA device (this run is on {self.device}); bf16 on a "
                             "CPU is far slower than fp32: use precision 'auto' or 'fp32'")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=s.precision == "bf16")
        self.model.train()
        batches = iter(loader)
        window_frames, window_start = 0, time.perf_counter()
        while self.step < s.total_steps:
            batch = _to_device(next(batches), self.device)
            with distributed.batch_statistics_across_ranks():
                with autocast:
                    total, out = step_model(*self.batch_fn(batch))
                if distributed.any_rank(not bool(torch.isfinite(total))):
                    self._stop_on_nonfinite(out)
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
            grad_norm = (torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
                         if s.grad_clip > 0 else None)
            if s.weight_decay_end is not None:
                decay = cosine_value(self.step, s.total_steps, s.weight_decay, s.weight_decay_end)
                for group in self.optimizer.param_groups:
                    if group.get("apply_decay", True):
                        group["weight_decay"] = decay
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            if hasattr(self.model, "after_step"):
                self.model.after_step(self.step, s.total_steps)
            window_frames += out.frames
            bar.update(1)

            record: dict[str, float] = {}
            if self.step % s.log_every == 0 or self.step == s.total_steps:
                elapsed = time.perf_counter() - window_start
                record.update({f"loss/{k}": float(v) for k, v in out.terms.items()})
                record["train/lr"] = self.optimizer.param_groups[0]["lr"]
                record["train/frames_per_s"] = window_frames / max(elapsed, 1e-9)
                if grad_norm is not None:
                    record["train/grad_norm"] = float(grad_norm)
                window_frames, window_start = 0, time.perf_counter()
                bar.set_postfix(loss=f"{record['loss/total']:.4f}", fps=f"{record['train/frames_per_s']:.0f}")
            if self.step % s.metrics_every == 0 or self.step == s.total_steps:
                record["collapse/embedding_std"] = embedding_std(out.embeddings)
                record["collapse/effective_rank"] = effective_rank(out.embeddings)
            record = distributed.mean_over_ranks(record, sums=("train/frames_per_s",))
            evaluating = self.step % s.eval_every == 0 or self.step == s.total_steps
            if self.evaluate is not None and evaluating and main:  # rank 0 alone evaluates and draws
                eval_start = time.perf_counter()
                self.model.eval()
                with _rng_untouched(self.device):  # so eval_every and TensorBoard figures leave the weights alone
                    evaluation = self.evaluate(self.model, self.step)
                    record.update(evaluation)
                    if self.visualize is not None and self.writer is not None:
                        self.visualize(self.model, self.step, self.writer)
                self.model.train()
                window_start += time.perf_counter() - eval_start  # throughput counts training only
                log.info("step %d: evaluation %s", self.step, _headline(evaluation))
            if record and main:
                self._log(record)
            if self.step % s.checkpoint_every == 0 or self.step == s.total_steps:
                ckpt_start = time.perf_counter()
                if self.writer is not None:
                    self.writer.flush()  # the events up to this checkpoint are on disk before it
                self.save_checkpoint()
                window_start += time.perf_counter() - ckpt_start
                if main:
                    log.info("step %d: checkpoint %s%s", self.step, self.checkpoint_path,
                             f" (loss {record['loss/total']:.4g})" if "loss/total" in record else "")
        bar.close()
        if self.writer is not None:
            self.writer.flush()
        self.model.eval()
        return self.history

    def close(self) -> None:
        """Close the TensorBoard writer (after any final logging by the caller)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _data_parallel(self) -> Callable[..., Any]:
        """What a training step calls with ``batch_fn``'s arguments: ``model.loss``, or under torchrun the model in
        ``DistributedDataParallel`` (gradients averaged over ranks; DDP syncs through ``forward``, hence the
        wrapper whose forward is ``loss``)."""
        if not distributed.active():
            return _LossForward(self.model)
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # static_graph: every step uses the same parameters, and some never (e.g. a ViT's unused head norm under
        # I-JEPA), which DDP then skips without searching the graph each step
        return DistributedDataParallel(_LossForward(self.model), device_ids=ids, static_graph=True)

    def _stop_on_nonfinite(self, out: Any) -> None:
        terms = ", ".join(f"{k}={float(v):.4g}" for k, v in out.terms.items() if not k.startswith("prediction_step"))
        where = (f"the last good checkpoint {self.checkpoint_path} was left intact"
                 if self.checkpoint_path.exists() else "no checkpoint had been written yet")
        raise NonFiniteLossError(
            f"non-finite loss at step {self.step + 1} ({terms}); training stopped and {where}. "
            "Lower learning_rate, raise train.warmup_steps or set train.grad_clip, then run train() again "
            "to resume from the checkpoint.")

    def _log(self, record: dict[str, float]) -> None:
        record = {"step": self.step, **record}
        self.history.append(record)
        if self.writer is not None:
            for key, value in record.items():
                if key != "step":
                    self.writer.add_scalar(key, value, self.step)
        self.run.append_metrics(record)

"""``JEPAAgent``: the one entry point, and what every job's agent shares.

``JEPAAgent(cfg)`` decides once which job the config asks for (``cfg.job``, from ``dataset`` and
``pretrain.method``) and returns that job's agent: a :class:`~torchwm.agents.world_model.WorldModelAgent`,
an :class:`~torchwm.agents.image_pretraining.ImagePretrainingAgent` or a
:class:`~torchwm.agents.video_pretraining.VideoPretrainingAgent`. Each job's
agent is a subclass registered with ``class MyAgent(JEPAAgent, job="my_job")``; it alone turns its part
of the config into objects, and everything below it takes explicit arguments.

What they share lives here: the run directory (:class:`~torchwm.runs.RunDir`), the device, the
trainer set-up and its settings, the end-of-training summary, saving and loading. Every job's ``train()``
holds the run directory's lock (:mod:`torchwm.locks`) from its first line to its last, so a second process
training into the same directory stops at once with :class:`~torchwm.locks.RunLockedError`.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from torchwm import distributed
from torchwm.config import JEPAConfig
from torchwm.runs import RunDir, checkpoint_extras, load_state, save_model

# Settings that cannot change the trained weights, so a run may be resumed with them changed (a name ending in
# "." covers its section): where the run runs and logs, collection and loading processes (episodes and samples
# do not depend on their number), planning (not used in training), and how often it evaluates, measures and
# checkpoints (evaluation runs with the RNG states restored after it, see torchwm.training).
RESUMABLE_FIELDS = ("device", "data.workers", "data.loader_workers", "logging.", "planning.", "train.eval_every",
                    "train.metrics_every", "train.checkpoint_every")


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA if available, then MPS, then CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted name, "name: old -> new")`` for every field that differs between two config dicts."""
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", f"{prefix}{key}: {a!r} -> {b!r}"))
    return out


def _holding_run_lock(train: Callable[..., Any]) -> Callable[..., Any]:
    """A job's ``train`` that holds its run directory's lock throughout, released however it ends."""
    @functools.wraps(train)
    def locked(self: JEPAAgent, *args: Any, **kwargs: Any) -> Any:
        with self.run.writing():
            return train(self, *args, **kwargs)

    return locked


def model_alias(doc: str) -> property:
    """A job's own name for :attr:`JEPAAgent.model` (e.g. ``world_model``), readable and assignable."""
    return property(lambda self: self.model, lambda self, model: setattr(self, "model", model), doc=doc)


class JEPAAgent:
    """The one-line entry: ``JEPAAgent(cfg).train()``, whatever the job (see the module docs).

    Every agent has ``cfg`` (validated), ``run`` (its :class:`~torchwm.runs.RunDir`; ``run_dir`` is its
    path), ``device``, ``model`` (the trained or loaded model, ``None`` before) and ``metrics`` (the
    final metrics of the run). ``train()`` trains into ``cfg.logging.run_dir``, resuming from its last
    checkpoint; ``save()`` writes the model; ``JEPAAgent.load(run_dir)`` reads back the agent of a run.
    """

    job: ClassVar[str] = ""
    """the job this agent does (a value of :data:`torchwm.config.JOBS`)"""
    pretrains: ClassVar[bool] = False
    """whether the job pretrains an encoder (what ``torchwm pretrain`` runs)"""
    _jobs: ClassVar[dict[str, type[JEPAAgent]]] = {}

    def __init_subclass__(cls, job: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if job:
            cls.job = job
            JEPAAgent._jobs[job] = cls
        if "train" in cls.__dict__:
            cls.train = _holding_run_lock(cls.train)

    def __new__(cls, cfg: JEPAConfig | None = None, check_paths: bool = True) -> JEPAAgent:
        if cls is JEPAAgent:  # an unknown dataset has no agent: __init__'s validation names it
            cls = JEPAAgent._jobs.get((cfg if cfg is not None else JEPAConfig()).job, cls)
        return super().__new__(cls)

    def __init__(self, cfg: JEPAConfig | None = None, check_paths: bool = True) -> None:
        self.cfg = (cfg if cfg is not None else JEPAConfig()).validate(check_paths=check_paths)
        if self.cfg.job != self.job:
            raise ValueError(f"{type(self).__name__} does the {self.job!r} job; this config asks for "
                             f"{self.cfg.job!r} (dataset={self.cfg.dataset!r}, pretrain.method="
                             f"{self.cfg.pretrain.method!r}): use JEPAAgent(cfg)")
        self.run = RunDir(self.cfg.logging.run_dir)
        self.device = distributed.setup(resolve_device(self.cfg.device))  # under torchrun: this rank's device
        self.model: Any = None
        self.metrics: dict[str, Any] = {}

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def trained_steps(self) -> int:
        """Optimiser steps of the trained or loaded model (0 before training): the step figures are logged at."""
        return int(self.metrics.get("steps", 0))

    # ------------------------------------------------------------------------------- what jobs add
    def train(self) -> dict[str, Any]:
        """Train (or resume training) and return the final metrics (also in ``run_dir/metrics.json``)."""
        raise NotImplementedError

    def visualize(self, images: str | Path | None = None, count: int | None = None) -> list[Path]:
        """Figures of the trained or loaded model, without training: saved under ``run_dir/figures`` and
        logged to TensorBoard; returns the files."""
        raise NotImplementedError

    def describe(self, metrics: dict[str, Any]) -> str:
        """One line on a finished training run, for the command line."""
        raise NotImplementedError

    def spatial_encoder(self):
        """A new spatial encoder as ``model.encoder`` and the top-level sizes describe it (torch's global RNG)."""
        from torchwm.nn.encoders import build_spatial_encoder

        c, m = self.cfg, self.cfg.model
        return build_spatial_encoder(m.encoder, c.image_size, c.patch_size, c.frame_embed_dim, c.num_layers, c.num_heads,
                                     conv_width=m.conv_width, timm_model=m.timm_model, conv_head=m.conv_head,
                                     keypoints=m.keypoints)

    def _model_from_state(self, state: dict[str, Any]) -> nn.Module:
        """The job's model rebuilt from a saved model or checkpoint, with its weights loaded."""
        raise NotImplementedError

    def _decided_settings(self, model: nn.Module) -> dict[str, Any]:
        """What training decided beyond the config (from the data) and a rebuilt model needs: saved beside the
        weights in ``model.pt`` and checkpoints, read back by :meth:`_model_from_state`. None by default."""
        return {}

    # ------------------------------------------------------------------------------- training
    def _prepare_run_dir(self) -> None:
        """Write config.yaml; refuse to resume a run whose training settings differ (each differing field is
        named; those in :data:`RESUMABLE_FIELDS` may change). Runs inside ``train()``, under the run's lock."""
        with self.run.writing():
            if self.run.has_training_state():
                changed = config_changes(JEPAConfig.load(self.run.config).to_dict(), self.cfg.to_dict())
                refused = [line for name, line in changed
                           if not any(name == f or (f.endswith(".") and name.startswith(f)) for f in RESUMABLE_FIELDS)]
                if refused:
                    raise ValueError(f"{self.run_dir} holds a run with a different config; resuming would mix two "
                                     "experiments. Use a new logging.run_dir, or delete the old run, or undo "
                                     "these changes:\n  " + "\n  ".join(refused))
            if distributed.is_main():
                self.cfg.save(self.run.config)

    def precision(self) -> str:
        """``train.precision`` resolved for this run's device: "auto" → "bf16" on a CUDA device with bf16, else
        "fp32"; "bf16" off CUDA raises ``ValueError`` (far slower than fp32 on CPUs)."""
        wanted = self.cfg.train.precision
        cuda = self.device.type == "cuda"
        if wanted == "auto":
            return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        if wanted == "bf16" and not cuda:
            raise ValueError(f"train.precision='bf16': needs a CUDA device, this run is on {self.device} (bf16 on a "
                             "CPU is hundreds of times slower than fp32); use 'auto' or 'fp32'")
        return wanted

    def _total_steps(self, samples: int) -> int:
        """``train.steps``, or ``epochs`` passes over ``samples`` training samples."""
        c = self.cfg
        return c.train.steps or c.epochs * max(samples // c.batch_size, 1)

    def _trainer(self, model: nn.Module, dataset: Any, steps: int, *, batch_fn: Callable[[Any], Any],
                 evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None,
                 visualize: Callable[[nn.Module, int, Any], None] | None = None,
                 weight_decay_end: float | None = None, seeded_samples: bool = False):
        """The :class:`~torchwm.training.Trainer` of ``model`` on ``dataset`` for ``steps`` steps into the run."""
        from torchwm.training import Trainer, TrainSettings

        c, t = self.cfg, self.cfg.train
        settings = TrainSettings(
            total_steps=steps, batch_size=c.batch_size, learning_rate=c.learning_rate,
            warmup_steps=min(t.warmup_steps, steps // 2), min_lr_ratio=t.min_lr_ratio, weight_decay=t.weight_decay,
            weight_decay_end=weight_decay_end, grad_clip=t.grad_clip, precision=self.precision(), compile=t.compile,
            seed=c.seed, log_every=c.logging.log_every,
            metrics_every=t.metrics_every, eval_every=t.eval_every, checkpoint_every=t.checkpoint_every,
            loader_workers=c.data.loader_workers, seeded_samples=seeded_samples, progress=c.logging.progress,
            tensorboard=c.logging.tensorboard)
        return Trainer(model, dataset, settings, self.run_dir, batch_fn=batch_fn, device=self.device,
                       evaluate=evaluate, visualize=visualize,
                       extra_state=checkpoint_extras(c.to_dict(), model, model.backbone, self._decided_settings(model)))

    def _fit(self, model: nn.Module, trainer: Any, after_fit: Callable[[Any], None] | None = None) -> dict[str, Any]:
        """Run ``trainer`` to its end (closed however it ends; ``after_fit(trainer)`` before that), keep ``model``
        as the agent's and finish the run (:meth:`_finish`); returns the final metrics."""
        try:
            trainer.fit()
            if after_fit is not None:
                after_fit(trainer)
        finally:
            trainer.close()
        self.model = model
        return self._finish(trainer)

    def _finish(self, trainer: Any) -> dict[str, Any]:
        """After training: ``metrics.json``, the TensorBoard run summary, and the saved model."""
        with distributed.main_first():  # rank 0 writes; the other ranks then read what it wrote
            if not distributed.is_main():
                self.metrics = self.run.final_metrics()
                return self.metrics
            self.metrics = self.run.finish_metrics(trainer.step)
            if self.cfg.logging.tensorboard:
                from torchwm.viz.summary import log_run_summary

                log_run_summary(self.run_dir, self.cfg.to_dict(), self.metrics, trainer.step)
            self.save()
        return self.metrics

    def _writer(self):
        """A ``SummaryWriter`` on the run directory (a null context when TensorBoard is off)."""
        if not self.cfg.logging.tensorboard:
            return contextlib.nullcontext(None)
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir))

    def _require_model(self) -> Any:
        if self.model is None:
            raise RuntimeError("no trained model: call train() or JEPAAgent.load(run_dir) first")
        return self.model

    # ---------------------------------------------------------------------------------- save / load
    def save(self, path: str | Path | None = None) -> Path:
        """Write the trained model atomically (default ``run_dir/model.pt``); returns the path.

        The file holds the config, the whole model's weights and the spatial encoder on its own with its
        spec (what :func:`torchwm.load_backbone` and ``model.pretrained`` read); see :mod:`torchwm.runs`.
        """
        model = self._require_model()
        return save_model(Path(path) if path is not None else self.run.model, config=self.cfg.to_dict(),
                          job=self.job, model=model, encoder=model.backbone, decided=self._decided_settings(model))

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None) -> JEPAAgent:
        """The agent of a finished (``model.pt``) or interrupted (``checkpoints/last.pt``) run, of whatever job."""
        file, state = load_state(run_dir)
        if "config" not in state or "model" not in state:
            raise ValueError(f"{file}: holds an encoder only, not a run's model; load it with torchwm.load_backbone")
        cfg = JEPAConfig.from_dict(state["config"])
        cfg.logging.run_dir = str(run_dir)
        if device is not None:
            cfg.device = device
        agent = cls(cfg, check_paths=False)
        agent.metrics = agent.run.final_metrics()
        agent.model = agent._model_from_state(state).to(agent.device).eval()
        return agent

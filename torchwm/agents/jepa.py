"""``JEPAAgent``: collect → train → (plan / evaluate), saved in one run directory. Orchestration only:
models, losses, data, training and evaluation live in their own modules.

Run directory layout::

    run_dir/config.yaml            the config the run was started with
    run_dir/checkpoints/last.pt    latest training state (model, optimizer, scheduler, RNG, data order)
    run_dir/model.pt               the trained world model (weights + what is needed to rebuild it)
    run_dir/metrics.jsonl          one JSON record per logged step;  run_dir/metrics.json: final metrics
    run_dir/events.out.tfevents.*  TensorBoard
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwm.config import JEPAConfig
from torchwm.io import atomic_torch_save
from torchwm.training import MODEL_FILE

CONFIG_FILE = "config.yaml"
# Sections whose changes do not alter training, so a run may be resumed with them changed.
_RESUMABLE_SECTIONS = ("logging", "planning")


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA if available, then MPS, then CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


class JEPAAgent:
    """The one-line entry: ``JEPAAgent(cfg).train()``.

    ``collect()`` makes sure the trajectory store exists (reusing a matching one), ``train()`` trains
    the world model into ``cfg.logging.run_dir`` (resuming from its last checkpoint), ``save()`` writes
    the model, ``JEPAAgent.load(run_dir)`` reads it back. ``world_model`` is the trained
    :class:`~torchwm.world_model.WorldModel` (``None`` before training or loading).
    """

    def __init__(self, cfg: JEPAConfig | None = None, check_paths: bool = True) -> None:
        self.cfg = (cfg if cfg is not None else JEPAConfig()).validate(check_paths=check_paths)
        self.run_dir = Path(self.cfg.logging.run_dir)
        self.device = resolve_device(self.cfg.device)
        self.world_model: Any = None
        self.ijepa: Any = None
        """the :class:`~torchwm.pretrain.ijepa.IJEPA` model of an image-pretraining run"""
        self.metrics: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------ data
    def collect(self):
        """Collect (or reuse) the reward-free trajectory store for ``cfg.env.id``; returns it."""
        from torchwm.data.paths import ensure_config_store

        return ensure_config_store(self.cfg)

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of the environment's action space."""
        from torchwm.envs import make

        env = make(self.cfg.env.id, image_size=self.cfg.image_size)
        try:
            return env.action_space.low.copy(), env.action_space.high.copy()
        finally:
            env.close()

    # -------------------------------------------------------------------------------------- training
    def train(self) -> dict[str, Any]:
        """Train (or resume training) and return the final metrics (also in ``run_dir/metrics.json``)."""
        if self.cfg.dataset == "imagefolder":
            return self._pretrain()
        from torchwm.training import Trainer
        from torchwm.world_model import build_world_model

        cfg = self.cfg
        self._prepare_run_dir()
        store = self.collect()
        train_set, heldout = self._datasets(store)
        low, high = self.action_bounds()
        torch.manual_seed(cfg.seed)  # the initial weights follow the config's seed
        model = build_world_model(cfg, low, high)
        steps = cfg.train.steps or cfg.epochs * (len(train_set) // cfg.batch_size)
        evaluator = self._held_out_evaluator(store, train_set, heldout)
        trainer = Trainer(model, train_set, self._settings(steps), self.run_dir,
                          batch_fn=lambda w: (w.frames, w.actions), device=self.device,
                          evaluate=evaluator, visualize=evaluator.figures,
                          extra_state={"config": cfg.to_dict(), "encoder_spec": dict(model.encoder.spec)})
        try:
            trainer.fit()
            if trainer.writer is not None:
                evaluator.projector(model, trainer.step, trainer.writer)
        finally:
            trainer.close()
        self.world_model = model
        return self._finish(trainer)

    def _pretrain(self) -> dict[str, Any]:
        """I-JEPA pretraining of the spatial encoder on ``root_path/image_folder``."""
        from torchwm.data.images import SeededSamples, open_image_folder, train_transform
        from torchwm.eval.classification import ImageProbeEvaluator
        from torchwm.pretrain.ijepa import build_ijepa, mask_sampler_for
        from torchwm.training import Trainer

        cfg, p = self.cfg, self.cfg.pretrain
        self._prepare_run_dir()
        images = open_image_folder(cfg.root_path, cfg.image_folder,
                                   train_transform(cfg.image_size, (p.crop_scale_min, 1.0)))
        torch.manual_seed(cfg.seed)  # the initial weights follow the config's seed
        model = build_ijepa(cfg)
        masks = mask_sampler_for(cfg, model.encoder.grid_size)
        steps = cfg.train.steps or cfg.epochs * max(len(images) // cfg.batch_size, 1)
        evaluator = ImageProbeEvaluator.for_config(cfg, self.device)
        settings = self._settings(steps, weight_decay_end=p.weight_decay_end, seeded_samples=True)
        trainer = Trainer(model, SeededSamples(images), settings, self.run_dir,
                          batch_fn=lambda batch: (batch[0], masks(batch[0].shape[0])), device=self.device,
                          evaluate=evaluator, extra_state={"config": cfg.to_dict()})
        try:
            trainer.fit()
        finally:
            trainer.close()
        self.ijepa = model
        metrics = self._finish(trainer)
        self.mask_figure()
        return metrics

    def rollout_figures(self, projector: bool = True) -> Path:
        """World-model run: the latent-rollout views of training (PCA of predicted vs actual trajectories,
        error by horizon step, "imagined" retrieval strip) and the embedding projector, for the loaded
        model, without training. Writes ``run_dir/figures/*.png`` and TensorBoard; returns the folder."""
        model = self._require_model()
        store = self.collect()
        evaluator = self._held_out_evaluator(store, *self._datasets(store))
        step = self.trained_steps
        folder = self.run_dir / "figures"
        with self._writer() as writer:
            evaluator.figures(model, step, writer, save_dir=folder)
            if projector and writer is not None:
                evaluator.projector(model, step, writer)
        return folder

    @property
    def trained_steps(self) -> int:
        """Optimiser steps of the trained or loaded model (0 before training): the step figures are logged at."""
        return int(self.metrics.get("steps", 0))

    def _writer(self):
        """A ``SummaryWriter`` on the run directory (a null context when TensorBoard is off)."""
        import contextlib

        if not self.cfg.logging.tensorboard:
            return contextlib.nullcontext(None)
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir))

    def mask_figure(self, count: int = 8, folder: str | Path | None = None) -> Path:
        """I-JEPA: masks sampled as in training, drawn over ``count`` images (context green, targets red).

        Images come from ``folder`` (default: the training folder, resized and centre-cropped). Saves
        ``run_dir/figures/masks.png`` and logs it to TensorBoard (``masks/examples``); returns the path.
        """
        from torchwm.data.images import ImageFiles, eval_transform
        from torchwm.pretrain.ijepa import mask_sampler_for
        from torchwm.viz.masks import save_mask_figure

        cfg = self.cfg
        folder = Path(folder) if folder is not None else Path(cfg.root_path) / cfg.image_folder
        files = ImageFiles(folder, eval_transform(cfg.image_size))
        picks = np.random.default_rng(cfg.seed).choice(len(files), min(count, len(files)), replace=False)
        images = torch.stack([files[int(i)][0] for i in sorted(picks)])
        grid = (cfg.image_size // cfg.patch_size,) * 2
        masks = mask_sampler_for(cfg, grid)(len(images), torch.Generator().manual_seed(cfg.seed))
        step = self.trained_steps
        with self._writer() as writer:
            return save_mask_figure(images, masks, self.run_dir / "figures" / "masks.png", writer, step)

    def _finish(self, trainer) -> dict[str, Any]:
        from torchwm.training import read_metrics, write_json

        self.metrics = {k: v for record in read_metrics(self.run_dir) for k, v in record.items()}
        self.metrics["steps"] = trainer.step
        write_json(self.run_dir / "metrics.json", self.metrics)
        if self.cfg.logging.tensorboard:
            from torchwm.viz.summary import log_run_summary

            log_run_summary(self.run_dir, self.cfg.to_dict(), self.metrics, trainer.step)
        self.save()
        return self.metrics

    def _settings(self, steps: int, **extra: Any):
        from torchwm.training import TrainSettings

        c, t = self.cfg, self.cfg.train
        return TrainSettings(
            total_steps=steps, batch_size=c.batch_size, learning_rate=c.learning_rate,
            warmup_steps=min(t.warmup_steps, steps // 2), min_lr_ratio=t.min_lr_ratio,
            weight_decay=t.weight_decay, grad_clip=t.grad_clip, seed=c.seed, log_every=c.logging.log_every,
            metrics_every=t.metrics_every, eval_every=t.eval_every, checkpoint_every=t.checkpoint_every,
            loader_workers=c.data.loader_workers, progress=c.logging.progress, tensorboard=c.logging.tensorboard,
            **extra)

    def _datasets(self, store):
        from torchwm.data import TrajectoryWindows, split_episodes

        c = self.cfg
        train_eps, heldout_eps = split_episodes(store, c.data.heldout_fraction, seed=c.seed)
        length = c.train.sequence_length or c.model.history + c.predict_horizon
        train_set = TrajectoryWindows(store, c.model.history, length - c.model.history, episodes=train_eps)
        heldout = (TrajectoryWindows(store, c.model.history, 2 * c.predict_horizon, episodes=heldout_eps)
                   if heldout_eps else None)
        return train_set, heldout

    def _held_out_evaluator(self, store, train_set, heldout):
        from torchwm.eval.heldout import HeldOutEvaluator

        c = self.cfg
        return HeldOutEvaluator(c.env.id, store, train_set, heldout, c.model.history, self.device, seed=c.seed)

    def _prepare_run_dir(self) -> None:
        """Write config.yaml; refuse to resume a run whose training settings differ."""
        path = self.run_dir / CONFIG_FILE
        if path.exists() and (self.run_dir / "checkpoints").exists():
            old = JEPAConfig.load(path).to_dict()
            new = self.cfg.to_dict()
            changed = [f"{section}: {old.get(section)!r} -> {new.get(section)!r}"
                       for section in new if section not in _RESUMABLE_SECTIONS and old.get(section) != new[section]]
            if changed:
                raise ValueError(f"{self.run_dir} holds a run with a different config; resuming would mix two "
                                 "experiments. Use a new logging.run_dir, or delete the old run. Differences:\n  "
                                 + "\n  ".join(changed))
        self.cfg.save(path)

    # -------------------------------------------------------------------------------------- planning
    def _require_model(self):
        if self.world_model is None:
            raise RuntimeError("no world model: call train() or JEPAAgent.load(run_dir) first")
        return self.world_model

    def planner(self):
        """The planner ``cfg.planning`` describes (CEM or MPPI)."""
        from torchwm.planning import make_planner

        p = self.cfg.planning
        kwargs: dict[str, Any] = dict(samples=p.samples, iterations=p.iterations, horizon=p.horizon,
                                      init_std=p.init_std, cost=p.cost, cost_steps=p.cost_steps)
        if p.planner == "cem":
            kwargs["elites"] = p.elites
        else:
            kwargs["temperature"] = p.temperature
        return make_planner(p.planner, **kwargs)

    def controller(self):
        """A warm-started MPC controller (:class:`~torchwm.planning.MPCController`) for E episodes at once."""
        from torchwm.planning import MPCController

        return MPCController(self._require_model(), self.planner(), execute_steps=self.cfg.planning.execute_steps)

    @torch.no_grad()
    def plan(self, frames_history: Any, goal_image: Any) -> np.ndarray:
        """One planning call: ``frames_history`` uint8 ``(h, 3, H, W)`` (or one frame ``(3, H, W)``; older
        frames are padded by repeating the first) and ``goal_image`` ``(3, H, W)`` → the first action ``(A,)``.

        Stateless (no warm start); for closed-loop control use :meth:`controller`.
        """
        model = self._require_model()
        frames = torch.as_tensor(np.asarray(frames_history), device=self.device)
        if frames.dim() == 3:
            frames = frames[None]
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (3, self.cfg.image_size, self.cfg.image_size):
            raise ValueError(f"frames_history must be (h, 3, {self.cfg.image_size}, {self.cfg.image_size}), "
                             f"got {tuple(frames.shape)}")
        h = model.history
        frames = torch.cat([frames[:1].expand(max(h - len(frames), 0), -1, -1, -1), frames])[-h:]
        goal = torch.as_tensor(np.asarray(goal_image), device=self.device)
        context = model.context(model.encode(frames)[None])
        result = self.planner().plan(model, context, model.encode(goal[None]), model.action_low, model.action_high)
        return result.actions[0, 0].cpu().numpy()

    def evaluate(self, episodes: int | None = None, seed: int | None = None, parallel: int | None = None,
                 baseline: bool = True, videos: int | None = None):
        """Goal-reaching episodes with the planner (and a random-policy baseline on the same starts and goals).

        Writes ``run_dir/eval/goal_reaching.json`` and GIFs ``run_dir/eval/videos/*.gif`` (observation
        beside the goal), logs success rates and videos to TensorBoard, and returns the
        :class:`~torchwm.eval.goal_reaching.GoalReaching` results (``print(result)`` shows a table).
        """
        from torchwm.envs import make
        from torchwm.eval.goal_reaching import GoalReaching, RandomPolicy, episode_seeds, run_episodes, save_gif
        from torchwm.training import write_json

        c, p = self.cfg, self.cfg.planning
        model = self._require_model()
        episodes = p.eval_episodes if episodes is None else episodes
        seed = c.seed if seed is None else seed
        parallel = p.parallel if parallel is None else parallel
        videos = p.videos if videos is None else videos
        seeds = episode_seeds(seed, episodes)

        def make_env():
            return make(c.env.id, image_size=c.image_size, action_repeat=c.env.action_repeat, camera=c.env.camera,
                        goal_steps=c.env.goal_steps)

        result = GoalReaching(c.env.id, seeds, p.episode_steps)
        controller = self.controller()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)  # the planner's samples: the same seed gives the same evaluation
            traces: list[dict[str, np.ndarray]] = []
            result.results["planner"], clips = run_episodes(
                make_env, _NumpyController(controller), seeds, p.episode_steps, parallel=parallel, record=videos,
                progress=c.logging.progress, desc=f"plan ({p.planner})", traces=traces)
        if baseline:
            low, high = model.action_low.cpu().numpy(), model.action_high.cpu().numpy()
            result.results["random"], _ = run_episodes(
                make_env, RandomPolicy(low, high, seed), seeds, p.episode_steps, parallel=parallel,
                progress=c.logging.progress, desc="random")
        out = self.run_dir / "eval"
        write_json(out / "goal_reaching.json", {**result.to_dict(), "planning": c.to_dict()["planning"]})
        paths = [save_gif(v, out / "videos" / f"episode_{i:02d}.gif") for i, v in enumerate(clips)]
        self._log_evaluation(result, clips, traces)
        self.evaluation, self.videos = result, paths
        return result

    def _log_evaluation(self, result, clips: list[np.ndarray], traces: list[dict[str, np.ndarray]]) -> None:
        if not self.cfg.logging.tensorboard:
            return
        from torchwm.viz.planning import episode_trace_figure

        step = self.trained_steps
        with self._writer() as writer:
            for name, r in result.results.items():
                writer.add_scalar(f"goal_reaching/{name}_success_rate", r.rate, step)
                writer.add_scalar(f"goal_reaching/{name}_final_distance", float(r.final_distance.mean()), step)
            writer.add_scalar("goal_reaching/ms_per_step", result.results["planner"].ms_per_step, step)
            for i, clip in enumerate(clips):  # frames as an image strip (add_video needs moviepy)
                strip = clip[:: max(1, len(clip) // 10)][:10]
                writer.add_images(f"goal_reaching/episode_{i:02d}", strip, step, dataformats="NHWC")
            for i, trace in enumerate(traces):
                writer.add_figure(f"goal_reaching/episode_{i:02d}_cost", episode_trace_figure(trace), step)
            writer.add_text("goal_reaching/results", result.table(), step)

    # ---------------------------------------------------------------------------------- save / load
    def save(self, path: str | Path | None = None) -> Path:
        """Write the trained model atomically; returns the path.

        The file holds the config, the whole model's weights (``model``) and the spatial encoder on its own
        (``encoder_spec`` + ``encoder``: what :func:`torchwm.load_backbone` and ``model.pretrained``
        read). For I-JEPA the encoder is the EMA target encoder.
        """
        model = self.world_model if self.world_model is not None else self.ijepa
        if model is None:
            raise RuntimeError("nothing to save: call train() or JEPAAgent.load() first")
        encoder = model.backbone
        path = Path(path) if path is not None else self.run_dir / MODEL_FILE
        state = {"config": self.cfg.to_dict(), "kind": "world_model" if self.world_model is not None else "ijepa",
                 "model": model.state_dict(), "encoder_spec": dict(encoder.spec), "encoder": encoder.state_dict()}
        return atomic_torch_save(state, path)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None) -> JEPAAgent:
        """The agent of a finished (``model.pt``) or interrupted (``checkpoints/last.pt``) run."""
        from torchwm.backbone import find_model_file

        run_dir = Path(run_dir)
        state = torch.load(find_model_file(run_dir), map_location="cpu", weights_only=True)
        cfg = JEPAConfig.from_dict(state["config"])
        cfg.logging.run_dir = str(run_dir)
        if device is not None:
            cfg.device = device
        agent = cls(cfg, check_paths=False)
        if (run_dir / "metrics.json").exists():
            import json

            agent.metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        model = model_from_state(cfg, state).to(agent.device).eval()
        if cfg.dataset == "imagefolder":
            agent.ijepa = model
        else:
            agent.world_model = model
        return agent


def model_from_state(cfg: JEPAConfig, state: dict[str, Any]):
    """The trained model of a saved run (``model.pt`` or a trainer checkpoint) with its weights loaded:
    an :class:`~torchwm.pretrain.ijepa.IJEPA` for image pretraining, else a world model. The saved encoder
    spec, when present, rebuilds the encoder (a ``model.pretrained`` file need not exist any more)."""
    weights = state["model"]
    if cfg.dataset == "imagefolder":
        from torchwm.pretrain.ijepa import build_ijepa

        model = build_ijepa(cfg)
    else:
        from torchwm.nn.encoders import SpatialEncoder
        from torchwm.world_model import build_world_model

        encoder = SpatialEncoder.from_spec(state["encoder_spec"]) if "encoder_spec" in state else None
        model = build_world_model(cfg, weights["action_low"], weights["action_high"], encoder=encoder)
    model.load_state_dict(weights)
    return model


class _NumpyController:
    """Adapts :class:`~torchwm.planning.MPCController` (tensors) to the numpy goal-reaching loop."""

    def __init__(self, controller) -> None:
        self.controller = controller

    def reset(self, first_frames: np.ndarray, goal_frames: np.ndarray) -> None:
        self.controller.reset(torch.from_numpy(first_frames), torch.from_numpy(goal_frames))

    def act(self, frames: np.ndarray) -> np.ndarray:
        return self.controller.act(torch.from_numpy(frames)).cpu().numpy()

    def last_costs(self) -> np.ndarray:
        """The latest plan's predicted cost per episode ``(E,)``."""
        return self.controller.plan_costs[-1].float().cpu().numpy()

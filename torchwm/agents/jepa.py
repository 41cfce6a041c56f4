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

MODEL_FILE = "model.pt"
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
            raise NotImplementedError("dataset='imagefolder' (I-JEPA pretraining) is not available in this "
                                      "version; use dataset='trajectories'")
        from torchwm.world_model import build_world_model
        from torchwm.training import Trainer, read_metrics, write_json

        cfg = self.cfg
        self._prepare_run_dir()
        store = self.collect()
        train_set, heldout = self._datasets(store)
        low, high = self.action_bounds()
        model = build_world_model(cfg, low, high)
        steps = cfg.train.steps or cfg.epochs * (len(train_set) // cfg.batch_size)
        evaluator = _HeldOutEvaluator(cfg, store, train_set, heldout, self.device)
        trainer = Trainer(model, train_set, self._settings(steps), self.run_dir,
                          batch_fn=lambda w: (w.frames, w.actions), device=self.device,
                          evaluate=evaluator, extra_state={"config": cfg.to_dict()})
        try:
            trainer.fit()
        finally:
            trainer.close()
        self.world_model = model
        self.metrics = {k: v for record in read_metrics(self.run_dir) for k, v in record.items()}
        self.metrics["steps"] = trainer.step
        write_json(self.run_dir / "metrics.json", self.metrics)
        self.save()
        return self.metrics

    def _settings(self, steps: int):
        from torchwm.training import TrainSettings

        c, t = self.cfg, self.cfg.train
        return TrainSettings(
            total_steps=steps, batch_size=c.batch_size, learning_rate=c.learning_rate,
            warmup_steps=min(t.warmup_steps, steps // 2), min_lr_ratio=t.min_lr_ratio,
            weight_decay=t.weight_decay, grad_clip=t.grad_clip, seed=c.seed, log_every=c.logging.log_every,
            metrics_every=t.metrics_every, eval_every=t.eval_every, checkpoint_every=t.checkpoint_every,
            loader_workers=c.data.loader_workers, progress=c.logging.progress, tensorboard=c.logging.tensorboard)

    def _datasets(self, store):
        from torchwm.data import TrajectoryWindows, split_episodes

        c = self.cfg
        train_eps, heldout_eps = split_episodes(store, c.data.heldout_fraction, seed=c.seed)
        length = c.train.sequence_length or c.model.history + c.predict_horizon
        train_set = TrajectoryWindows(store, c.model.history, length - c.model.history, episodes=train_eps)
        heldout = (TrajectoryWindows(store, c.model.history, 2 * c.predict_horizon, episodes=heldout_eps)
                   if heldout_eps else None)
        return train_set, heldout

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
            result.results["planner"], clips = run_episodes(
                make_env, _NumpyController(controller), seeds, p.episode_steps, parallel=parallel, record=videos,
                progress=c.logging.progress, desc=f"plan ({p.planner})")
        if baseline:
            low, high = model.action_low.cpu().numpy(), model.action_high.cpu().numpy()
            result.results["random"], _ = run_episodes(
                make_env, RandomPolicy(low, high, seed), seeds, p.episode_steps, parallel=parallel,
                progress=c.logging.progress, desc="random")
        out = self.run_dir / "eval"
        write_json(out / "goal_reaching.json", {**result.to_dict(), "planning": c.to_dict()["planning"]})
        paths = [save_gif(v, out / "videos" / f"episode_{i:02d}.gif") for i, v in enumerate(clips)]
        self._log_evaluation(result, clips)
        self.evaluation, self.videos = result, paths
        return result

    def _log_evaluation(self, result, clips: list[np.ndarray]) -> None:
        if not self.cfg.logging.tensorboard:
            return
        from torch.utils.tensorboard import SummaryWriter

        step = int(self.metrics.get("steps", 0)) if self.metrics else 0
        with SummaryWriter(str(self.run_dir)) as writer:
            for name, r in result.results.items():
                writer.add_scalar(f"goal_reaching/{name}_success_rate", r.rate, step)
                writer.add_scalar(f"goal_reaching/{name}_final_distance", float(r.final_distance.mean()), step)
            writer.add_scalar("goal_reaching/ms_per_step", result.results["planner"].ms_per_step, step)
            for i, clip in enumerate(clips):  # frames as an image strip (add_video needs moviepy)
                strip = clip[:: max(1, len(clip) // 10)][:10]
                writer.add_images(f"goal_reaching/episode_{i:02d}", strip, step, dataformats="NHWC")
            writer.add_text("goal_reaching/results", result.table(), step)

    # ---------------------------------------------------------------------------------- save / load
    def save(self, path: str | Path | None = None) -> Path:
        """Write the trained world model (weights, config, action bounds) atomically; returns the path."""
        if self.world_model is None:
            raise RuntimeError("nothing to save: call train() or JEPAAgent.load() first")
        path = Path(path) if path is not None else self.run_dir / MODEL_FILE
        state = {"config": self.cfg.to_dict(), "model": self.world_model.state_dict(),
                 "action_low": self.world_model.action_low.cpu(), "action_high": self.world_model.action_high.cpu()}
        return atomic_torch_save(state, path)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None) -> JEPAAgent:
        """The agent of a finished (``model.pt``) or interrupted (``checkpoints/last.pt``) run."""
        from torchwm.training import CHECKPOINT_DIR, LAST_CHECKPOINT
        from torchwm.world_model import build_world_model

        run_dir = Path(run_dir)
        candidates = [run_dir / MODEL_FILE, run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT]
        found = next((p for p in candidates if p.exists()), None)
        if found is None:
            raise FileNotFoundError(f"{run_dir}: no trained model (looked for {candidates[0]} and {candidates[1]})")
        state = torch.load(found, map_location="cpu", weights_only=True)
        cfg = JEPAConfig.from_dict(state["config"])
        cfg.logging.run_dir = str(run_dir)
        if device is not None:
            cfg.device = device
        agent = cls(cfg, check_paths=False)
        weights = state["model"]
        low = weights["action_low"].numpy()
        high = weights["action_high"].numpy()
        model = build_world_model(cfg, low, high)
        model.load_state_dict(weights)
        agent.world_model = model.to(agent.device).eval()
        return agent


class _NumpyController:
    """Adapts :class:`~torchwm.planning.MPCController` (tensors) to the numpy goal-reaching loop."""

    def __init__(self, controller) -> None:
        self.controller = controller

    def reset(self, first_frames: np.ndarray, goal_frames: np.ndarray) -> None:
        self.controller.reset(torch.from_numpy(first_frames), torch.from_numpy(goal_frames))

    def act(self, frames: np.ndarray) -> np.ndarray:
        return self.controller.act(torch.from_numpy(frames)).cpu().numpy()


class _HeldOutEvaluator:
    """Every ``eval_every`` steps: prediction error per step up to 2H vs copy-last, and a linear probe.

    Uses fixed subsets (same windows and frames every time) so the curves are comparable.
    """

    MAX_WINDOWS = 256
    MAX_PROBE_FRAMES = 2000

    def __init__(self, cfg: JEPAConfig, store, train_set, heldout, device: torch.device) -> None:
        from torchwm.eval.probes import probe_targets

        self.cfg, self.device, self.heldout = cfg, device, heldout
        rng = np.random.default_rng(cfg.seed)
        if heldout is not None:
            self.windows = np.sort(rng.choice(len(heldout), min(len(heldout), self.MAX_WINDOWS), replace=False))
        self.train_frames, self.train_states = _sample_frames(store, train_set.episodes, self.MAX_PROBE_FRAMES, rng)
        heldout_eps = heldout.episodes if heldout is not None else []
        self.test_frames, self.test_states = (_sample_frames(store, heldout_eps, self.MAX_PROBE_FRAMES // 2, rng)
                                              if heldout_eps else (None, None))
        self.train_targets = probe_targets(cfg.env.id, self.train_states)
        self.test_targets = probe_targets(cfg.env.id, self.test_states) if self.test_states is not None else None

    @torch.no_grad()
    def __call__(self, model, step: int) -> dict[str, float]:
        from torchwm.eval.prediction import prediction_errors
        from torchwm.eval.probes import LinearProbe

        out: dict[str, float] = {}
        if self.heldout is not None:
            errors = prediction_errors(model, self._batches(), self.cfg.model.history)
            out.update(errors.as_scalars("eval"))
        z_train = _embed(model, self.train_frames, self.device)
        probe = LinearProbe().fit(z_train, self.train_targets)
        if self.test_frames is not None:
            out["eval/probe_r2"] = probe.r2(_embed(model, self.test_frames, self.device), self.test_targets)
        out["eval/probe_r2_train"] = probe.r2(z_train, self.train_targets)
        return out

    def _batches(self):
        size = 64
        for start in range(0, len(self.windows), size):
            items = [self.heldout[int(i)] for i in self.windows[start: start + size]]
            frames = torch.stack([w.frames for w in items]).to(self.device)
            actions = torch.stack([w.actions for w in items]).to(self.device)
            yield frames, actions


def _sample_frames(store, episodes, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` random ``(frame, state)`` pairs from ``episodes`` of ``store`` (uint8, float64)."""
    pairs = [(ep, t) for ep in episodes for t in range(store.lengths[ep] + 1)]
    chosen = sorted(rng.choice(len(pairs), min(count, len(pairs)), replace=False))
    by_episode: dict[int, list[int]] = {}
    for i in chosen:
        ep, t = pairs[i]
        by_episode.setdefault(ep, []).append(t)
    frames, states = [], []
    for ep, steps in by_episode.items():  # one memory map per episode, fancy-indexed once
        episode = store.episode(ep)
        frames.append(np.asarray(episode.frames[steps]))
        states.append(np.asarray(episode.states[steps]))
    return np.concatenate(frames), np.concatenate(states)


@torch.no_grad()
def _embed(model, frames: np.ndarray, device: torch.device, batch: int = 256) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` → ``(N, D)`` with the model's encoder, in batches."""
    out = [model.encode(torch.from_numpy(frames[i: i + batch]).to(device)) for i in range(0, len(frames), batch)]
    return torch.cat(out).cpu()

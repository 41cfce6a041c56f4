"""World-model training and zero-shot planning from collected trajectories, as one job's agent.

The only code that turns the world-model part of a config (``env``, ``data``, ``model``, ``train``,
``planning`` and the top-level sizes) into objects: the collection spec and store, the training windows,
the model, the trainer's evaluator, the planner and the evaluation environments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwm import distributed
from torchwm.agents.base import JEPAAgent, model_alias
from torchwm.agents.trajectory_data import TrajectoryData
from torchwm.config import JEPAConfig
from torchwm.nn.encoders import SpatialEncoder
from torchwm.world_model import WorldModel, build_world_model


class WorldModelAgent(TrajectoryData, JEPAAgent, job="world_model"):
    """Collect → train → plan / evaluate (``dataset: trajectories``); ``model`` is the trained
    :class:`~torchwm.world_model.WorldModel` (also ``world_model``)."""

    world_model = model_alias("the trained or loaded :class:`~torchwm.world_model.WorldModel` (None before)")

    # ------------------------------------------------------------------------------------------ data
    @property
    def sequence_length(self) -> int:
        """Frames per training sequence (:attr:`JEPAConfig.training_sequence_length`)."""
        return self.cfg.training_sequence_length

    def datasets(self, store, horizon: int | None = None):
        """``(train windows, held-out windows or None)``: training sequences of :attr:`sequence_length` frames
        from the training episodes; held-out windows of history + 2 x horizon frames (``horizon``: the one training
        decided, default ``predict_horizon``)."""
        from torchwm.data import TrajectoryWindows

        c = self.cfg
        horizon = horizon or c.predict_horizon
        train_eps, heldout_eps = self.split(store)
        k = c.model.action_chunk
        train_set = TrajectoryWindows(store, c.model.history, self.sequence_length, episodes=train_eps, stride=k)
        heldout = (TrajectoryWindows(store, c.model.history, c.model.history + 2 * horizon,
                                     episodes=heldout_eps, stride=k) if heldout_eps else None)
        return train_set, heldout

    def make_env(self):
        """An environment as the config describes it (goals included, for evaluation)."""
        from torchwm.envs import make

        e = self.cfg.env
        return make(e.id, image_size=self.cfg.image_size, action_repeat=e.action_repeat, camera=e.camera,
                    goal_steps=e.goal_steps)

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of the environment's action space."""
        env = self.make_env()
        try:
            return env.action_space.low.copy(), env.action_space.high.copy()
        finally:
            env.close()

    # ----------------------------------------------------------------------------------------- model
    def build_model(self, action_low: Any, action_high: Any, encoder: SpatialEncoder | None = None,
                    within_sequence_std: float | None = None, predict_horizon: int | None = None) -> WorldModel:
        """The world model the config describes for these action bounds ``(A,)``; ``within_sequence_std`` and
        ``predict_horizon`` override the config's (training passes what :meth:`decide` found in the data).

        The spatial encoder is ``encoder`` when given; else, with ``model.pretrained`` set, the encoder saved
        there (its architecture comes with its weights: ``model.encoder`` and the ViT sizes are not used);
        else a new one. New weights are drawn from torch's global RNG.
        """
        from torchwm.backbone import pretrained_encoder

        c, m, t = self.cfg, self.cfg.model, self.cfg.train
        if encoder is None and m.pretrained:
            encoder = pretrained_encoder(m.pretrained, c.image_size)
        if encoder is None:
            encoder = self.spatial_encoder()
        return build_world_model(encoder, action_low, action_high, history=m.history,
                                 horizon=predict_horizon or c.predict_horizon,
                                 temporal_hidden=m.temporal_hidden, predictor_hidden=m.predictor_hidden,
                                 predictor_depth=m.predictor_depth, action_chunk=m.action_chunk,
                                 var_weight=t.var_weight, cov_weight=t.cov_weight,
                                 ema_momentum=t.ema_momentum if t.ema else None,
                                 vicreg_within_sequence=t.vicreg_within_sequence,
                                 within_sequence_std=(t.within_sequence_std if within_sequence_std is None
                                                      else within_sequence_std), freeze_encoder=m.freeze_encoder,
                                 regularizer=t.regularizer, sigreg_weight=t.sigreg_weight,
                                 sigreg_directions=t.sigreg_directions, sigreg_proj_dim=t.sigreg_proj_dim,
                                 smoothness_weight=t.smoothness_weight)

    def _decided_settings(self, model: WorldModel) -> dict[str, Any]:
        """The variance hinge's floor and the training horizon that :meth:`decide` found in the data (the loss of a
        loaded model is then the loss it was trained with)."""
        return {"within_sequence_std": model.within_sequence_std, "predict_horizon": model.horizon}

    def _model_from_state(self, state: dict[str, Any]) -> WorldModel:
        """The saved encoder spec rebuilds the encoder (a ``model.pretrained`` file need not exist any more);
        the floor and horizon training decided come back from what was saved as decided (files without them: the
        config's)."""
        weights = state["model"]
        encoder = SpatialEncoder.from_spec(state["encoder_spec"]) if "encoder_spec" in state else None
        decided = state.get("decided", {})
        model = self.build_model(weights["action_low"], weights["action_high"], encoder=encoder,
                                 within_sequence_std=decided.get("within_sequence_std"),
                                 predict_horizon=decided.get("predict_horizon"))
        model.load_state_dict(weights)
        return model

    # -------------------------------------------------------------------------------------- training
    def train(self) -> dict[str, Any]:
        """Collect (or reuse) the data, train (or resume) the world model; returns the final metrics."""
        self._prepare_run_dir()
        store = self.collect()
        decided = self.decide(store)
        train_set, heldout = self.datasets(store, horizon=decided["predict_horizon"])
        low, high = self.action_bounds()
        torch.manual_seed(self.cfg.seed)  # the initial weights follow the config's seed
        model = self.build_model(low, high, **decided)
        evaluator = self._held_out_evaluator(store, train_set, heldout)
        trainer = self._trainer(model, train_set, self._total_steps(len(train_set)),
                                batch_fn=lambda w: (w.frames, w.actions), evaluate=evaluator,
                                visualize=evaluator.figures)

        def after_fit(trainer) -> None:
            self._fit_whitening(model, store)
            if trainer.writer is not None:
                evaluator.projector(model, trainer.step, trainer.writer)

        return self._fit(model, trainer, after_fit=after_fit)

    def decide(self, store) -> dict[str, Any]:
        """What ``train.window_motion_threshold`` decides from ``store``'s training episodes, as
        :meth:`build_model`'s keywords: where a training window sees at least that share of an episode's motion (a
        fast body) ``within_sequence_std`` 0 and ``predict_horizon``; else (a slow body) ``train.within_sequence_std``
        and ``train.slow_predict_horizon`` (when set). With the threshold 0: the config's values."""
        from torchwm.data.statistics import window_motion_share

        c, t = self.cfg, self.cfg.train
        if t.window_motion_threshold <= 0:
            return {"within_sequence_std": t.within_sequence_std, "predict_horizon": c.predict_horizon}
        share = window_motion_share(store, self.split(store)[0], self.sequence_length)
        fast = share >= t.window_motion_threshold
        horizon = c.predict_horizon if fast else (t.slow_predict_horizon or c.predict_horizon)
        if distributed.is_main():
            print(f"train.window_motion_threshold {t.window_motion_threshold:g}: a {self.sequence_length}-frame window "
                  f"sees {share:.3f} of an episode's motion, so "
                  + ("the variance hinge stays on the within-sequence deviations (within_sequence_std 0)" if fast
                     else f"it is over the batch, with a floor of {t.within_sequence_std:g} within sequences")
                  + f"; the model trains {horizon} steps ahead", flush=True)
        return {"within_sequence_std": 0.0 if fast else t.within_sequence_std, "predict_horizon": horizon}

    def _fit_whitening(self, model: WorldModel, store, limit: int = 100) -> None:
        """Fit the model's step whitening (:meth:`WorldModel.fit_whitening`) on up to ``limit`` training episodes,
        a step being one predictor step (``model.action_chunk`` agent steps)."""
        from torchwm.eval.state_probe import embed_frames

        indices = self.split(store)[0]
        was_training = model.training
        model.eval()
        k = model.action_chunk
        model.fit_whitening(embed_frames(model.encode, np.array(store.episode(i).frames[::k]), self.device)  # disk
                            for i in list(indices)[:limit])
        model.train(was_training)

    def _held_out_evaluator(self, store, train_set, heldout):
        from torchwm.eval.heldout import HeldOutEvaluator

        c = self.cfg
        return HeldOutEvaluator(c.env.id, store, train_set, heldout, c.model.history, self.device, seed=c.seed)

    def describe(self, metrics: dict[str, Any]) -> str:
        keys = sorted((k for k in metrics if k.startswith("eval/pred_over_copy_step")),
                      key=lambda k: int(k.rsplit("step", 1)[1]))
        ratios = ", ".join(f"{metrics[k]:.2f}" for k in keys)
        return (f"trained {metrics.get('steps', 0)} steps; held-out prediction error / copy-last per step: [{ratios}]; "
                f"probe R^2 {metrics.get('eval/probe_r2', float('nan')):.3f}; model: {self.run.model}")

    def visualize(self, images: str | Path | None = None, count: int | None = None) -> list[Path]:
        """The latent-rollout views of training (PCA of predicted vs actual trajectories, error by horizon
        step, "imagined" retrieval strip) and the embedding projector, for the trained or loaded model.
        Writes ``run_dir/figures/*.png`` and TensorBoard. ``images`` and ``count`` are for image runs."""
        if images is not None:
            raise ValueError("images: a world model draws its rollouts on its held-out episodes; a folder of "
                             "images is for the mask figures of image-pretraining runs")
        model = self._require_model()
        store = self.collect()
        evaluator = self._held_out_evaluator(store, *self.datasets(store, horizon=model.horizon))
        with self._writer() as writer:
            views = evaluator.figures(model, self.trained_steps, writer, save_dir=self.run.figures_dir)
            if writer is not None:
                evaluator.projector(model, self.trained_steps, writer)
        return [self.run.figures_dir / f"{tag.split('/')[-1]}.png" for tag in views]

    # -------------------------------------------------------------------------------------- planning
    def planner(self):
        """The planner ``cfg.planning`` describes (CEM or MPPI)."""
        from torchwm.planning import make_planner

        p = self.cfg.planning
        kwargs: dict[str, Any] = dict(samples=p.samples, iterations=p.iterations, horizon=p.horizon,
                                      init_std=p.init_std, cost=p.cost, cost_steps=p.cost_steps)
        if p.whiten:
            model = self._require_model()
            if model.whitening is None:  # a model trained before the whitening existed: fit it on its data now
                print("planning.whiten: fitting the model's step whitening on its training episodes", flush=True)
                self._fit_whitening(model, self.collect())
            kwargs["whitening"] = model.whitening
        if p.planner == "cem":
            kwargs["elites"] = p.elites
        else:
            kwargs["temperature"] = p.temperature
        return make_planner(p.planner, **kwargs)

    def episode_steps(self) -> int:
        """The step budget of a goal-reaching episode: ``planning.episode_steps``, or for 0 the domain's."""
        from torchwm.envs.registry import env_domain

        return self.cfg.planning.episode_steps or env_domain(self.cfg.env.id).episode_steps

    def controller(self):
        """A warm-started MPC controller (:class:`~torchwm.planning.MPCController`) for E episodes at once."""
        from torchwm.planning import MPCController

        return MPCController(self._require_model(), self.planner(), execute_steps=self.cfg.planning.execute_steps)

    @torch.no_grad()
    def plan(self, frames_history: Any, goal_image: Any) -> np.ndarray:
        """One planning call: ``frames_history`` uint8 ``(n, 3, H, W)``, the last n observations in step order (or
        one frame ``(3, H, W)``; the model reads the last ``model.context_span`` of them, older ones padded by
        repeating the first) and ``goal_image`` ``(3, H, W)`` → the first action ``(A,)``.

        Stateless (no warm start); for closed-loop control use :meth:`controller`.
        """
        model = self._require_model()
        size = self.cfg.image_size
        frames = torch.as_tensor(np.asarray(frames_history), device=self.device)
        if frames.dim() == 3:
            frames = frames[None]
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (3, size, size):
            raise ValueError(f"frames_history must be (h, 3, {size}, {size}), got {tuple(frames.shape)}")
        span = model.context_span
        frames = torch.cat([frames[:1].expand(max(span - len(frames), 0), -1, -1, -1), frames])[-span:]
        frames = frames[::model.action_chunk]
        goal = torch.as_tensor(np.asarray(goal_image), device=self.device)
        context = model.context(model.encode(frames)[None])
        result = self.planner().plan(model, context, model.encode(goal[None]), model.action_low, model.action_high)
        return result.actions[0, 0].cpu().numpy()

    def evaluate(self, episodes: int | None = None, seed: int | None = None, parallel: int | None = None,
                 baseline: bool = True, videos: int | None = None):
        """Goal-reaching episodes with the planner (and a random-policy baseline on the same starts and goals).

        Writes ``run_dir/eval/goal_reaching.json`` and GIFs ``run_dir/eval/videos/*.gif`` (observation
        beside the goal); episodes from another ``seed`` than the config's go to ``run_dir/eval/seed-<seed>/``
        instead, so a check on fresh episodes never replaces the run's own evaluation, and planning settings
        other than the run's (its ``config.yaml``) to a folder inside that one named after them, e.g.
        ``eval/seed-2000/horizon=15,whiten=True/`` (``evaluation_dir`` says where they went). Logs success
        rates, planning time and the episodes (as animated GIFs) to TensorBoard, and returns the
        :class:`~torchwm.eval.goal_reaching.GoalReaching` results (``print(result)`` shows a table).
        """
        from torchwm.eval.goal_reaching import GoalReaching, RandomPolicy, episode_seeds, run_episodes, save_gif
        from torchwm.runs import GOAL_REACHING_FILE, write_json

        from torchwm.envs.domains import require_goals

        c, p = self.cfg, self.cfg.planning
        require_goals(c.env.id)
        model = self._require_model()
        episodes = p.eval_episodes if episodes is None else episodes
        seed = c.seed if seed is None else seed
        parallel = p.parallel if parallel is None else parallel
        videos = p.videos if videos is None else videos
        seeds = episode_seeds(seed, episodes)
        steps = self.episode_steps()
        result = GoalReaching(c.env.id, seeds, steps)
        controller = self.controller()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)  # the planner's samples: the same seed gives the same evaluation
            traces: list[dict[str, np.ndarray]] = []
            result.results["planner"], clips = run_episodes(
                self.make_env, _NumpyController(controller), seeds, steps, parallel=parallel,
                record=videos, progress=c.logging.progress, desc=f"plan ({p.planner})", traces=traces)
        if baseline:
            low, high = model.action_low.cpu().numpy(), model.action_high.cpu().numpy()
            result.results["random"], _ = run_episodes(
                self.make_env, RandomPolicy(low, high, seed), seeds, steps, parallel=parallel,
                progress=c.logging.progress, desc="random")
        out = self.run.eval_dir if seed == c.seed else self.run.eval_dir / f"seed-{seed}"
        changed = self._planning_changes()
        if changed:
            out = out / changed
        write_json(out / GOAL_REACHING_FILE, {**result.to_dict(), "planning": c.to_dict()["planning"]})
        paths = [save_gif(v, out / "videos" / f"episode_{i:02d}.gif") for i, v in enumerate(clips)]
        self._log_evaluation(result, clips, traces)
        self.evaluation, self.videos, self.evaluation_dir = result, paths, out
        return result

    def _planning_changes(self) -> str:
        """``"horizon=15,whiten=True"``: the planning fields that differ from the run's saved ``config.yaml``
        (those that change what is planned; not ``videos`` or ``eval_episodes``), ``""`` if none or no run saved."""
        if not self.run.config.exists():
            return ""
        saved = JEPAConfig.load(self.run.config).to_dict()["planning"]
        now = self.cfg.to_dict()["planning"]
        ignored = ("videos", "eval_episodes")
        changed = [f"{k}={now[k]}" for k in sorted(now) if k not in ignored and now[k] != saved.get(k)]
        name = ",".join(changed).replace("/", "_").replace(" ", "")
        if len(name) > 100:  # a folder name a file system keeps: the fields' digest instead
            import hashlib

            name = "planning-" + hashlib.sha1(name.encode()).hexdigest()[:10]
        return name

    def _log_evaluation(self, result, clips: list[np.ndarray], traces: list[dict[str, np.ndarray]]) -> None:
        if not self.cfg.logging.tensorboard:
            return
        from torchwm.viz.planning import episode_trace_figure
        from torchwm.viz.summary import add_gif

        step = self.trained_steps
        with self._writer() as writer:
            for name, r in result.results.items():
                writer.add_scalar(f"goal_reaching/{name}_success_rate", r.rate, step)
                writer.add_scalar(f"goal_reaching/{name}_final_distance", float(r.final_distance.mean()), step)
            planner = result.results["planner"]
            writer.add_scalar("goal_reaching/ms_per_step", planner.ms_per_step, step)  # one batched planner call
            writer.add_scalar("goal_reaching/ms_per_episode_step", planner.ms_per_episode_step, step)
            for i, clip in enumerate(clips):  # every few frames as a strip, and the whole episode as a GIF
                strip = clip[:: max(1, len(clip) // 10)][:10]
                writer.add_images(f"goal_reaching/episode_{i:02d}", strip, step, dataformats="NHWC")
                add_gif(writer, f"goal_reaching/episode_{i:02d}_video", clip, step)
            for i, trace in enumerate(traces):
                writer.add_figure(f"goal_reaching/episode_{i:02d}_cost", episode_trace_figure(trace), step)
            writer.add_text("goal_reaching/results", result.table(), step)


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

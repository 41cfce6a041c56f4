"""Gymnasium wrappers that turn pixel observations into frozen JEPA backbone features.

``JEPAFeatures(env, backbone, frame_history=k)`` wraps a single pixel env (a ``gymnasium.Env``) or a
vector env (a ``gymnasium.vector.VectorEnv``, e.g. ``SyncVectorEnv``) and replaces each pixel frame by
the features of the last ``k`` frames, concatenated oldest → newest: ``(k * D,)`` per env (``D`` =
``backbone.num_features``), ``(num_envs, k * D)`` for a vector env. On reset the history is filled
with the first frame's features.

Frame layout: the observation space must be a ``Box`` of ``uint8`` (0..255) or floats (in [0, 1]).
Its shape is read as channel-first ``(3, H, W)`` when the first axis has size 3, otherwise as
channel-last ``(H, W, 3)`` when the last axis has size 3 (so an ambiguous ``(3, H, 3)`` is
channel-first); anything else raises ``ValueError``.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space
from torch import nn

BackboneLike = nn.Module | str | os.PathLike
SUPPORTED_AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED)


class _FrameEncoder:
    """Frames ``(N, *frame_shape)`` (numpy) → features ``(N, D)`` float32, in one no-grad forward pass."""

    def __init__(self, space: gym.Space, backbone: BackboneLike, device: str | torch.device | None) -> None:
        self.channel_last = _channel_last(space)
        if isinstance(backbone, (str, os.PathLike)):
            from torchwm.backbone import load_backbone

            backbone = load_backbone(backbone, device=device or "cpu")
        if not isinstance(backbone, nn.Module) or not isinstance(getattr(backbone, "num_features", None), int):
            raise TypeError("backbone must be a torchwm Backbone, an nn.Module with an int `num_features`, "
                            f"or a path to a saved model / run directory; got {type(backbone).__name__}")
        if device is not None:
            backbone = backbone.to(device)
        param = next(backbone.parameters(), None)
        self.device = torch.device(device) if device is not None else (param.device if param is not None
                                                                        else torch.device("cpu"))
        self.backbone = backbone.eval()
        self.num_features: int = backbone.num_features

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(frames), device=self.device)
        if self.channel_last:
            x = x.permute(0, 3, 1, 2)
        if x.dtype != torch.uint8:
            x = x.float()
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.inference_mode():
                feats = self.backbone(x.contiguous())
        finally:
            if was_training:
                self.backbone.train()
        if tuple(feats.shape) != (len(x), self.num_features):
            raise RuntimeError(f"backbone returned features of shape {tuple(feats.shape)}, "
                               f"expected ({len(x)}, {self.num_features})")
        return feats.float().cpu().numpy()


def _channel_last(space: gym.Space) -> bool:
    """Whether the pixel ``space`` is channel-last (``(H, W, 3)``); ``ValueError`` if it is no RGB image Box."""
    if not isinstance(space, spaces.Box):
        raise ValueError(f"JEPAFeatures needs a Box observation space of RGB images, got {space}")
    dtype = space.dtype
    if dtype is None or not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"observation space dtype {dtype}: expected uint8 (0..255) or float (in [0, 1])")
    shape = space.shape
    if len(shape) == 3 and shape[0] == 3:
        return False
    if len(shape) == 3 and shape[-1] == 3:
        return True
    raise ValueError(f"observation space shape {shape}: expected an RGB image, (3, H, W) or (H, W, 3)")


def _check_history(frame_history: int) -> int:
    if not isinstance(frame_history, (int, np.integer)) or frame_history < 1:
        raise ValueError(f"frame_history={frame_history!r}: must be an int >= 1")
    return int(frame_history)


def _push(history: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """``history (..., k, D)`` with ``feats (..., D)`` appended as the newest and the oldest dropped."""
    return np.concatenate([history[..., 1:, :], feats[..., None, :]], axis=-2)


def _fill(feats: np.ndarray, frame_history: int) -> np.ndarray:
    """``feats (..., D)`` → a fresh history ``(..., k, D)``: the same features in every slot."""
    return np.repeat(feats[..., None, :], frame_history, axis=-2)


class JEPAFeatures(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Backbone features of the last ``frame_history`` frames instead of pixels.

    Args:
        env: a pixel env (observations ``(3, H, W)`` or ``(H, W, 3)``, uint8 or float in [0, 1]), or a
            ``gymnasium.vector.VectorEnv`` of such envs (then a :class:`JEPAVectorFeatures` is returned).
        backbone: a :class:`torchwm.backbone.Backbone`, any ``nn.Module`` with an int ``num_features``
            mapping ``(N, 3, H, W)`` → ``(N, num_features)``, or a path / run directory for
            :func:`torchwm.backbone.load_backbone`.
        frame_history: ``k >= 1`` frames per observation.
        device: where the backbone runs (it is moved there); default: the backbone's own device.

    Observations: ``float32`` arrays of shape ``(k * D,)``, in ``Box(-inf, inf)``: the features of the
    last ``k`` frames oldest → newest, the history filled with the first frame's features on reset.
    The backbone runs in eval mode under ``torch.inference_mode()``. ``info`` is passed through.
    The constructor arguments are recorded (``gymnasium.utils.RecordConstructorArgs``), so ``env.spec``
    can rebuild the wrapped env (``env.spec.make()``, as ``check_env`` does); the backbone is recorded by
    reference, not copied.
    """

    def __new__(cls, env: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(env, VectorEnv):
            return JEPAVectorFeatures(env, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, env: gym.Env, backbone: BackboneLike, frame_history: int = 1,
                 device: str | torch.device | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, backbone=backbone, frame_history=frame_history, device=device,
                                                 _disable_deepcopy=True)  # share the backbone, never copy it
        gym.ObservationWrapper.__init__(self, env)
        self.frame_history = _check_history(frame_history)
        self.encoder = _FrameEncoder(env.observation_space, backbone, device)
        self.backbone = self.encoder.backbone
        dim = self.frame_history * self.encoder.num_features
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self._history: np.ndarray | None = None  # (k, D)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self._history = None
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """One frame → ``(k * D,)`` features; pushes the frame into the history (fills it after reset)."""
        feats = self.encoder(np.asarray(observation)[None])[0]
        if self._history is None:
            self._history = _fill(feats, self.frame_history)
        else:
            self._history = _push(self._history, feats)
        return self._history.reshape(-1).copy()


class JEPAVectorFeatures(VectorWrapper, gym.utils.RecordConstructorArgs):
    """:class:`JEPAFeatures` for a ``gymnasium.vector.VectorEnv``: all sub-env frames in one forward pass.

    Observations: ``(num_envs, k * D)`` float32 (``single_observation_space``: ``Box((k * D,))``), one
    frame history per sub-env, refilled with a sub-env's first frame whenever that sub-env resets.
    Autoreset modes (``env.metadata["autoreset_mode"]``, NEXT_STEP when absent):

    * ``NEXT_STEP``: the step after a sub-env's termination/truncation returns its reset frame, so its
      history is refilled at that step.
    * ``SAME_STEP``: the ending step returns the reset frame (history refilled) and the final frame in
      ``info["final_obs"]``; that entry is replaced by the final frame's ``(k * D,)`` features (with
      the finished episode's history), encoded in the same forward pass (batch ``num_envs + done``).
    * ``DISABLED``: no autoreset; ``reset(options={"reset_mask": mask})`` refills (and encodes) only
      the masked sub-envs, the others keep their history.

    Subclasses ``VectorWrapper`` rather than ``VectorObservationWrapper``, which refuses SAME_STEP.
    """

    def __init__(self, env: VectorEnv, backbone: BackboneLike, frame_history: int = 1,
                 device: str | torch.device | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, backbone=backbone, frame_history=frame_history, device=device,
                                                 _disable_deepcopy=True)  # share the backbone, never copy it
        VectorWrapper.__init__(self, env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        try:
            mode = AutoresetMode(mode)
        except ValueError:
            mode = None
        if mode not in SUPPORTED_AUTORESET_MODES:
            raise ValueError(f"autoreset_mode {env.metadata.get('autoreset_mode')!r} is not supported; "
                             f"expected one of {[m.value for m in SUPPORTED_AUTORESET_MODES]}")
        self.autoreset_mode: AutoresetMode = mode
        self.frame_history = _check_history(frame_history)
        self.encoder = _FrameEncoder(env.single_observation_space, backbone, device)
        self.backbone = self.encoder.backbone
        dim = self.frame_history * self.encoder.num_features
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._history: np.ndarray | None = None  # (num_envs, k, D)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)  # NEXT_STEP: sub-envs resetting next step

    def _observations(self) -> np.ndarray:
        return self._history.reshape(self.num_envs, -1).copy()

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        mask = None if options is None else options.get("reset_mask")  # read first: SyncVectorEnv pops it
        obs, infos = self.env.reset(seed=seed, options=options)
        obs = np.asarray(obs)
        if mask is None or self._history is None:
            self._history = _fill(self.encoder(obs), self.frame_history)
            self._autoreset[:] = False
        else:
            mask = np.asarray(mask, dtype=bool)
            self._history[mask] = _fill(self.encoder(obs[mask]), self.frame_history)
            self._autoreset[mask] = False
        return self._observations(), infos

    def step(self, actions: Any) -> tuple[np.ndarray, Any, Any, Any, dict[str, Any]]:
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        if self._history is None:
            raise RuntimeError("call reset() before step()")
        obs = np.asarray(obs)
        done = np.logical_or(terminations, truncations)
        final_obs = infos.get("final_obs") if self.autoreset_mode == AutoresetMode.SAME_STEP else None
        ended = np.flatnonzero(done) if final_obs is not None else np.zeros(0, dtype=int)
        frames = np.concatenate([obs, np.stack([final_obs[i] for i in ended])]) if len(ended) else obs
        feats = self.encoder(frames)
        feats, final_feats = feats[:self.num_envs], feats[self.num_envs:]

        if len(ended):  # the finished episodes' last observations, before their histories are refilled
            final_hist = _push(self._history[ended], final_feats).reshape(len(ended), -1)
            encoded = np.full(self.num_envs, None, dtype=object)
            for row, i in enumerate(ended):
                encoded[i] = final_hist[row]
            infos = {**infos, "final_obs": encoded}

        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            refill, self._autoreset = self._autoreset, done
        elif self.autoreset_mode == AutoresetMode.SAME_STEP:
            refill = done
        else:
            refill = np.zeros(self.num_envs, dtype=bool)
        self._history = _push(self._history, feats)
        self._history[refill] = _fill(feats[refill], self.frame_history)
        return self._observations(), rewards, terminations, truncations, infos

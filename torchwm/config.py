"""Experiment configuration: one dataclass of plain values, saved as YAML.

Range and choice rules live in each field's ``metadata`` and are checked by one generic walker
(:func:`_field_problems`); the few rules that relate two fields are explicit in
:meth:`JEPAConfig.validate`. Supported metadata keys:

``min`` / ``max``            inclusive bounds
``gt`` / ``lt``              exclusive bounds
``open_interval: (lo, hi)``  shorthand for ``gt=lo, lt=hi``
``choices: (...)``           allowed string values
``pattern`` + ``allowed``    allowed strings as a regular expression, and how to show them
``nonempty: True``           the string may not be empty
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, TypeVar

import yaml

__all__ = [
    "DataConfig",
    "EnvConfig",
    "JEPAConfig",
    "LoggingConfig",
    "ModelConfig",
    "PlanningConfig",
    "PretrainConfig",
    "TrainConfig",
    "load_config",
]

_T = TypeVar("_T")


def _opt(default: Any, **rules: Any) -> Any:
    """A dataclass field with a default value and declarative validation rules in its metadata."""
    return field(default=default, metadata=rules)


def _section(cls: type) -> Any:
    """A nested-section field."""
    return field(default_factory=cls)


# --------------------------------------------------------------------------------------- sections


@dataclass
class EnvConfig:
    """Environment that trajectories are collected from and goals are posed in."""

    id: str = "dmc:reacher-easy"
    """environment id, ``dmc:<domain>-<task>`` (see ``torchwm.envs.registry.env_ids()``)"""
    action_repeat: int = _opt(1, min=1)
    """times each action is repeated by the environment (>= 1)"""
    camera: int = _opt(-1, min=-1)
    """camera index to render; -1 = the domain's default camera (otherwise >= 0)"""
    goal_steps: int = _opt(25, min=1)
    """rollout goals (reacher): the goal is the state this many env steps ahead on a random-action trajectory (>= 1)"""


@dataclass
class DataConfig:
    """Trajectory collection and loading."""

    path: str = ""
    """trajectory store directory; "" = derived automatically from the env and collection settings"""
    episodes: int = _opt(200, min=1)
    """number of episodes to collect (>= 1)"""
    steps: int = _opt(100, min=1)
    """env steps per collected episode (>= 1)"""
    policy: str = _opt("random", choices=("random", "noise"))
    """collection policy: "random" (i.i.d. uniform actions) or "noise" (temporally correlated)"""
    noise_beta: float = _opt(0.8, min=0.0, lt=1.0)
    """temporal correlation of the "noise" policy, in [0, 1); 0 = i.i.d."""
    workers: int = _opt(2, min=1)
    """parallel collection processes (>= 1)"""
    heldout_fraction: float = _opt(0.1, min=0.0, lt=1.0)
    """fraction of episodes held out for evaluation, in [0, 1)"""
    loader_workers: int = _opt(0, min=0)
    """DataLoader worker processes (>= 0; 0 = load in the main process)"""


@dataclass
class ModelConfig:
    """Encoder architecture."""

    encoder: str = _opt("vit", choices=("vit", "conv", "timm"))
    """spatial encoder: "vit" (patch transformer), "conv" (small CNN) or "timm" (see timm_model)"""
    timm_model: str = ""
    """``timm.create_model`` name, e.g. "resnet18"; required (non-empty) when encoder is "timm"."""
    pretrained: str = ""
    """path of a pretrained spatial encoder checkpoint; "" = train from scratch"""
    history: int = _opt(3, min=1)
    """frames fused by the temporal encoder (>= 1)"""
    conv_width: int = _opt(32, min=1)
    """channels of the conv encoder's first layer; later layers use 2x, 4x, 8x (>= 1)"""
    conv_head: str = _opt("flatten", choices=("flatten", "keypoints"))
    """conv encoder head: "flatten" (final map into a linear layer) or "keypoints" (spatial softmax:
    expected (x, y) of each channel, so body positions become linear features)"""
    keypoints: int = _opt(64, min=1)
    """keypoint channels of the "keypoints" conv head (>= 1)"""
    temporal_hidden: int = _opt(256, min=1)
    """hidden width of the recurrent temporal encoder (>= 1)"""
    predictor_hidden: int = _opt(512, min=1)
    """hidden width of the action-conditioned predictor MLP (>= 1)"""
    predictor_depth: int = _opt(2, min=1)
    """hidden layers of the predictor MLP (>= 1)"""


@dataclass
class TrainConfig:
    """Optimisation of the world model: schedule, loss weights, target encoder, checkpoints."""

    steps: int = _opt(0, min=0)
    """optimisation steps; 0 = ``epochs`` passes over the training sequences (>= 0)"""
    sequence_length: int = _opt(0, min=0)
    """frames per training sequence; every window of history + predict_horizon frames inside it is
    trained on, so each encoded frame serves several predictions; 0 = history + predict_horizon (one window)"""
    warmup_steps: int = _opt(100, min=0)
    """linear learning-rate warm-up steps before the cosine decay (>= 0)"""
    min_lr_ratio: float = _opt(0.05, min=0.0, max=1.0)
    """final learning rate as a fraction of learning_rate, in [0, 1]"""
    weight_decay: float = _opt(0.01, min=0.0)
    """AdamW weight decay on weight matrices (not on biases and norms) (>= 0)"""
    grad_clip: float = _opt(1.0, min=0.0)
    """maximum global gradient norm; 0 = no clipping (>= 0)"""
    var_weight: float = _opt(1.0, min=0.0)
    """weight of the VICReg variance (std hinge) term (>= 0; 0 = off)"""
    cov_weight: float = _opt(0.04, min=0.0)
    """weight of the VICReg covariance term (>= 0; 0 = off)"""
    vicreg_within_sequence: bool = False
    """apply the VICReg terms to each frame's deviation from its training sequence's mean embedding: only
    what changes within an episode then counts, so content constant within one (a task marker, the
    background) cannot meet the variance term (see docs/world_model.md)"""
    ema: bool = False
    """predict the embeddings of an EMA target encoder instead of stop-gradient online embeddings"""
    ema_momentum: float = _opt(0.99, min=0.0, lt=1.0)
    """initial EMA momentum, raised to 1 by a cosine schedule over training, in [0, 1)"""
    eval_every: int = _opt(500, min=1)
    """steps between held-out evaluations (prediction error per horizon step, probes) (>= 1)"""
    metrics_every: int = _opt(100, min=1)
    """steps between collapse metrics (embedding std, effective rank) (>= 1)"""
    checkpoint_every: int = _opt(500, min=1)
    """steps between checkpoints; one is always written at the end (>= 1)"""


@dataclass
class PlanningConfig:
    """Latent-space planning toward a goal image."""

    planner: str = _opt("cem", choices=("cem", "mppi"))
    """optimiser over action sequences: "cem" (cross-entropy method) or "mppi" (path integral)."""
    samples: int = _opt(300, min=1)
    """action sequences sampled per iteration (>= 1)"""
    elites: int = _opt(30, min=1)
    """best sequences kept per iteration (>= 1 and <= samples)"""
    iterations: int = _opt(10, min=1)
    """optimisation iterations per planning step (>= 1)"""
    horizon: int = _opt(5, min=1)
    """planned actions per sequence (>= 1)"""
    init_std: float = _opt(1.0, gt=0.0)
    """initial standard deviation of the action distribution, in normalised action units (> 0)"""
    temperature: float = _opt(0.5, gt=0.0)
    """MPPI softmax temperature over costs (> 0)"""
    cost: str = _opt("l2", choices=("l2", "l1", "cosine"))
    """distance between predicted and goal embeddings: "l2", "l1" or "cosine" (1 - cosine similarity)."""
    cost_steps: str = _opt("final", choices=("final", "all", "min"))
    """embeddings compared to the goal: "final" (last predicted step), "all" (weighted mean over the horizon,
    later steps weighted more) or "min" (the closest predicted step: reach the goal at some step, as a
    success "at any step" asks, without holding it)"""
    execute_steps: int = _opt(1, min=1)
    """planned actions executed before replanning (>= 1 and <= horizon)"""
    episode_steps: int = _opt(50, min=1)
    """step budget of one goal-reaching episode (>= 1)"""
    eval_episodes: int = _opt(100, min=1)
    """goal-reaching episodes per evaluation (>= 1)"""
    parallel: int = _opt(16, min=1)
    """evaluation episodes run side by side, planned in one batch (>= 1)"""
    videos: int = _opt(3, min=0)
    """evaluation episodes saved as GIF (observation beside goal) and logged to TensorBoard (>= 0)"""


@dataclass
class PretrainConfig:
    """I-JEPA image pretraining (dataset == "imagefolder"); the encoder is the top-level ViT."""

    mask: str = _opt("multiblock", choices=("multiblock", "random", "block"))
    """masking: "multiblock" (I-JEPA: target blocks + one context block), "random" (mask_ratio of the
    patches are targets) or "block" (one target block)"""
    num_targets: int = _opt(4, min=1)
    """target blocks per image for "multiblock" (>= 1)"""
    target_scale_min: float = _opt(0.15, gt=0.0, max=1.0)
    """smallest target block, as a fraction of the patches, in (0, 1]"""
    target_scale_max: float = _opt(0.2, gt=0.0, max=1.0)
    """largest target block, as a fraction of the patches, in (0, 1] (>= target_scale_min)"""
    target_aspect_min: float = _opt(0.75, gt=0.0)
    """smallest height/width ratio of a target block (> 0)"""
    target_aspect_max: float = _opt(1.5, gt=0.0)
    """largest height/width ratio of a target block (> 0, >= target_aspect_min)"""
    context_scale_min: float = _opt(0.85, gt=0.0, max=1.0)
    """smallest context block before the targets are removed, as a fraction of the patches, in (0, 1]"""
    context_scale_max: float = _opt(1.0, gt=0.0, max=1.0)
    """largest context block, in (0, 1] (>= context_scale_min)"""
    min_keep: int = _opt(4, min=1)
    """fewest context patches an image may keep (>= 1)"""
    predictor_dim: int = _opt(96, min=1)
    """width of the narrow ViT predictor (>= 1, divisible by predictor_heads)"""
    predictor_depth: int = _opt(4, min=1)
    """transformer blocks in the predictor (>= 1)"""
    predictor_heads: int = _opt(3, min=1)
    """attention heads in the predictor (>= 1)"""
    ema_start: float = _opt(0.996, min=0.0, max=1.0)
    """EMA momentum of the target encoder at the start, raised to ema_end by a cosine schedule, in [0, 1]"""
    ema_end: float = _opt(1.0, min=0.0, max=1.0)
    """EMA momentum at the end of training, in [0, 1]"""
    var_weight: float = _opt(0.0, min=0.0)
    """VICReg variance weight on the images' pooled context embeddings (>= 0; 0 = plain I-JEPA)"""
    cov_weight: float = _opt(0.0, min=0.0)
    """VICReg covariance weight on the pooled context embeddings (>= 0; 0 = plain I-JEPA)"""
    weight_decay_end: float = _opt(0.4, min=0.0)
    """weight decay at the end of training; it rises from train.weight_decay by a cosine schedule (>= 0)"""
    crop_scale_min: float = _opt(0.3, gt=0.0, max=1.0)
    """smallest random-resized-crop area, as a fraction of the image, in (0, 1]"""
    val_folder: str = "val"
    """labelled sub-folder of root_path for the linear-probe / k-NN evaluation ("" or missing: no evaluation)"""
    knn_k: int = _opt(20, min=1)
    """neighbours of the k-NN evaluation (>= 1)"""


@dataclass
class LoggingConfig:
    """Where and how often to log."""

    run_dir: str = _opt("runs/default", nonempty=True)
    """directory for checkpoints, the saved config and logs (non-empty)"""
    tensorboard: bool = True
    """write TensorBoard event files to run_dir"""
    log_every: int = _opt(50, min=1)
    """training steps between log lines (>= 1)"""
    progress: bool = True
    """show progress bars"""


# ------------------------------------------------------------------------------------------- root


@dataclass
class JEPAConfig:
    """Everything one experiment needs, as plain values.

    Example::

        cfg = JEPAConfig()
        cfg.dataset = "imagefolder"
        cfg.root_path = "./data"
        cfg.image_folder = "train"
        cfg.epochs = 100
        cfg.validate()

    ``JEPAConfig.load(path)`` / ``cfg.save(path)`` read and write YAML;
    ``cfg.override(["data.episodes=50", "model.encoder=conv"])`` returns a modified copy.
    """

    dataset: str = _opt("trajectories", choices=("trajectories", "imagefolder"))
    """data source: "trajectories" (frames collected from env.id) or "imagefolder" (root_path/image_folder)"""
    root_path: str = "./data"
    """root directory of the image dataset (dataset == "imagefolder")"""
    image_folder: str = "train"
    """sub-folder of root_path in torchvision ImageFolder layout (one sub-folder per class)"""
    epochs: int = _opt(100, min=1)
    """training epochs (>= 1)"""
    image_size: int = _opt(224, min=1)
    """side of the square input images in pixels (>= 1, divisible by patch_size)"""
    patch_size: int = _opt(16, min=1)
    """side of a ViT patch in pixels (>= 1)"""
    embed_dim: int = _opt(768, min=1)
    """token / embedding width (>= 1, divisible by num_heads)"""
    num_layers: int = _opt(12, min=1)
    """transformer blocks in the encoder (>= 1)"""
    num_heads: int = _opt(12, min=1)
    """attention heads per block (>= 1)"""
    mask_ratio: float = _opt(0.75, open_interval=(0, 1))
    """fraction of patches masked for the predictor, in (0, 1)"""
    predict_horizon: int = _opt(1, min=1)
    """future steps the predictor is trained to roll out (>= 1)"""
    batch_size: int = _opt(64, min=1)
    """samples per optimisation step (>= 1)"""
    learning_rate: float = _opt(1e-4, gt=0.0)
    """peak learning rate of the optimiser (> 0)"""
    seed: int = _opt(0, min=0)
    """random seed for torch, numpy and the environments (>= 0)"""
    device: str = _opt("auto", pattern=r"auto|cpu|mps|cuda(:[0-9]+)?",
                       allowed=("auto", "cpu", "cuda", "cuda:N", "mps"))
    """torch device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps"."""

    env: EnvConfig = _section(EnvConfig)
    """environment settings"""
    data: DataConfig = _section(DataConfig)
    """trajectory collection and loading"""
    model: ModelConfig = _section(ModelConfig)
    """encoder, temporal encoder and predictor architecture"""
    train: TrainConfig = _section(TrainConfig)
    """world-model optimisation"""
    planning: PlanningConfig = _section(PlanningConfig)
    """latent planning and goal-reaching evaluation"""
    pretrain: PretrainConfig = _section(PretrainConfig)
    """I-JEPA image pretraining (masking, predictor, EMA, evaluation)"""
    logging: LoggingConfig = _section(LoggingConfig)
    """run directory and logging"""

    # ------------------------------------------------------------------------------ validation

    def validate(self, check_paths: bool = True) -> JEPAConfig:
        """Check every field; raise one ``ValueError`` listing all problems, one per line.

        ``check_paths`` also requires the image folder (dataset == "imagefolder") and
        ``model.pretrained`` (when set) to exist. Returns ``self``.
        """
        problems = _field_problems(self, "")
        bad = {p.split("=", 1)[0] for p in problems}  # paths that already failed their own rules

        def ok(*paths: str) -> bool:  # all of these fields (and their sections) passed their own rules
            return not any(p == b or p.startswith(b + ".") for p in paths for b in bad)

        # patch and head sizes matter where a ViT is built: the "vit" encoder and image-folder pretraining
        uses_vit = self.dataset == "imagefolder" or not isinstance(self.model, ModelConfig) or self.model.encoder == "vit"
        if uses_vit and ok("image_size", "patch_size") and self.image_size % self.patch_size:
            problems.append(f"image_size={self.image_size!r}, patch_size={self.patch_size!r}: "
                            "image_size must be divisible by patch_size")
        if uses_vit and ok("embed_dim", "num_heads") and self.embed_dim % self.num_heads:
            problems.append(f"embed_dim={self.embed_dim!r}, num_heads={self.num_heads!r}: "
                            "embed_dim must be divisible by num_heads")
        pl = self.planning
        if isinstance(pl, PlanningConfig):
            if ok("planning.elites", "planning.samples") and pl.elites > pl.samples:
                problems.append(f"planning.elites={pl.elites!r}, planning.samples={pl.samples!r}: "
                                "elites must be <= samples")
            if ok("planning.execute_steps", "planning.horizon") and pl.execute_steps > pl.horizon:
                problems.append(f"planning.execute_steps={pl.execute_steps!r}, planning.horizon={pl.horizon!r}: "
                                "execute_steps must be <= horizon")
        pt = self.pretrain
        if isinstance(pt, PretrainConfig):
            for low, high in (("target_scale_min", "target_scale_max"), ("target_aspect_min", "target_aspect_max"),
                              ("context_scale_min", "context_scale_max"), ("ema_start", "ema_end")):
                lo, hi = getattr(pt, low), getattr(pt, high)
                if ok(f"pretrain.{low}", f"pretrain.{high}") and lo > hi:
                    problems.append(f"pretrain.{low}={lo!r}, pretrain.{high}={hi!r}: {low} must be <= {high}")
            if ok("pretrain.predictor_dim", "pretrain.predictor_heads") and pt.predictor_dim % pt.predictor_heads:
                problems.append(f"pretrain.predictor_dim={pt.predictor_dim!r}, pretrain.predictor_heads="
                                f"{pt.predictor_heads!r}: predictor_dim must be divisible by predictor_heads")
            if (self.dataset == "imagefolder" and ok("pretrain.min_keep", "image_size", "patch_size")
                    and pt.min_keep >= (self.image_size // self.patch_size) ** 2):
                problems.append(f"pretrain.min_keep={pt.min_keep!r}: must be < the {(self.image_size // self.patch_size) ** 2} "
                                "patches of an image (image_size / patch_size squared)")
        m, tr = self.model, self.train
        if (isinstance(m, ModelConfig) and isinstance(tr, TrainConfig) and tr.sequence_length
                and ok("train.sequence_length", "model.history", "predict_horizon")
                and tr.sequence_length < m.history + self.predict_horizon):
            problems.append(f"train.sequence_length={tr.sequence_length!r}: must be 0 or >= model.history + "
                            f"predict_horizon = {m.history + self.predict_horizon}")
        if isinstance(m, ModelConfig) and ok("model.encoder", "model.timm_model"):
            if m.encoder == "timm" and not m.timm_model:
                problems.append(f"model.encoder='timm', model.timm_model={m.timm_model!r}: "
                                "timm_model must name a timm.create_model architecture (e.g. 'resnet18')")
        if (self.dataset == "trajectories" and isinstance(self.env, EnvConfig)
                and ok("env.id") and isinstance(self.env.id, str)):
            from torchwm.envs.registry import env_ids

            valid = env_ids()
            if self.env.id not in valid:
                problems.append(f"env.id={self.env.id!r}: unknown environment; valid ids: {', '.join(valid)}")
        if check_paths:
            if self.dataset == "imagefolder" and ok("root_path", "image_folder"):
                folder = os.path.join(self.root_path, self.image_folder)
                if not os.path.isdir(folder):
                    problems.append(f"root_path/image_folder={folder!r}: folder does not exist (to generate the "
                                    f"synthetic shapes dataset there: torchwm shapes --out {self.root_path})")
            if isinstance(m, ModelConfig) and ok("model.pretrained") and m.pretrained:
                if not os.path.exists(m.pretrained):
                    problems.append(f"model.pretrained={m.pretrained!r}: file does not exist")
        if problems:
            raise ValueError(f"invalid config ({len(problems)} problem{'s' * (len(problems) > 1)}):\n"
                             + "\n".join(f"  {p}" for p in problems))
        return self

    # ------------------------------------------------------------------------ dicts and YAML

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts, sections in declaration order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JEPAConfig:
        """Build a config from nested dicts; missing keys keep their defaults.

        Strict: an unknown key, or a value that cannot be converted losslessly to the field's
        type, raises ``ValueError`` (all problems in one message).
        """
        problems: list[str] = []
        cfg = _build(cls, d, "", problems)
        if problems:
            raise ValueError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
        return cfg

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as YAML, atomically (temp file in the same folder, then ``os.replace``)."""
        from torchwm.io import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> JEPAConfig:
        """Read a YAML file written by :meth:`save` (or a hand-written preset with only some keys)."""
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{os.fspath(path)}: expected a mapping of config keys, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{os.fspath(path)}: {e}") from None

    # ------------------------------------------------------------------------------ overrides

    def override(self, items: Iterable[str]) -> JEPAConfig:
        """Return a copy with ``section.field=value`` items applied (``self`` is unchanged).

        Values are parsed with ``yaml.safe_load`` and converted to the field's type, so
        ``logging.tensorboard=false``, ``learning_rate=3e-4`` and ``model.encoder=conv`` all work.
        """
        if isinstance(items, str):
            items = [items]
        new = copy.deepcopy(self)
        problems: list[str] = []
        for item in items:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                problems.append(f"{item!r}: malformed override; expected the form section.field=value "
                                "(e.g. data.episodes=50) or field=value (e.g. image_size=64)")
                continue
            target, name, ftype, problem = _resolve(new, key)
            if problem:
                problems.append(problem)
                continue
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                value = text
            if ftype is str and not isinstance(value, str):
                value = text.strip()  # e.g. logging.run_dir=2024 or data.path= (empty)
            value, problem = _coerce(key, value, ftype)
            if problem:
                problems.append(problem)
                continue
            setattr(target, name, value)
        if problems:
            raise ValueError("invalid override:\n" + "\n".join(f"  {p}" for p in problems))
        return new


def load_config(path: str | os.PathLike[str] | None, overrides: Iterable[str] = (), *,
                validate: bool = True, check_paths: bool = True) -> JEPAConfig:
    """For command-line tools: load ``path`` (defaults when None), apply overrides, validate."""
    cfg = JEPAConfig() if path is None else JEPAConfig.load(path)
    cfg = cfg.override(list(overrides))
    if validate:
        cfg.validate(check_paths=check_paths)
    return cfg


# -------------------------------------------------------------------------------------- helpers


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(obj_or_cls: Any) -> list[tuple[dataclasses.Field, Any]]:
    """``(field, resolved type)`` pairs of a dataclass, in declaration order."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    hints = _hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean (true/false)"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range_text(meta: dict[str, Any]) -> str:
    """Human form of the numeric rules, e.g. ``>= 1``, ``in [0, 1)``, ``in the open interval (0, 1)``."""
    if "open_interval" in meta:
        lo, hi = meta["open_interval"]
        return f"in the open interval ({_fmt(lo)}, {_fmt(hi)})"
    lo = ("[", meta["min"]) if "min" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["max"]) if "max" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{_fmt(lo[1])}, {_fmt(hi[1])}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {_fmt(lo[1])}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {_fmt(hi[1])}"
    return ""


def _in_range(x: float, meta: dict[str, Any]) -> bool:
    if "open_interval" in meta:
        lo, hi = meta["open_interval"]
        return lo < x < hi
    return (("min" not in meta or x >= meta["min"]) and ("gt" not in meta or x > meta["gt"])
            and ("max" not in meta or x <= meta["max"]) and ("lt" not in meta or x < meta["lt"]))


def _has_type(value: Any, tp: Any) -> bool:
    """Strict type test: bool is not accepted as int/float; int is accepted as float."""
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if typing.get_origin(tp) is tuple:
        return isinstance(value, tuple)
    return isinstance(value, tp)


def _field_problems(obj: Any, prefix: str) -> list[str]:
    """Check every field of a config dataclass (recursing into sections) against its type and metadata."""
    problems: list[str] = []
    for f, tp in _fields(obj):
        path = prefix + f.name
        value = getattr(obj, f.name)
        if _is_section(tp):
            if isinstance(value, tp):
                problems += _field_problems(value, path + ".")
            else:
                problems.append(f"{path}={value!r}: must be a {tp.__name__} section")
            continue
        meta = f.metadata
        rng = _range_text(meta)
        if tp in (int, float):
            kind = _type_name(tp)
            if not _has_type(value, tp):
                problems.append(f"{path}={value!r}: must be {kind} {rng}".rstrip() + f", got {type(value).__name__}")
            elif tp is float and not math.isfinite(value):
                problems.append(f"{path}={value!r}: must be a finite number {rng}".rstrip())
            elif not _in_range(value, meta):
                want = f"{kind} {rng}" if tp is int else rng
                problems.append(f"{path}={value!r}: must be {want}")
            continue
        if not _has_type(value, tp):
            problems.append(f"{path}={value!r}: must be {_type_name(tp)}, got {type(value).__name__}")
            continue
        if "choices" in meta and value not in meta["choices"]:
            allowed = ", ".join(repr(c) for c in sorted(meta["choices"]))
            problems.append(f"{path}={value!r}: unknown {f.name}; allowed: {allowed}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            allowed = ", ".join(repr(c) for c in meta.get("allowed", (meta["pattern"],)))
            problems.append(f"{path}={value!r}: unknown {f.name}; allowed: {allowed}")
        if meta.get("nonempty") and not value:
            problems.append(f"{path}={value!r}: must be a non-empty string")
    return problems


def _coerce(path: str, value: Any, tp: Any) -> tuple[Any, str | None]:
    """Convert ``value`` to ``tp`` where that loses nothing; return ``(value, problem or None)``."""
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                return float(value), None
            except ValueError:
                pass
        elif _has_type(value, float):
            return float(value), None
    elif tp is int:
        if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
            return int(value), None
        if _has_type(value, int):
            return value, None
    elif typing.get_origin(tp) is tuple:  # YAML has no tuples: a list becomes a tuple
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(f"{path}[{i}]", v, args[0]) for i, v in enumerate(value)]
            bad = next((p for _, p in items if p), None)
            return (value, bad) if bad else (tuple(v for v, _ in items), None)
        if isinstance(value, (list, tuple)) and (not args or len(args) == len(value)):
            return tuple(value), None
    elif _has_type(value, tp):
        return value, None
    return value, f"{path}={value!r}: expected {_type_name(tp)}, got {type(value).__name__}"


def _build(cls: type[_T], d: Any, prefix: str, problems: list[str]) -> _T:
    """Instantiate dataclass ``cls`` from a (partial) dict, collecting problems."""
    where = f"keys of section {prefix[:-1]!r}" if prefix else "top-level keys"
    if d is None:  # a section whose keys are all commented out
        d = {}
    if not isinstance(d, dict):
        problems.append(f"{prefix[:-1] or 'config'}={d!r}: expected a mapping of {cls.__name__} keys")
        return cls()
    fields = _fields(cls)
    names = [f.name for f, _ in fields]
    for key in d:
        if key not in names:
            problems.append(f"{prefix}{key}: unknown key; valid {where}: {', '.join(names)}")
    kwargs: dict[str, Any] = {}
    for f, tp in fields:
        if f.name not in d:
            continue
        path = prefix + f.name
        if _is_section(tp):
            kwargs[f.name] = _build(tp, d[f.name], path + ".", problems)
            continue
        value, problem = _coerce(path, d[f.name], tp)
        if problem:
            problems.append(problem)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


def _resolve(cfg: JEPAConfig, key: str) -> tuple[Any, str, Any, str | None]:
    """Find ``(object, field name, field type, problem)`` for a dotted override key."""
    obj: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = dict((f.name, tp) for f, tp in _fields(obj))
        here = ".".join(parts[:i])
        where = f"fields of section {here!r}" if here else "top-level fields"
        if part not in fields:
            return None, "", None, (f"{key!r}: unknown field {part!r}; valid {where}: "
                                    f"{', '.join(fields)}")
        tp = fields[part]
        last = i == len(parts) - 1
        if _is_section(tp):
            if last:
                sub = ", ".join(f"{key}.{f.name}" for f in dataclasses.fields(tp))
                return None, "", None, f"{key!r}: is a section, not a field; set one of: {sub}"
            obj = getattr(obj, part)
        elif not last:
            return None, "", None, f"{key!r}: {'.'.join(parts[:i + 1])!r} is a field, not a section"
        else:
            return obj, part, tp, None
    raise AssertionError("unreachable")

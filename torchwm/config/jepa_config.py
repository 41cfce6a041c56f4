"""``JEPAConfig``: everything one experiment needs, as plain values, saved as YAML.

Range and choice rules live in each field's ``metadata`` and are checked by one generic walker
(:mod:`torchwm.config.fields`); the few rules that relate two fields are explicit in
:meth:`JEPAConfig.validate`. ``dataset`` decides the job (:data:`JOBS`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterable

import yaml

from torchwm.config.fields import build, coerce, field_problems, opt, resolve, section
from torchwm.config.presets import read_config_text
from torchwm.config.sections import (DataConfig, EnvConfig, LoggingConfig, ModelConfig, PlanningConfig,
                                     PretrainConfig, TrainConfig)

JOBS: dict[str, str] = {"trajectories": "world_model", "imagefolder": "image_pretraining"}
"""``dataset`` value → the job it asks for (each job has one agent, see :mod:`torchwm.agents`)."""


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

    dataset: str = opt("trajectories", choices=tuple(JOBS))
    """data source, which decides the job: "trajectories" (frames collected from env.id: a world model) or
    "imagefolder" (root_path/image_folder: image pretraining of the spatial encoder)"""
    root_path: str = "./data"
    """root directory of the image dataset (image pretraining: dataset "imagefolder")"""
    image_folder: str = "train"
    """sub-folder of root_path in torchvision ImageFolder layout (one sub-folder per class)"""
    epochs: int = opt(100, min=1)
    """training epochs (>= 1)"""
    image_size: int = opt(224, min=1)
    """side of the square input images in pixels (>= 1, divisible by patch_size)"""
    patch_size: int = opt(16, min=1)
    """side of a ViT patch in pixels (>= 1)"""
    embed_dim: int = opt(768, min=1)
    """token / embedding width (>= 1, divisible by num_heads)"""
    num_layers: int = opt(12, min=1)
    """transformer blocks in the encoder (>= 1)"""
    num_heads: int = opt(12, min=1)
    """attention heads per block (>= 1)"""
    mask_ratio: float = opt(0.75, open_interval=(0, 1))
    """fraction of patches masked for the predictor, in (0, 1)"""
    predict_horizon: int = opt(1, min=1)
    """future steps the predictor is trained to roll out (>= 1)"""
    batch_size: int = opt(64, min=1)
    """samples per optimisation step (>= 1)"""
    learning_rate: float = opt(1e-4, gt=0.0)
    """peak learning rate of the optimiser (> 0)"""
    seed: int = opt(0, min=0)
    """random seed for torch, numpy and the environments (>= 0)"""
    device: str = opt("auto", pattern=r"auto|cpu|mps|cuda(:[0-9]+)?",
                       allowed=("auto", "cpu", "cuda", "cuda:N", "mps"))
    """torch device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps"."""

    env: EnvConfig = section(EnvConfig)
    """environment settings"""
    data: DataConfig = section(DataConfig)
    """trajectory collection and loading"""
    model: ModelConfig = section(ModelConfig)
    """encoder, temporal encoder and predictor architecture"""
    train: TrainConfig = section(TrainConfig)
    """world-model optimisation"""
    planning: PlanningConfig = section(PlanningConfig)
    """latent planning and goal-reaching evaluation"""
    pretrain: PretrainConfig = section(PretrainConfig)
    """I-JEPA image pretraining (masking, predictor, EMA, evaluation)"""
    logging: LoggingConfig = section(LoggingConfig)
    """run directory and logging"""

    @property
    def job(self) -> str:
        """What this config trains, from ``dataset``: ``"world_model"`` or ``"image_pretraining"`` (``""`` for
        an unknown dataset, which :meth:`validate` reports)."""
        return JOBS.get(self.dataset, "")

    # ------------------------------------------------------------------------------ validation

    def validate(self, check_paths: bool = True) -> JEPAConfig:
        """Check every field; raise one ``ValueError`` listing all problems, one per line.

        ``check_paths`` also requires the image folder (image pretraining) and
        ``model.pretrained`` (when set) to exist. Returns ``self``.
        """
        problems = field_problems(self, "")
        bad = {p.split("=", 1)[0] for p in problems}  # paths that already failed their own rules

        def ok(*paths: str) -> bool:  # all of these fields (and their sections) passed their own rules
            return not any(p == b or p.startswith(b + ".") for p in paths for b in bad)

        images = self.job == "image_pretraining"
        # patch and head sizes matter where a ViT is built: the "vit" encoder and image pretraining
        uses_vit = images or not isinstance(self.model, ModelConfig) or self.model.encoder == "vit"
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
            if (images and ok("pretrain.min_keep", "image_size", "patch_size")
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
        if (self.job == "world_model" and isinstance(self.env, EnvConfig)
                and ok("env.id") and isinstance(self.env.id, str)):
            from torchwm.envs.ids import env_ids

            valid = env_ids()
            if self.env.id not in valid:
                problems.append(f"env.id={self.env.id!r}: unknown environment; valid ids: {', '.join(valid)}")
        if check_paths:
            if images and ok("root_path", "image_folder"):
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
        cfg = build(cls, d, "", problems)
        if problems:
            raise ValueError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
        return cfg

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as YAML, atomically (temp file in the same folder, then ``os.replace``)."""
        from torchwm.io import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> JEPAConfig:
        """Read a YAML file written by :meth:`save` (or a hand-written one with only some keys), or a preset
        shipped with torchwm by its name: ``JEPAConfig.load("dmc_reacher")`` (see :func:`preset_names`)."""
        source, text = read_config_text(path)
        data = yaml.safe_load(text)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

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
            target, name, ftype, problem = resolve(new, key)
            if problem:
                problems.append(problem)
                continue
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                value = text
            if ftype is str and not isinstance(value, str):
                value = text.strip()  # e.g. logging.run_dir=2024 or data.path= (empty)
            value, problem = coerce(key, value, ftype)
            if problem:
                problems.append(problem)
                continue
            setattr(target, name, value)
        if problems:
            raise ValueError("invalid override:\n" + "\n".join(f"  {p}" for p in problems))
        return new


def load_config(path: str | os.PathLike[str] | None, overrides: Iterable[str] = (), *,
                validate: bool = True, check_paths: bool = True) -> JEPAConfig:
    """For command-line tools: load ``path`` (a YAML file or a preset name; defaults when None), apply
    overrides, validate."""
    cfg = JEPAConfig() if path is None else JEPAConfig.load(path)
    cfg = cfg.override(list(overrides))
    if validate:
        cfg.validate(check_paths=check_paths)
    return cfg


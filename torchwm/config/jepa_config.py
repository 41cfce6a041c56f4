"""``JEPAConfig``: everything one experiment needs, as plain values, saved as YAML.

Range and choice rules live in each field's ``metadata`` and are checked by one generic walker
(:mod:`torchwm.config.fields`); the few rules that relate two fields are explicit in
:meth:`JEPAConfig.validate`. ``dataset`` (and for pretraining ``pretrain.method``) decides the job
(:attr:`JEPAConfig.job`).
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

DATASETS: tuple[str, ...] = ("trajectories", "imagefolder", "episodes", "videos")
"""Data sources: "trajectories" trains a world model, the others pretrain the spatial encoder."""
METHOD_DATASETS: dict[str, tuple[str, ...]] = {"ijepa": ("imagefolder", "episodes"),
                                               "sigreg": ("imagefolder", "episodes"), "vjepa": ("episodes", "videos")}
"""The datasets each pretraining method reads: images (or single frames) for ijepa and sigreg, clips for vjepa."""
JOBS: tuple[str, ...] = ("world_model", "image_pretraining", "video_pretraining")
"""What a config can ask for; each job has one agent (:mod:`torchwm.agents`)."""


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

    dataset: str = opt("trajectories", choices=DATASETS)
    """data source, which decides the job: "trajectories" (episodes collected from env.id: a world model);
    pretraining (pretrain.method): "imagefolder" (images in root_path/image_folder), "episodes" (frames or
    clips of the episodes collected from env.id, as for a world model) or "videos" (video files or folders
    of frames in root_path/image_folder)"""
    root_path: str = "./data"
    """root directory of the image or video dataset (datasets "imagefolder" and "videos")"""
    image_folder: str = "train"
    """sub-folder of root_path in torchvision ImageFolder layout (one sub-folder per class)"""
    epochs: int = opt(100, min=1)
    """training epochs (>= 1)"""
    image_size: int = opt(224, min=1)
    """side of the square input images in pixels (>= 1, divisible by patch_size)"""
    patch_size: int = opt(16, min=1)
    """side of a ViT patch in pixels (>= 1)"""
    embed_dim: int = opt(768, min=0)
    """token / embedding width (>= 1, divisible by num_heads); 0: the dm_control domain's degrees of freedom (1 per
    slide, 2 per hinge joint it shows: point_mass 2, reacher 4), for a world model with a conv encoder"""
    num_layers: int = opt(12, min=1)
    """transformer blocks in the encoder (>= 1)"""
    num_heads: int = opt(12, min=1)
    """attention heads per block (>= 1)"""
    mask_ratio: float = opt(0.75, open_interval=(0, 1))
    """fraction of patches that are targets, in (0, 1); read only by I-JEPA with ``pretrain.mask: random`` (the
    multi-block and block masks take their sizes from ``pretrain.target_scale_*``)"""
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
    def frame_embed_dim(self) -> int:
        """``embed_dim``, or for 0 the env domain's degrees of freedom (:attr:`DomainSpec.latent_dim`)."""
        if self.embed_dim:
            return self.embed_dim
        from torchwm.envs.domains import domain_spec  # not envs.registry: it imports the config
        from torchwm.envs.ids import parse_env_id

        return domain_spec(parse_env_id(self.env.id)[0]).latent_dim

    @property
    def training_sequence_length(self) -> int:
        """Frames per world-model training sequence: ``train.sequence_length``, or (0) one window of
        ``model.history`` + ``predict_horizon``."""
        return self.train.sequence_length or self.model.history + self.predict_horizon

    @property
    def job(self) -> str:
        """What this config trains (one of :data:`JOBS`): ``"world_model"`` for dataset "trajectories", else
        ``"video_pretraining"`` for ``pretrain.method`` "vjepa" and ``"image_pretraining"`` for the others
        (``""`` for an unknown dataset, which :meth:`validate` reports)."""
        if self.dataset not in DATASETS:
            return ""
        if self.dataset == "trajectories":
            return "world_model"
        return "video_pretraining" if getattr(self.pretrain, "method", "") == "vjepa" else "image_pretraining"

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

        pretraining = self.job in ("image_pretraining", "video_pretraining")
        folder = self.dataset in ("imagefolder", "videos")
        # patch and head sizes matter where a ViT is built: the "vit" encoder, I-JEPA and V-JEPA
        uses_vit = (not isinstance(self.model, ModelConfig) or self.model.encoder == "vit"
                    or (pretraining and getattr(self.pretrain, "method", "") != "sigreg"))
        if uses_vit and ok("image_size", "patch_size") and self.image_size % self.patch_size:
            problems.append(f"image_size={self.image_size!r}, patch_size={self.patch_size!r}: "
                            "image_size must be divisible by patch_size")
        if ok("embed_dim") and self.embed_dim == 0:
            conv = isinstance(self.model, ModelConfig) and self.model.encoder == "conv"
            if self.job != "world_model" or not conv:
                problems.append("embed_dim=0: the domain's size is for world models (dataset 'trajectories') with "
                                "model.encoder 'conv'; give embed_dim >= 1")
            elif ok("env.id"):
                try:
                    known = self.frame_embed_dim > 0
                except ValueError:
                    known = True  # the unknown env id is reported on its own
                if not known:
                    problems.append(f"embed_dim=0: env.id={self.env.id!r}: torchwm knows no coordinates of this "
                                    "domain to size the embedding from; give embed_dim >= 1")
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
        if (isinstance(pl, PlanningConfig) and isinstance(self.model, ModelConfig)
                and ok("planning.horizon", "model.action_chunk") and pl.horizon % self.model.action_chunk):
            problems.append(f"planning.horizon={pl.horizon!r}, model.action_chunk={self.model.action_chunk!r}: the "
                            "model predicts one frame per chunk of actions, so the horizon (in agent steps) must be "
                            "a multiple of action_chunk")
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
            if pretraining:
                problems += _pretrain_problems(self, ok)
        m, tr = self.model, self.train
        if (isinstance(m, ModelConfig) and isinstance(tr, TrainConfig) and tr.sequence_length
                and ok("train.sequence_length", "model.history", "predict_horizon")
                and tr.sequence_length < m.history + self.predict_horizon):
            problems.append(f"train.sequence_length={tr.sequence_length!r}: must be 0 or >= model.history + "
                            f"predict_horizon = {m.history + self.predict_horizon}")
        if (isinstance(m, ModelConfig) and isinstance(tr, TrainConfig) and ok("model.freeze_encoder", "train.ema")
                and m.freeze_encoder and tr.ema):
            problems.append("model.freeze_encoder=True, train.ema=True: a frozen encoder needs no EMA target; "
                            "set train.ema=false")
        if (isinstance(tr, TrainConfig) and ok("train.within_sequence_std", "train.vicreg_within_sequence")
                and tr.within_sequence_std > 0 and not tr.vicreg_within_sequence):
            problems.append(f"train.within_sequence_std={tr.within_sequence_std!r}, "
                            "train.vicreg_within_sequence=False: a within-sequence target needs "
                            "train.vicreg_within_sequence=true (or set within_sequence_std=0)")
        if (isinstance(tr, TrainConfig) and ok("train.window_motion_threshold", "train.within_sequence_std")
                and tr.window_motion_threshold > 0 and tr.within_sequence_std == 0):
            problems.append(f"train.window_motion_threshold={tr.window_motion_threshold!r}, "
                            "train.within_sequence_std=0: the threshold decides whether within_sequence_std applies; "
                            "set within_sequence_std > 0 (e.g. 0.3) or the threshold to 0")
        if (isinstance(tr, TrainConfig) and ok("train.slow_predict_horizon", "train.window_motion_threshold")
                and tr.slow_predict_horizon > 0 and tr.window_motion_threshold == 0):
            problems.append(f"train.slow_predict_horizon={tr.slow_predict_horizon!r}, "
                            "train.window_motion_threshold=0: the threshold decides which body is slow; "
                            "set window_motion_threshold > 0 (e.g. 0.55) or slow_predict_horizon to 0")
        if (isinstance(m, ModelConfig) and isinstance(tr, TrainConfig)
                and ok("train.slow_predict_horizon", "train.sequence_length", "model.history", "predict_horizon")
                and tr.slow_predict_horizon > 0):
            length = self.training_sequence_length
            if length < m.history + tr.slow_predict_horizon:
                problems.append(f"train.slow_predict_horizon={tr.slow_predict_horizon!r}: a training sequence of "
                                f"{length} frames (train.sequence_length={tr.sequence_length!r}) holds no window of "
                                f"model.history + slow_predict_horizon = {m.history + tr.slow_predict_horizon}; set "
                                "train.sequence_length >= that")
        if (isinstance(m, ModelConfig) and isinstance(tr, TrainConfig)
                and ok("model.freeze_encoder", "train.within_sequence_std")
                and m.freeze_encoder and tr.within_sequence_std > 0):
            problems.append(f"model.freeze_encoder=True, train.within_sequence_std={tr.within_sequence_std!r}: "
                            "a frozen encoder's frame embeddings cannot be scaled and its VICReg terms see the "
                            "temporal contexts; set train.within_sequence_std=0")
        if (isinstance(m, ModelConfig) and isinstance(tr, TrainConfig)
                and ok("model.freeze_encoder", "train.smoothness_weight")
                and m.freeze_encoder and tr.smoothness_weight > 0):
            problems.append(f"model.freeze_encoder=True, train.smoothness_weight={tr.smoothness_weight!r}: a frozen "
                            "encoder's embeddings cannot be made smoother; set train.smoothness_weight=0")
        if isinstance(tr, TrainConfig) and ok("train.precision", "device") and tr.precision == "bf16" \
                and self.device in ("cpu", "mps"):
            problems.append(f"train.precision='bf16', device={self.device!r}: bf16 autocast is for CUDA devices (on a "
                            "CPU it runs hundreds of times slower than fp32); use precision 'auto' or 'fp32'")
        if isinstance(m, ModelConfig) and ok("model.encoder", "model.timm_model"):
            if m.encoder == "timm" and not m.timm_model:
                problems.append(f"model.encoder='timm', model.timm_model={m.timm_model!r}: "
                                "timm_model must name a timm.create_model architecture (e.g. 'resnet18')")
        if (self.dataset in ("trajectories", "episodes") and isinstance(self.env, EnvConfig)
                and ok("env.id") and isinstance(self.env.id, str)):
            from torchwm.envs.ids import env_ids

            valid = env_ids()
            if self.env.id not in valid:
                problems.append(f"env.id={self.env.id!r}: unknown environment; valid ids: {', '.join(valid)}")
        if check_paths:
            if pretraining and folder and ok("root_path", "image_folder"):
                path = os.path.join(self.root_path, self.image_folder)
                if not os.path.isdir(path):
                    hint = (f" (to generate the synthetic shapes dataset there: torchwm shapes --out {self.root_path})"
                            if self.dataset == "imagefolder" else "")
                    problems.append(f"root_path/image_folder={path!r}: folder does not exist{hint}")
            lg = self.logging
            if ok("logging.run_dir") and isinstance(lg.run_dir, str) and os.path.exists(lg.run_dir) \
                    and not os.path.isdir(lg.run_dir):
                problems.append(f"logging.run_dir={lg.run_dir!r}: is a file, not a directory; choose another "
                                "logging.run_dir")
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
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"{source}: not valid YAML{where} ({problem}); fix the file") from None
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


def _pretrain_problems(cfg: JEPAConfig, ok) -> list[str]:
    """The rules that relate pretraining fields to each other and to the dataset."""
    pt, problems = cfg.pretrain, []
    if ok("pretrain.method", "dataset") and cfg.dataset not in METHOD_DATASETS[pt.method]:
        problems.append(f"pretrain.method={pt.method!r}, dataset={cfg.dataset!r}: {pt.method} reads the datasets "
                        f"{', '.join(map(repr, METHOD_DATASETS[pt.method]))}")
    if ok("pretrain.method", "model.encoder") and pt.method != "sigreg" and cfg.model.encoder != "vit":
        problems.append(f"pretrain.method={pt.method!r}, model.encoder={cfg.model.encoder!r}: {pt.method} trains a "
                        "ViT (model.encoder 'vit'); pretrain another encoder with pretrain.method 'sigreg'")
    grid = (cfg.image_size // cfg.patch_size) ** 2
    if pt.method != "sigreg" and ok("pretrain.min_keep", "image_size", "patch_size") and pt.min_keep >= grid:
        problems.append(f"pretrain.min_keep={pt.min_keep!r}: must be < the {grid} patches of an image "
                        "(image_size / patch_size squared)")
    if pt.method == "vjepa" and ok("pretrain.clip_frames", "pretrain.tubelet", "pretrain.future_frames"):
        if pt.clip_frames % pt.tubelet:
            problems.append(f"pretrain.clip_frames={pt.clip_frames!r}, pretrain.tubelet={pt.tubelet!r}: "
                            "clip_frames must be a multiple of tubelet")
        if pt.future_frames % pt.tubelet or pt.future_frames >= pt.clip_frames:
            problems.append(f"pretrain.future_frames={pt.future_frames!r}: must be a multiple of tubelet="
                            f"{pt.tubelet} below clip_frames={pt.clip_frames}")
        if ok("pretrain.short_blocks", "pretrain.long_blocks") and not (pt.short_blocks or pt.long_blocks
                                                                          or pt.future_frames):
            problems.append("pretrain.short_blocks=0, pretrain.long_blocks=0, pretrain.future_frames=0: "
                            "vjepa needs at least one mask (short-range, long-range or future)")
    return problems


def load_config(path: str | os.PathLike[str] | None, overrides: Iterable[str] = (), *,
                validate: bool = True, check_paths: bool = True) -> JEPAConfig:
    """For command-line tools: load ``path`` (a YAML file or a preset name; defaults when None), apply
    overrides, validate."""
    cfg = JEPAConfig() if path is None else JEPAConfig.load(path)
    cfg = cfg.override(list(overrides))
    if validate:
        cfg.validate(check_paths=check_paths)
    return cfg


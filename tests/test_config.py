"""Tests for torchwm.config: validation, YAML round trips, overrides and the presets shipped in the package."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from torchwm.config import JEPAConfig, load_config, preset_names
from torchwm.envs.registry import env_ids

CONFIG_DIR = Path(__file__).resolve().parents[1] / "torchwm" / "config" / "presets"
PRESETS = sorted(CONFIG_DIR.glob("*.yaml"))


def _set(cfg: JEPAConfig, path: str, value: object) -> JEPAConfig:
    """Assign ``value`` to the dotted field ``path`` (bypassing override's type coercion)."""
    *sections, name = path.split(".")
    obj = cfg
    for s in sections:
        obj = getattr(obj, s)
    setattr(obj, name, value)
    return cfg


def _error(cfg: JEPAConfig, check_paths: bool = False) -> str:
    with pytest.raises(ValueError) as info:
        cfg.validate(check_paths=check_paths)
    return str(info.value)


# ------------------------------------------------------------------------------- valid configs


def test_documented_snippet(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    cfg = JEPAConfig()
    cfg.dataset = "imagefolder"
    cfg.root_path = str(tmp_path)
    cfg.image_folder = "train"
    cfg.epochs = 100
    assert cfg.validate() is cfg


def test_defaults_are_valid() -> None:
    cfg = JEPAConfig()
    assert cfg.validate() is cfg
    assert cfg.env.id in env_ids()
    assert cfg.dataset == "trajectories" and cfg.image_size % cfg.patch_size == 0


def test_every_field_is_documented() -> None:
    from torchwm.config import sections
    from torchwm.configdoc import field_docs

    classes = [JEPAConfig] + [getattr(sections, name) for name in sections.__all__]
    assert len(classes) == 8
    for cls in classes:
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, "").strip()]
        assert not missing, f"{cls.__name__} fields without a doc line: {missing}"


# ----------------------------------------------------------------------------- invalid values

POSITIVE_INTS = [
    "image_size", "patch_size", "num_layers", "num_heads", "batch_size", "epochs",
    "predict_horizon", "env.goal_steps", "data.episodes", "data.steps",
    "data.workers", "model.history", "planning.samples", "planning.elites", "planning.iterations",
    "planning.horizon", "planning.execute_steps", "planning.eval_episodes",
    "logging.log_every", "model.conv_width", "model.temporal_hidden", "model.predictor_hidden",
    "model.predictor_depth", "train.eval_every", "train.metrics_every", "train.checkpoint_every",
]


@pytest.mark.parametrize("path", POSITIVE_INTS)
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes_rejected(path: str, value: int) -> None:
    msg = _error(_set(JEPAConfig(), path, value))
    assert f"{path}={value}: must be an integer >= 1" in msg


@pytest.mark.parametrize("path,value", [
    ("embed_dim", -3), ("planning.episode_steps", -1),  # 0: the domain's (embedding size, budget)
    ("data.loader_workers", -1), ("env.camera", -2), ("env.action_repeat", -1), ("seed", -1), ("train.steps", -1),
    ("train.warmup_steps", -5), ("train.weight_decay", -0.1), ("train.grad_clip", -1.0),
    ("train.var_weight", -1.0), ("train.cov_weight", -0.5), ("train.min_lr_ratio", 1.5),
    ("train.ema_momentum", 1.0),
])
def test_lower_bounds(path: str, value: int) -> None:
    assert f"{path}={value}:" in _error(_set(JEPAConfig(), path, value))


def test_camera_default_and_index_allowed() -> None:
    JEPAConfig().validate()
    _set(JEPAConfig(), "env.camera", 2).validate()


def test_image_size_divisible_by_patch_size() -> None:
    cfg = JEPAConfig(image_size=100, patch_size=16)
    assert "image_size=100, patch_size=16: image_size must be divisible by patch_size" in _error(cfg)


def test_embed_dim_divisible_by_num_heads() -> None:
    msg = _error(JEPAConfig(embed_dim=100, num_heads=12))
    assert "embed_dim=100, num_heads=12" in msg and "divisible" in msg


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.0, 1.5, -0.1])
def test_mask_ratio_open_interval(value: float) -> None:
    msg = _error(JEPAConfig(mask_ratio=value))
    assert f"mask_ratio={value!r}: must be in the open interval (0, 1)" in msg


@pytest.mark.parametrize("value", [0.0, -1e-4, 0])
def test_learning_rate_positive(value: float) -> None:
    assert f"learning_rate={value!r}: must be > 0" in _error(JEPAConfig(learning_rate=value))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_float_rejected(value: float) -> None:
    assert f"learning_rate={value!r}: must be a finite number" in _error(JEPAConfig(learning_rate=value))


@pytest.mark.parametrize("path,value", [
    ("data.noise_beta", 1.0), ("data.noise_beta", -0.1), ("data.heldout_fraction", 1.0),
    ("planning.init_std", 0.0), ("planning.temperature", -1.0),
])
def test_float_ranges(path: str, value: float) -> None:
    assert f"{path}={value!r}: must be" in _error(_set(JEPAConfig(), path, value))


def test_unknown_env_id_lists_valid_ids() -> None:
    cfg = _set(JEPAConfig(), "env.id", "dmc:foo-bar")
    msg = _error(cfg)
    assert "env.id='dmc:foo-bar': unknown environment; valid ids:" in msg
    assert "dmc:reacher-easy" in msg and "dmc:point_mass-easy" in msg


def test_env_id_only_checked_for_trajectories(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    cfg = JEPAConfig(dataset="imagefolder", root_path=str(tmp_path))
    cfg.env.id = "dmc:foo-bar"
    cfg.validate()


def test_unknown_dataset() -> None:
    msg = _error(JEPAConfig(dataset="imagenet1k"))
    assert "dataset='imagenet1k': unknown dataset; allowed: 'episodes', 'imagefolder', 'trajectories', 'videos'" in msg


def test_missing_image_folder(tmp_path: Path) -> None:
    cfg = JEPAConfig(dataset="imagefolder", root_path=str(tmp_path), image_folder="train")
    folder = os.path.join(str(tmp_path), "train")
    msg = _error(cfg, check_paths=True)
    assert f"root_path/image_folder={folder!r}: folder does not exist" in msg
    cfg.validate(check_paths=False)  # paths are only checked on request


def test_missing_pretrained_checkpoint(tmp_path: Path) -> None:
    cfg = JEPAConfig()
    cfg.model.pretrained = str(tmp_path / "encoder.pt")
    assert "model.pretrained=" in _error(cfg, check_paths=True)
    (tmp_path / "encoder.pt").write_bytes(b"")
    cfg.validate()


@pytest.mark.parametrize("path,value,allowed", [
    ("data.policy", "greedy", "'mixed', 'noise', 'random'"),
    ("model.encoder", "resnet", "'conv', 'timm', 'vit'"),
    ("planning.planner", "gd", "'cem', 'mppi'"),
    ("planning.cost", "l3", "'cosine', 'l1', 'l2'"),
    ("planning.cost_steps", "some", "'all', 'final'"),
    ("device", "tpu", "'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"),
])
def test_unknown_choice(path: str, value: str, allowed: str) -> None:
    msg = _error(_set(JEPAConfig(), path, value))
    name = path.rsplit(".", 1)[-1]
    assert f"{path}={value!r}: unknown {name}; allowed: {allowed}" in msg


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_valid_devices(device: str) -> None:
    JEPAConfig(device=device).validate()


@pytest.mark.parametrize("device", ["cuda:", "cuda:x", "CPU", ""])
def test_invalid_devices(device: str) -> None:
    assert f"device={device!r}: unknown device" in _error(JEPAConfig(device=device))


def test_elites_not_above_samples() -> None:
    cfg = JEPAConfig()
    cfg.planning.samples, cfg.planning.elites = 10, 11
    assert "planning.elites=11, planning.samples=10: elites must be <= samples" in _error(cfg)
    cfg.planning.elites = 10
    cfg.validate()


def test_planning_horizon_is_a_multiple_of_the_action_chunk() -> None:
    cfg = JEPAConfig()
    cfg.model.action_chunk, cfg.planning.horizon = 3, 10
    assert ("planning.horizon=10, model.action_chunk=3: the model predicts one frame per chunk of actions, so the "
            "horizon (in agent steps) must be a multiple of action_chunk") in _error(cfg)
    cfg.planning.horizon = 9
    cfg.validate()


def test_execute_steps_not_above_horizon() -> None:
    cfg = JEPAConfig()
    cfg.planning.horizon, cfg.planning.execute_steps = 3, 4
    assert "planning.execute_steps=4, planning.horizon=3" in _error(cfg)


@pytest.mark.parametrize("path", ["image_size", "batch_size", "data.episodes", "planning.samples"])
def test_bool_for_int_rejected(path: str) -> None:
    msg = _error(_set(JEPAConfig(), path, True))
    assert f"{path}=True: must be an integer >= 1, got bool" in msg


@pytest.mark.parametrize("path", ["mask_ratio", "learning_rate", "planning.init_std"])
def test_bool_for_float_rejected(path: str) -> None:
    assert f"{path}=True:" in _error(_set(JEPAConfig(), path, True))


@pytest.mark.parametrize("path,value", [("image_size", "64"), ("epochs", "10"), ("learning_rate", "1e-4"),
                                        ("image_size", 64.0)])
def test_wrong_type_for_number_rejected(path: str, value: object) -> None:
    msg = _error(_set(JEPAConfig(), path, value))
    assert f"{path}={value!r}: must be" in msg and f"got {type(value).__name__}" in msg


def test_wrong_type_for_str_and_bool_rejected() -> None:
    cfg = JEPAConfig()
    cfg.model.encoder = 3
    cfg.logging.tensorboard = 1
    msg = _error(cfg)
    assert "model.encoder=3: must be a string" in msg
    assert "logging.tensorboard=1: must be a boolean" in msg


def test_int_accepted_for_float_field() -> None:
    JEPAConfig(learning_rate=1).validate()


def test_timm_encoder_requires_model_name() -> None:
    cfg = JEPAConfig()
    cfg.model.encoder = "timm"
    msg = _error(cfg)
    assert "model.timm_model=''" in msg and "timm" in msg
    cfg.model.timm_model = "resnet18"
    cfg.validate()


def test_empty_run_dir_rejected() -> None:
    cfg = JEPAConfig()
    cfg.logging.run_dir = ""
    assert "logging.run_dir='': must be a non-empty string" in _error(cfg)


def test_all_problems_reported_at_once() -> None:
    cfg = JEPAConfig(patch_size=0, mask_ratio=1.0, dataset="trajectories", learning_rate=-1.0)
    cfg.env.id = "dmc:nope-nope"
    cfg.planning.elites = 1000
    cfg.data.policy = "greedy"
    msg = _error(cfg)
    lines = msg.splitlines()
    for needle in ["patch_size=0", "mask_ratio=1.0", "learning_rate=-1.0", "env.id='dmc:nope-nope'",
                   "planning.elites=1000", "data.policy='greedy'"]:
        assert sum(needle in line for line in lines) == 1, needle
    assert "6 problems" in lines[0]


def test_cross_checks_skip_fields_that_already_failed() -> None:
    msg = _error(JEPAConfig(patch_size=0))
    assert "divisible" not in msg  # no ZeroDivisionError, no second message about the same field


# ------------------------------------------------------------------------------ dicts and YAML


def _odd_config() -> JEPAConfig:
    cfg = JEPAConfig(learning_rate=1e-4, mask_ratio=3.0000001 / 4, seed=123456789, device="cuda:1")
    cfg.planning.init_std = 3.0000001
    cfg.planning.temperature = 1e-10
    cfg.data.noise_beta = 0.1 + 0.2
    cfg.data.heldout_fraction = 1 / 3
    cfg.data.path = "data/store with spaces: and colons"
    cfg.logging.run_dir = "2024"
    cfg.logging.tensorboard = False
    cfg.model.timm_model = "yes"
    return cfg


def test_to_dict_from_dict_round_trip() -> None:
    cfg = _odd_config()
    d = cfg.to_dict()
    assert list(d)[-7:] == ["env", "data", "model", "train", "planning", "pretrain", "logging"]
    assert d["planning"]["init_std"] == 3.0000001
    assert JEPAConfig.from_dict(d) == cfg


def test_yaml_round_trip_exact(tmp_path: Path) -> None:
    cfg = _odd_config()
    path = tmp_path / "cfg.yaml"
    cfg.save(path)
    loaded = JEPAConfig.load(path)
    assert loaded == cfg
    assert type(loaded.planning.init_std) is float and type(loaded.seed) is int
    assert [p.name for p in tmp_path.iterdir()] == ["cfg.yaml"]  # no temp file left behind


def test_yaml_round_trip_after_overrides(tmp_path: Path) -> None:
    cfg = JEPAConfig().override(["learning_rate=3e-4", "planning.init_std=3.0000001", "data.episodes=50",
                                 "logging.tensorboard=false", "model.encoder=conv", "mask_ratio=0.6"])
    cfg.save(tmp_path / "a" / "b.yaml")  # parent folders are created
    assert JEPAConfig.load(tmp_path / "a" / "b.yaml") == cfg


def test_saved_yaml_is_plain_and_ordered(tmp_path: Path) -> None:
    JEPAConfig().save(tmp_path / "c.yaml")
    data = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert list(data) == [f.name for f in dataclasses.fields(JEPAConfig)]
    assert data["env"] == {"id": "dmc:reacher-easy", "action_repeat": 0, "camera": -1, "goal_steps": 25}


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    JEPAConfig(epochs=1).save(path)
    JEPAConfig(epochs=2).save(path)
    assert JEPAConfig.load(path).epochs == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_partial_yaml_fills_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("image_size: 64\nlearning_rate: 3e-4\nenv:\n  goal_steps: 10\nplanning:\n")
    cfg = JEPAConfig.load(path)
    assert cfg.image_size == 64 and cfg.learning_rate == 3e-4 and cfg.env.goal_steps == 10
    assert cfg.env.id == JEPAConfig().env.id and cfg.planning == JEPAConfig().planning


def test_empty_yaml_is_defaults(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text("# nothing\n")
    assert JEPAConfig.load(tmp_path / "e.yaml") == JEPAConfig()


@pytest.mark.parametrize("text,needle", [
    ("imag_size: 64\n", "imag_size: unknown key; valid top-level keys: dataset,"),
    ("env:\n  idd: dmc:reacher-easy\n", "env.idd: unknown key; valid keys of section 'env': id, action_repeat"),
    ("planning:\n  elite: 3\n", "planning.elite: unknown key"),
])
def test_unknown_yaml_key_rejected(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        JEPAConfig.load(path)
    assert needle in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("d,needle", [
    ({"image_size": "64"}, "image_size='64'"),
    ({"image_size": True}, "image_size=True"),
    ({"image_size": 64.5}, "image_size=64.5"),
    ({"learning_rate": "fast"}, "learning_rate='fast'"),
    ({"logging": {"tensorboard": "yes please"}}, "logging.tensorboard='yes please'"),
    ({"model": {"encoder": 1}}, "model.encoder=1"),
    ({"env": "dmc:reacher-easy"}, "env='dmc:reacher-easy'"),
    ([1, 2], "expected a mapping"),
])
def test_from_dict_rejects_lossy_values(d: object, needle: str) -> None:
    with pytest.raises(ValueError, match="invalid config") as info:
        JEPAConfig.from_dict(d)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_from_dict_coerces_lossless_values() -> None:
    cfg = JEPAConfig.from_dict({"learning_rate": 1, "mask_ratio": "0.5", "epochs": 10.0,
                                "planning": {"init_std": 2}})
    assert cfg.learning_rate == 1.0 and type(cfg.learning_rate) is float
    assert cfg.mask_ratio == 0.5 and cfg.epochs == 10 and type(cfg.epochs) is int
    assert type(cfg.planning.init_std) is float


def test_from_dict_reports_every_problem() -> None:
    with pytest.raises(ValueError) as info:
        JEPAConfig.from_dict({"foo": 1, "image_size": "x", "data": {"bar": 2}})
    msg = str(info.value)
    assert "foo: unknown key" in msg and "image_size='x'" in msg and "data.bar: unknown key" in msg


# ----------------------------------------------------------------------------------- overrides


def test_override_coerces_types() -> None:
    base = JEPAConfig()
    cfg = base.override([
        "data.episodes=50", "image_size=64", "model.encoder=conv", "learning_rate=3e-4",
        "mask_ratio=0.5", "logging.tensorboard=false", "logging.progress=True", "planning.init_std=2",
        "env.id=dmc:point_mass-easy", "logging.run_dir=2024", "data.path=", "model.timm_model='vit_tiny'",
    ])
    assert cfg.data.episodes == 50 and type(cfg.data.episodes) is int
    assert cfg.image_size == 64
    assert cfg.model.encoder == "conv"
    assert cfg.learning_rate == 3e-4 and type(cfg.learning_rate) is float
    assert cfg.mask_ratio == 0.5
    assert cfg.logging.tensorboard is False and cfg.logging.progress is True
    assert cfg.planning.init_std == 2.0 and type(cfg.planning.init_std) is float
    assert cfg.env.id == "dmc:point_mass-easy"
    assert cfg.logging.run_dir == "2024" and cfg.data.path == ""
    assert cfg.model.timm_model == "vit_tiny"
    cfg.validate()


def test_override_leaves_original_unchanged() -> None:
    base = JEPAConfig()
    snapshot = base.to_dict()
    new = base.override(["data.episodes=5", "env.goal_steps=3", "epochs=1"])
    assert base.to_dict() == snapshot and base == JEPAConfig()
    assert new is not base and new.data is not base.data and new.env is not base.env
    assert new.data.episodes == 5 and new.env.goal_steps == 3 and new.epochs == 1


def test_override_later_item_wins() -> None:
    assert JEPAConfig().override(["epochs=3", "epochs=4"]).epochs == 4


@pytest.mark.parametrize("item,needle", [
    ("imag_size=64", "unknown field 'imag_size'; valid top-level fields: dataset, root_path"),
    ("data.episode=5", "unknown field 'episode'; valid fields of section 'data': path, episodes"),
    ("dat.episodes=5", "unknown field 'dat'"),
    ("env=3", "is a section"),
    ("image_size.x=3", "is a field, not a section"),
])
def test_override_unknown_field(item: str, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        JEPAConfig().override([item])
    assert needle in str(info.value)


@pytest.mark.parametrize("item", ["data.episodes", "image_size 64", "=5", ""])
def test_override_malformed_item(item: str) -> None:
    with pytest.raises(ValueError) as info:
        JEPAConfig().override([item])
    assert "section.field=value" in str(info.value) and repr(item) in str(info.value)


@pytest.mark.parametrize("item,needle", [
    ("image_size=abc", "image_size='abc'"),
    ("image_size=true", "image_size=True"),
    ("image_size=6.5", "image_size=6.5"),
    ("learning_rate=fast", "learning_rate='fast'"),
    ("logging.tensorboard=2", "logging.tensorboard=2"),
])
def test_override_bad_value(item: str, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        JEPAConfig().override([item])
    assert needle in str(info.value)


def test_load_config(tmp_path: Path) -> None:
    assert load_config(None, []) == JEPAConfig()
    path = tmp_path / "c.yaml"
    JEPAConfig(epochs=7).save(path)
    cfg = load_config(str(path), ["data.episodes=3"])
    assert cfg.epochs == 7 and cfg.data.episodes == 3
    with pytest.raises(ValueError, match="image_size=100, patch_size=16"):
        load_config(None, ["image_size=100"])


# ------------------------------------------------------------------------------------- presets

EXPECTED_PRESETS = {"dmc_point_mass.yaml", "dmc_point_mass_frozen.yaml", "dmc_reacher.yaml", "dmc_reacher_planning.yaml",
                    "ijepa_tiny.yaml", "ijepa_small.yaml", "ijepa_base.yaml", "sigreg_tiny.yaml", "sigreg_point_mass.yaml",
                    "vjepa_tiny.yaml", "sigreg_reacher.yaml", "dmc_reacher_frozen.yaml"}


def test_expected_presets_exist() -> None:
    assert EXPECTED_PRESETS <= {p.name for p in PRESETS}
    assert preset_names() == sorted(p.stem for p in PRESETS)


def test_presets_load_by_name_from_any_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    by_name = JEPAConfig.load("dmc_reacher")
    assert by_name == JEPAConfig.load(CONFIG_DIR / "dmc_reacher.yaml") == JEPAConfig.load("dmc_reacher.yaml")
    assert load_config("dmc_point_mass", ["train.steps=5"]).train.steps == 5
    # a file of that name in the working directory wins over the preset
    JEPAConfig().override(["epochs=3"]).save(tmp_path / "dmc_reacher")
    assert JEPAConfig.load("dmc_reacher").epochs == 3
    with pytest.raises(FileNotFoundError, match="no_such_preset.*presets: dmc_goal, dmc_point_mass, dmc_point_mass_frozen"):
        JEPAConfig.load("no_such_preset")
    with pytest.raises(FileNotFoundError, match="not a preset"):
        JEPAConfig.load("configs/dmc_reacher.yaml")  # a path is never looked up among the presets
    with pytest.raises(IsADirectoryError, match="is a directory"):
        JEPAConfig.load(tmp_path)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_loads_and_validates(path: Path) -> None:
    assert path.read_text().startswith("#"), "a preset starts with a comment saying what it is for"
    cfg = JEPAConfig.load(path)
    cfg.validate(check_paths=False)
    assert cfg.logging.run_dir.startswith("runs/")


def test_preset_values() -> None:
    pm = JEPAConfig.load(CONFIG_DIR / "dmc_point_mass.yaml")
    assert (pm.env.id, pm.image_size, pm.embed_dim, pm.env.action_repeat) == ("dmc:point_mass-easy", 64, 2, 4)
    assert (pm.predict_horizon, pm.learning_rate, pm.model.encoder, pm.model.conv_head, pm.data.policy) == (
        3, 1e-3, "conv", "keypoints", "noise")
    assert (pm.planning.samples, pm.planning.iterations, pm.planning.horizon) == (300, 10, 5)
    reacher = JEPAConfig.load(CONFIG_DIR / "dmc_reacher.yaml")
    assert reacher.env.id == "dmc:reacher-easy" and reacher.env.goal_steps == 25
    assert (reacher.env.action_repeat, reacher.model.conv_head, reacher.planning.episode_steps) == (4, "flatten", 50)
    assert reacher.logging.run_dir == "runs/reacher"
    planning = JEPAConfig.load(CONFIG_DIR / "dmc_reacher_planning.yaml")
    assert (planning.env, planning.data) == (reacher.env, reacher.data), "same env and data (one collection)"
    assert (planning.embed_dim, planning.model.conv_head, planning.train.vicreg_within_sequence) == (4, "keypoints", True)
    assert planning.train.cov_weight == 4.0  # the wrist counts in the latent distance (docs/world_model.md)
    assert (planning.planning.horizon, planning.planning.cost_steps) == (5, "min")
    assert planning.logging.run_dir == "runs/reacher_planning"
    for name, dim, heads, size, patch in [("tiny", 192, 3, 64, 8), ("small", 384, 6, 96, 8),
                                          ("base", 768, 12, 224, 16)]:
        cfg = JEPAConfig.load(CONFIG_DIR / f"ijepa_{name}.yaml")
        assert cfg.dataset == "imagefolder"
        assert (cfg.embed_dim, cfg.num_heads, cfg.image_size, cfg.patch_size) == (dim, heads, size, patch)
    assert JEPAConfig.load(CONFIG_DIR / "ijepa_tiny.yaml").learning_rate == 1e-3


def test_pretraining_presets_share_their_worlds_data_and_pick_their_jobs() -> None:
    from torchwm.agents import JEPAAgent
    from torchwm.agents.trajectory_data import TrajectoryData

    jobs = {name: JEPAConfig.load(name).job for name in preset_names()}
    assert jobs["sigreg_tiny"] == jobs["ijepa_tiny"] == jobs["sigreg_point_mass"] == "image_pretraining"
    assert jobs["sigreg_reacher"] == "image_pretraining"
    assert jobs["vjepa_tiny"] == "video_pretraining"
    assert jobs["dmc_point_mass_frozen"] == jobs["dmc_reacher_frozen"] == "world_model"
    # a pretraining run on episodes reads the store of the world-model preset with the same env and data
    pairs = [("sigreg_point_mass", "dmc_point_mass"), ("vjepa_tiny", "dmc_reacher"), ("vjepa_tiny", "dmc_reacher_planning"),
             ("sigreg_reacher", "dmc_reacher_planning"), ("dmc_reacher_frozen", "dmc_reacher_planning")]
    for pretraining, world in pairs:
        a, b = (JEPAAgent(JEPAConfig.load(n), check_paths=False) for n in (pretraining, world))
        assert isinstance(a, TrajectoryData) and a.store_path() == b.store_path(), (pretraining, world)
    for frozen_name, pretraining in (("dmc_point_mass_frozen", "sigreg_point_mass"), ("dmc_reacher_frozen", "sigreg_reacher")):
        frozen = JEPAConfig.load(frozen_name)
        assert frozen.model.freeze_encoder and frozen.model.pretrained == JEPAConfig.load(pretraining).logging.run_dir
        assert JEPAConfig.load(pretraining).pretrain.geometric_augment is False  # views keep where the bodies are


def test_field_rules_check_choices_of_numbers_too():
    """A numeric field with ``choices`` is held to them (the range rules alone would let 3 through)."""
    import dataclasses

    from torchwm.config.fields import field_problems, opt

    @dataclasses.dataclass
    class Section:
        cell: int = opt(4, min=1, choices=(2, 4))
        rate: float = opt(0.5, choices=(0.5, 1.0))

    assert field_problems(Section(), "s.") == []
    assert field_problems(Section(cell=3, rate=0.7), "s.") == [
        "s.cell=3: unknown cell; allowed: 2, 4", "s.rate=0.7: unknown rate; allowed: 0.5, 1.0"]
    assert field_problems(Section(cell=0), "s.") == ["s.cell=0: must be an integer >= 1"]  # the range comes first

"""I-JEPA image pretraining end to end: image folders, the model, the training path of JEPAAgent, exact resume,
the weight-decay schedule, transfer to world models and other agents (load_backbone), probes, the command line
and the ``pretrain`` config section. Tiny ViTs on a few PNGs written by the tests (CPU, seconds)."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from torchwm import JEPAAgent, JEPAConfig
from torchwm.backbone import Backbone, find_model_file, load_backbone, load_encoder
from torchwm.data.images import (ImageFiles, RobustImageFolder, SeededSamples, UnreadableImageWarning,
                                 eval_transform, load_rgb, open_image_folder, train_transform)
from torchwm.data.synthetic import make_shapes_dataset
from torchwm.ema import momentum_schedule
from torchwm.agents import ImagePretrainingAgent
from torchwm.eval.classification import ImageProbeEvaluator, knn_accuracy, linear_probe_accuracy
from torchwm.masks import BlockMask, MaskBatch, MultiBlockMask, RandomMask
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.masked_predictor import MaskedPredictor
from torchwm.pretrain.ijepa import IJEPA
from torchwm.runs import RunDir
from torchwm.schedules import cosine_value
from torchwm.training import ResumableBatchSampler, Trainer, TrainSettings
from torchwm.losses import LossOutput

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, PATCH, EMBED = 16, 8, 32  # a 2x2 patch grid
LOW, HIGH = np.array([-1.0, -1.0]), np.array([1.0, 1.0])


# ------------------------------------------------------------------------------------------ helpers
def write_images(folder: Path, count: int, size: tuple[int, int] = (24, 24), seed: int = 0,
                 prefix: str = "img") -> list[Path]:
    """``count`` random-noise RGB PNGs of ``size`` (width, height) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def write_truncated(path: Path, size: int = 64) -> Path:
    """A valid noise PNG cut to half its bytes."""
    rng = np.random.default_rng(123)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def ijepa_config(root: Path, run_dir: Path, **overrides) -> JEPAConfig:
    items = {
        "dataset": "imagefolder", "root_path": str(root), "image_folder": "train", "image_size": SIZE,
        "patch_size": PATCH, "embed_dim": EMBED, "num_layers": 1, "num_heads": 2, "batch_size": 2, "epochs": 1,
        "learning_rate": 1e-3, "device": "cpu", "train.warmup_steps": 1,
        "pretrain.predictor_dim": 16, "pretrain.predictor_depth": 1, "pretrain.predictor_heads": 2,
        "pretrain.min_keep": 1, "pretrain.num_targets": 2, "pretrain.knn_k": 3,
        "logging.run_dir": str(run_dir), "logging.progress": False, "logging.tensorboard": False,
    }
    items.update(overrides)
    return JEPAConfig().override([f"{k}={v}" for k, v in items.items()]).validate()


def world_model_config(run_dir: Path, **overrides) -> JEPAConfig:
    items = {
        "image_size": SIZE, "embed_dim": EMBED, "env.id": "dmc:point_mass-easy", "model.encoder": "conv",
        "model.conv_width": 4, "model.history": 2, "model.temporal_hidden": 16, "model.predictor_hidden": 32,
        "device": "cpu", "logging.run_dir": str(run_dir), "logging.progress": False, "logging.tensorboard": False,
    }
    items.update(overrides)
    return JEPAConfig().override([f"{k}={v}" for k, v in items.items()]).validate(check_paths=False)


def tiny_ijepa(seed: int = 0, **pretrain) -> IJEPA:
    cfg = JEPAConfig().override(["dataset=imagefolder", f"image_size={SIZE}", f"patch_size={PATCH}",
                                 f"embed_dim={EMBED}", "num_layers=1", "num_heads=2", "pretrain.predictor_dim=16",
                                 "pretrain.predictor_depth=1", "pretrain.predictor_heads=2", "pretrain.min_keep=1"]
                                + [f"pretrain.{k}={v}" for k, v in pretrain.items()])
    torch.manual_seed(seed)
    return JEPAAgent(cfg, check_paths=False).build_model()


def frames(n: int = 3, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def state_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    """A labelled shapes dataset: train/ 3 circles + 3 squares, val/ 2 + 2, 32 px."""
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    make_shapes_dataset(root, train_per_class=3, val_per_class=2, image_size=32, classes=["circle", "square"],
                        progress=False)
    return root


@pytest.fixture(scope="module")
def ijepa_run(shapes_root, tmp_path_factory) -> tuple[JEPAAgent, dict]:
    """A finished tiny I-JEPA run on the shapes folder (probed on its val folder)."""
    run = tmp_path_factory.mktemp("ijepa") / "run"
    cfg = ijepa_config(shapes_root, run, **{"train.steps": 4, "train.eval_every": 2, "logging.log_every": 1})
    torch.manual_seed(0)
    agent = JEPAAgent(cfg)
    metrics = agent.train()
    return agent, metrics


# ------------------------------------------------------------------------ 1. the snippet of the spec
def test_spec_snippet_pretrains_on_an_image_folder(tmp_path, monkeypatch):
    write_images(tmp_path / "data" / "train" / "things", 6)
    monkeypatch.chdir(tmp_path)
    initial: dict[str, torch.Tensor] = {}
    real_build = ImagePretrainingAgent.build_model

    def recording_build(agent):
        model = real_build(agent)
        initial.update({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(ImagePretrainingAgent, "build_model", recording_build)

    cfg = JEPAConfig()
    cfg.dataset = "imagefolder"
    cfg.root_path = "./data"
    cfg.image_folder = "train"
    cfg.epochs = 100
    # shrink it to seconds on a CPU (everything else, logging.run_dir included, keeps its default)
    cfg.image_size, cfg.patch_size, cfg.embed_dim, cfg.num_layers, cfg.num_heads = SIZE, PATCH, EMBED, 1, 2
    cfg.pretrain.predictor_dim, cfg.pretrain.predictor_depth, cfg.pretrain.predictor_heads = 16, 1, 2
    cfg.pretrain.min_keep = 1
    cfg.epochs, cfg.batch_size, cfg.learning_rate = 1, 2, 1e-3
    cfg.logging.progress = False
    JEPAAgent(cfg).train()

    run = tmp_path / "runs" / "default"
    for name in ["config.yaml", "model.pt", "checkpoints/last.pt", "metrics.json", "figures/masks.png"]:
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    with Image.open(run / "figures" / "masks.png") as figure:
        assert figure.format == "PNG" and min(figure.size) > 100
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3  # 1 epoch of 6 images in batches of 2
    for key in ["loss/total", "loss/prediction", "collapse/effective_rank", "train/lr"]:
        assert math.isfinite(metrics[key]), key
    assert metrics["loss/total"] > 0

    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    assert state["kind"] == "image_pretraining" and state["encoder_spec"]["image_size"] == SIZE
    weights = state["model"]
    target = {k: v for k, v in weights.items() if k.startswith("target_encoder.module.")}
    online = {k: v for k, v in weights.items() if k.startswith("encoder.")}
    assert target and online
    target_moved = max(float((v - initial[k]).abs().max()) for k, v in target.items())
    online_moved = max(float((v - initial[k]).abs().max()) for k, v in online.items())
    assert 0 < target_moved < online_moved  # the EMA follows the online encoder, slowly
    # the saved encoder is the EMA target encoder
    for k, v in state["encoder"].items():
        assert torch.equal(v, weights["target_encoder.module." + k]), k
    checkpoint = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert checkpoint["step"] == 3
    assert checkpoint["settings"]["weight_decay_end"] == cfg.pretrain.weight_decay_end
    assert checkpoint["settings"]["seeded_samples"] is True


# ------------------------------------------------------------------------------------ 2. learning
def test_loss_falls_on_a_small_folder(shapes_root, tmp_path):
    cfg = ijepa_config(shapes_root, tmp_path / "run", **{
        "image_size": 32, "num_layers": 2, "batch_size": 6, "learning_rate": 5e-3, "train.steps": 60,
        "train.warmup_steps": 4, "train.metrics_every": 1000, "pretrain.val_folder": "", "pretrain.min_keep": 2,
        "logging.log_every": 1})
    torch.manual_seed(0)
    agent = JEPAAgent(cfg)
    agent.train()
    records = RunDir(agent.run_dir).read_metrics()
    losses = [r["loss/total"] for r in records]
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.8 * first, (first, last)
    assert records[-1]["loss/target_token_std"] > 0.5  # not by collapsing the targets


def test_same_seed_gives_the_same_pretrained_encoder(tmp_path):
    """cfg.seed alone must make a run reproducible, whatever the global RNG did before."""
    write_images(tmp_path / "data" / "train" / "x", 4)
    results = []
    for name, noise in [("a", 1), ("b", 2)]:
        torch.manual_seed(noise)  # unrelated use of the global RNG before the run
        cfg = ijepa_config(tmp_path / "data", tmp_path / name, **{"train.steps": 2, "pretrain.val_folder": ""})
        agent = JEPAAgent(cfg)
        agent.train()
        results.append(agent.model.state_dict())
    state_close(results[0], results[1], atol=0)


# -------------------------------------------------------------------------------- 3. exact resume
class _Killed(Exception):
    pass


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_images(data / "train" / "a", 3, (30, 20), seed=1)
    write_images(data / "train" / "b", 3, (20, 30), seed=2)
    steps, half = 8, 4  # 3 batches per epoch: the interruption and the resume fall inside epochs
    overrides = {"train.steps": steps, "train.checkpoint_every": half, "logging.log_every": 1,
                 "pretrain.val_folder": "", "pretrain.crop_scale_min": 0.2}

    torch.manual_seed(0)  # same initial weights for both runs (the agent does not seed model init)
    full = JEPAAgent(ijepa_config(data, tmp_path / "full", **overrides))
    full.train()

    cfg = ijepa_config(data, tmp_path / "resumed", **overrides)
    real_save = Trainer.save_checkpoint

    def save_then_die(self):
        path = real_save(self)
        if self.step == half:
            raise _Killed
        return path

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", save_then_die)
        torch.manual_seed(0)
        with pytest.raises(_Killed):
            JEPAAgent(cfg).train()
    resumed_dir = tmp_path / "resumed"
    assert torch.load(resumed_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == half
    assert not (resumed_dir / "model.pt").exists()

    torch.manual_seed(12345)  # the resumed process starts from another RNG state
    resumed = JEPAAgent(cfg)
    metrics = resumed.train()
    assert metrics["steps"] == steps
    full_state, resumed_state = full.model.state_dict(), resumed.model.state_dict()
    assert any(k.startswith("target_encoder.") for k in full_state)
    state_close(full_state, resumed_state, atol=1e-6)
    # the same batches, crops and masks: the logged losses agree step by step
    loss = lambda run: {r["step"]: r["loss/total"] for r in RunDir(run).read_metrics()}  # noqa: E731
    full_loss, resumed_loss = loss(tmp_path / "full"), loss(resumed_dir)
    assert sorted(resumed_loss) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        assert resumed_loss[step] == pytest.approx(full_loss[step], abs=1e-6), step


# ------------------------------------------------------------------------------ 4. data robustness
@pytest.fixture
def messy_folder(tmp_path) -> Path:
    """One class folder with odd sizes and modes and a truncated file (sorted: a, b, c, d, e=truncated, f)."""
    folder = tmp_path / "messy" / "cls"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 17, 3), dtype=np.uint8)).save(folder / "a_rgb_17x45.png")
    rgba = rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent (stored colour black)
    rgba[0, 1] = (10, 200, 30, 255)  # opaque
    Image.fromarray(rgba, "RGBA").save(folder / "b_rgba.png")
    Image.fromarray(rng.integers(0, 256, (17, 45), dtype=np.uint8), "L").save(folder / "c_gray_45x17.png")
    rgb = Image.fromarray(rng.integers(0, 256, (33, 21, 3), dtype=np.uint8))
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "d_palette.png")
    write_truncated(folder / "e_truncated.png")
    Image.fromarray(rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)).save(folder / "f_rgb.png")
    return folder.parent


def test_messy_folder_gives_rgb_tensors_and_skips_the_truncated_file(messy_folder):
    dataset = RobustImageFolder(messy_folder, transform=train_transform(SIZE))
    assert len(dataset) == 6 and dataset.classes == ["cls"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[i] for i in range(len(dataset))] + [dataset[4], dataset[4]]
    for image, label in items:
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32 and label == 0
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    unreadable = [w for w in caught if issubclass(w.category, UnreadableImageWarning)]
    assert len(unreadable) == 1, [str(w.message) for w in unreadable]
    assert "e_truncated.png" in str(unreadable[0].message)

    # the truncated file's index returns the next readable image
    deterministic = RobustImageFolder(messy_folder, transform=eval_transform(SIZE))
    with pytest.warns(UnreadableImageWarning, match="e_truncated.png"):
        stand_in, label = deterministic[4]
    assert torch.equal(stand_in, deterministic[5][0]) and label == 0


def test_load_rgb_converts_modes_and_composites_transparency_on_white(messy_folder, tmp_path):
    folder = messy_folder / "cls"
    rgba = load_rgb(str(folder / "b_rgba.png"))
    assert rgba.mode == "RGB"
    assert rgba.getpixel((0, 0)) == (255, 255, 255)  # transparent → white, not the stored black
    assert rgba.getpixel((1, 0)) == (10, 200, 30)  # opaque pixels keep their colour
    gray = load_rgb(str(folder / "c_gray_45x17.png"))
    assert gray.mode == "RGB" and gray.size == (45, 17)
    r, g, b = gray.split()
    assert np.array_equal(np.asarray(r), np.asarray(g)) and np.array_equal(np.asarray(g), np.asarray(b))
    assert load_rgb(str(folder / "d_palette.png")).mode == "RGB"
    # palette with a transparent index, and grey + alpha
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 200, 0, 0] + [0, 0, 0] * 254)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "pal.png", transparency=0)
    assert load_rgb(str(tmp_path / "pal.png")).getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb(str(tmp_path / "pal.png")).getpixel((1, 0)) == (200, 0, 0)
    Image.fromarray(np.array([[[50, 0], [50, 255]]], dtype=np.uint8), "LA").save(tmp_path / "la.png")
    assert load_rgb(str(tmp_path / "la.png")).getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb(str(tmp_path / "la.png")).getpixel((1, 0)) == (50, 50, 50)
    with pytest.raises(OSError):
        load_rgb(str(folder / "e_truncated.png"))


def test_sixteen_bit_grayscale_keeps_its_tones(tmp_path):
    """16-bit PNGs (depth maps, scans) open as mode I;16; their tones must be scaled, not clipped to white."""
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0 .. 65535
    Image.fromarray(ramp).save(tmp_path / "gray16.png")
    with Image.open(tmp_path / "gray16.png") as image:
        assert image.mode.startswith("I")
    rgb = np.asarray(load_rgb(str(tmp_path / "gray16.png"))).astype(int)
    assert rgb.shape == (16, 16, 3)
    np.testing.assert_allclose(rgb[..., 0], ramp >> 8, atol=1)


def test_missing_empty_and_unreadable_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_image_folder(tmp_path, "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty") as err:
        open_image_folder(tmp_path, "empty")
    assert "<class_name>" in str(err.value)  # says which layout is expected
    (tmp_path / "no_images" / "cls").mkdir(parents=True)
    (tmp_path / "no_images" / "cls" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match="no_images"):
        open_image_folder(tmp_path, "no_images")

    corrupt = tmp_path / "corrupt" / "cls"
    corrupt.mkdir(parents=True)
    (corrupt / "a.png").write_bytes(b"not a png at all")
    write_truncated(corrupt / "b.png")
    dataset = open_image_folder(tmp_path, "corrupt", train_transform(SIZE))
    with pytest.warns(UnreadableImageWarning):
        with pytest.raises(RuntimeError, match="none of the 2 images"):
            dataset[0]

    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFiles(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no images"):
        ImageFiles(tmp_path / "empty")


def test_image_files_lists_recursively_and_reports_readability(messy_folder, tmp_path):
    write_images(messy_folder / "deeper" / "more", 1, prefix="z")
    files = ImageFiles(messy_folder, eval_transform(SIZE))
    names = [Path(f).name for f in files.files]
    assert names == ["a_rgb_17x45.png", "b_rgba.png", "c_gray_45x17.png", "d_palette.png", "e_truncated.png",
                     "f_rgb.png", "z00.png"]
    assert [files.readable(i) for i in range(len(files))] == [True] * 4 + [False] + [True] * 2
    image, index = files[1]
    assert image.shape == (3, SIZE, SIZE) and index == 1
    with pytest.warns(UnreadableImageWarning, match="e_truncated"):
        assert files[4][1] == 5


# ---------------------------------------------------------------------------- 5. seeded augmentations
def test_seeded_samples_are_reproducible_and_leave_the_global_rng_alone(tmp_path):
    write_images(tmp_path / "one" / "cls", 2, (40, 40))
    dataset = SeededSamples(RobustImageFolder(tmp_path / "one", train_transform(SIZE, (0.1, 1.0), flip=True)))
    assert len(dataset) == 2
    rng_before = torch.get_rng_state()
    a, b = dataset[(0, 7)][0], dataset[(0, 7)][0]
    c = dataset[[0, 8]][0]
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # another seed: another crop
    assert dataset[1][0].shape == (3, SIZE, SIZE)  # a plain index works too


def test_sampler_with_seeds_yields_index_seed_pairs_and_resumes(tmp_path):
    size, batch = 10, 3
    sampler = ResumableBatchSampler(size, batch, seed=5, with_seeds=True)
    plain = ResumableBatchSampler(size, batch, seed=5)
    it, plain_it = iter(sampler), iter(plain)
    batches = [next(it) for _ in range(8)]  # 3 batches per epoch: crosses two epoch boundaries
    plain_batches = [next(plain_it) for _ in range(8)]
    for pairs, indices in zip(batches, plain_batches):
        assert len(pairs) == batch and all(isinstance(p, tuple) and len(p) == 2 for p in pairs)
        assert [i for i, _ in pairs] == indices  # the same data order as without seeds
    seeds = [s for pairs in batches for _, s in pairs]
    assert len(set(seeds)) == len(seeds)  # every sample of every epoch gets its own seed
    for k in (1, 3, 5):
        again = ResumableBatchSampler(size, batch, seed=5, with_seeds=True)
        again.load_state_dict(sampler.position(k))
        it2 = iter(again)
        assert [next(it2) for _ in range(8 - k)] == batches[k:]
    other = iter(ResumableBatchSampler(size, batch, seed=6, with_seeds=True))
    assert [s for _, s in next(other)] != [s for _, s in batches[0]]


# -------------------------------------------------------------------------- 6. weight-decay schedule
class _Quadratic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, 3))
        self.bias = nn.Parameter(torch.ones(3))

    def loss(self, x: torch.Tensor) -> LossOutput:
        z = x @ self.weight + self.bias
        total = (z ** 2).mean()
        return LossOutput(total, {"total": total.detach()}, z.detach(), len(x))


@pytest.mark.parametrize("end", [0.4, None])
def test_weight_decay_follows_a_cosine_on_the_decayed_group_only(tmp_path, end):
    total = 20
    model = _Quadratic()
    dataset = TensorDataset(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)))
    settings = TrainSettings(total_steps=total, batch_size=4, learning_rate=1e-2, warmup_steps=2, weight_decay=0.04,
                             weight_decay_end=end, log_every=10**6, metrics_every=10**6, eval_every=10**6,
                             checkpoint_every=10**6, progress=False, tensorboard=False)
    trainer = Trainer(model, dataset, settings, tmp_path / "run")
    decayed, no_decay = trainer.optimizer.param_groups
    assert [p is model.weight for p in decayed["params"]] == [True]
    assert [p is model.bias for p in no_decay["params"]] == [True]
    used: list[tuple[float, float]] = []  # (decayed, no-decay) weight decay of each optimizer step
    model.after_step = lambda step, total_steps: used.append((decayed["weight_decay"], no_decay["weight_decay"]))
    trainer.fit()
    assert len(used) == total
    assert all(nd == 0.0 for _, nd in used)
    wd = [d for d, _ in used]
    if end is None:
        assert wd == [0.04] * total
        return
    assert wd[0] == pytest.approx(0.04, abs=1e-12)
    assert wd[-1] == pytest.approx(0.4, abs=0.005)
    assert all(b > a for a, b in zip(wd, wd[1:]))
    for step, value in enumerate(wd):  # the cosine, hand-written
        assert value == pytest.approx(0.4 + (0.04 - 0.4) * 0.5 * (1 + math.cos(math.pi * step / total)))
    assert cosine_value(total, total, 0.04, 0.4) == pytest.approx(0.4)
    assert cosine_value(2 * total, total, 0.04, 0.4) == pytest.approx(0.4)


# ---------------------------------------------------------------------------------------- 7. transfer
def test_pretrained_encoder_in_a_world_model_matches_load_backbone(ijepa_run, tmp_path):
    agent, _ = ijepa_run
    run = agent.run_dir
    cfg = world_model_config(tmp_path / "wm", **{"model.pretrained": str(run)})
    world = JEPAAgent(cfg).build_model(LOW, HIGH)
    assert world.encoder.kind == "vit" and world.embed_dim == EMBED  # model.encoder=conv is overridden
    backbone, encoder = load_backbone(run), load_encoder(run)
    x = frames(6)
    with torch.no_grad():
        z_world = world.encode(x.reshape(2, 3, 3, SIZE, SIZE))
        z_backbone, z_encoder = backbone(x), encoder(x)
        z_agent = agent.model.backbone(x)
    assert z_world.shape == (2, 3, EMBED)
    torch.testing.assert_close(z_world.reshape(6, EMBED), z_backbone, atol=0, rtol=0)
    torch.testing.assert_close(z_encoder, z_backbone, atol=0, rtol=0)
    torch.testing.assert_close(z_agent, z_backbone, atol=1e-6, rtol=0)
    # the encoder is the EMA target encoder, not the online one
    assert not torch.allclose(agent.model.encoder(x), z_agent)
    # the same from model.pt, and from checkpoints/last.pt when model.pt is gone
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "model.pt").unlink()
    for source in (run / "model.pt", copy, copy / "checkpoints" / "last.pt"):
        with torch.no_grad():
            torch.testing.assert_close(load_encoder(source)(x), z_backbone, atol=1e-6, rtol=0)
    wrong = world_model_config(tmp_path / "wm2", image_size=2 * SIZE, **{"model.pretrained": str(run)})
    with pytest.raises(ValueError, match="image_size"):
        JEPAAgent(wrong).build_model(LOW, HIGH)


def test_world_model_with_a_pretrained_encoder_saves_and_loads_without_the_file(ijepa_run, tmp_path):
    agent, _ = ijepa_run
    pretrained = tmp_path / "pretrained"
    shutil.copytree(agent.run_dir, pretrained)
    cfg = world_model_config(tmp_path / "wm", **{"model.pretrained": str(pretrained / "model.pt")})
    saver = JEPAAgent(cfg, check_paths=False)
    saver.world_model = saver.build_model(LOW, HIGH)
    saver.save()
    shutil.rmtree(pretrained)
    loaded = JEPAAgent.load(tmp_path / "wm")
    x = frames(4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.world_model.encode(x), saver.world_model.encode(x), atol=0, rtol=0)


def test_backbone_of_a_world_model_run_reproduces_its_encoder(tmp_path):
    cfg = world_model_config(tmp_path / "wm")
    torch.manual_seed(0)
    agent = JEPAAgent(cfg, check_paths=False)
    agent.world_model = agent.build_model(LOW, HIGH).eval()
    agent.save()
    backbone = load_backbone(tmp_path / "wm")
    assert backbone.encoder.kind == "conv" and backbone.num_features == EMBED and backbone.image_size == SIZE
    x = frames(4)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), agent.world_model.encode(x), atol=0, rtol=0)
    # an interrupted world-model run: only a trainer checkpoint (whole model, config, encoder spec and prefix)
    from torchwm.runs import checkpoint_extras

    ckpt = tmp_path / "interrupted" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    model = agent.world_model
    extras = checkpoint_extras(cfg.to_dict(), model, model.backbone)
    assert extras["encoder_prefix"] == "encoder." and extras["encoder_spec"] == model.encoder.spec
    torch.save({"step": 3, "model": model.state_dict(), **extras}, ckpt)
    with torch.no_grad():
        torch.testing.assert_close(load_encoder(tmp_path / "interrupted")(x), model.encode(x), atol=0, rtol=0)
    # a checkpoint without the spec (an older torchwm's) says how to get one
    torch.save({"step": 3, "config": cfg.to_dict(), "model": model.state_dict()}, ckpt)
    with pytest.raises(ValueError, match="last.pt: holds no encoder spec.*resume the run"):
        load_encoder(tmp_path / "interrupted")


def test_load_backbone_inputs_outputs_and_freezing(ijepa_run):
    run = ijepa_run[0].run_dir
    backbone = load_backbone(run)
    assert isinstance(backbone, Backbone) and backbone.image_size == SIZE and backbone.num_features == EMBED
    x = frames(3)
    with torch.no_grad():
        z = backbone(x)
        assert z.shape == (3, EMBED) and torch.isfinite(z).all()
        assert torch.equal(backbone(x), z)  # deterministic
        as_uint8 = (x * 255).round().to(torch.uint8)
        torch.testing.assert_close(backbone(as_uint8), backbone(as_uint8.float() / 255), atol=1e-6, rtol=0)
        # other sizes are resized: a flat colour stays a flat colour
        flat_small = torch.full((2, 3, SIZE, SIZE), 0.3)
        flat_big = torch.full((2, 3, 3 * SIZE, 2 * SIZE), 0.3)
        torch.testing.assert_close(backbone(flat_big), backbone(flat_small), atol=1e-5, rtol=0)
        assert backbone(torch.rand(2, 3, 37, 23)).shape == (2, EMBED)
        tokens = backbone.forward_features(x)
        assert tokens.shape == (3, (SIZE // PATCH) ** 2, EMBED)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        backbone(torch.rand(3, SIZE, SIZE))
    # frozen by default, and it stays in eval mode inside a module put in training mode
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.encoder.training
    trainable = load_backbone(run, trainable=True)
    assert all(p.requires_grad for p in trainable.parameters())
    trainable(x).pow(2).mean().backward()
    grads = [p.grad for p in trainable.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_find_model_file_and_load_encoder_errors_name_the_path(tmp_path, ijepa_run):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        find_model_file(missing)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty_run") as err:
        find_model_file(empty)
    assert "model.pt" in str(err.value) and "last.pt" in str(err.value)
    run = ijepa_run[0].run_dir
    assert find_model_file(run) == run / "model.pt"
    assert find_model_file(run / "checkpoints" / "last.pt") == run / "checkpoints" / "last.pt"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        load_encoder(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="other.pt"):
        load_encoder(other)


# ------------------------------------------------------------------- 8. encoder tokens, predictor, I-JEPA
def test_forward_tokens_and_pool_agree_with_forward():
    torch.manual_seed(0)
    encoder = SpatialEncoder.vit(SIZE, PATCH, EMBED, 2, 2).eval()
    assert encoder.grid_size == (2, 2)
    length = 4
    x = frames(3)
    with torch.no_grad():
        tokens = encoder.forward_tokens(x)
        assert tokens.shape == (3, length, EMBED)
        assert torch.equal(encoder.pool(tokens), encoder(x))
        everything = torch.arange(length).expand(3, -1)
        torch.testing.assert_close(encoder.forward_tokens(x, everything), tokens, atol=0, rtol=0)
        # dropped patches never enter the transformer: their pixels do not matter
        keep = torch.tensor([[0, 3], [1, 2], [0, 1]])
        kept = encoder.forward_tokens(x, keep)
        assert kept.shape == (3, 2, EMBED)
        changed = x.clone()
        for row, patches in enumerate(keep.tolist()):
            for p in set(range(length)) - set(patches):
                r, c = divmod(p, 2)
                changed[row, :, r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = torch.rand(3, PATCH, PATCH)
        torch.testing.assert_close(encoder.forward_tokens(changed, keep), kept, atol=0, rtol=0)
        assert not torch.allclose(encoder.forward_tokens(changed), tokens)  # but the full pass sees them
    conv = SpatialEncoder.conv(SIZE, EMBED, width=4)
    with pytest.raises(TypeError, match="ViT"):
        conv.forward_tokens(x)
    with pytest.raises(TypeError, match="ViT"):
        conv.grid_size


def test_masked_predictor_shapes_positions_and_independent_blocks():
    torch.manual_seed(0)
    grid = (4, 4)
    predictor = MaskedPredictor(grid, EMBED, dim=16, depth=1, num_heads=2).eval()
    context = torch.randn(2, 5, EMBED)
    context_idx = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    targets = torch.tensor([[[10, 11], [14, 15]], [[12, 13], [0, 1]]])
    with torch.no_grad():
        out = predictor(context, context_idx, targets)
        assert out.shape == (2, 2, 2, EMBED)
        moved = targets.clone()
        moved[:, 1] = torch.tensor([[2, 3], [2, 3]])  # move only the second block
        out_moved = predictor(context, context_idx, moved)
        torch.testing.assert_close(out_moved[:, 0], out[:, 0])  # blocks do not see each other
        assert not torch.allclose(out_moved[:, 1], out[:, 1], atol=1e-4)  # positions matter
        # the context, and where it sits, matter too (at init attention is nearly uniform and the context
        # embedding tiny, which hides both: use larger weights)
        for module in predictor.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.3)
        out = predictor(context, context_idx, targets)
        assert (predictor(context, context_idx.flip(1), targets) - out).abs().max() > 0.05
        assert (predictor(context, context_idx + 6, targets) - out).abs().max() > 0.05
        assert (predictor(torch.randn(2, 5, EMBED), context_idx, targets) - out).abs().max() > 0.05
    with pytest.raises(ValueError, match="divisible"):
        MaskedPredictor(grid, EMBED, dim=10, depth=1, num_heads=3)


def test_ijepa_loss_gradients_and_embeddings():
    model = tiny_ijepa()
    images = frames(4)
    masks = MultiBlockMask((2, 2), num_targets=2, min_keep=1)(4, torch.Generator().manual_seed(0))
    out = model.loss(images, masks)
    assert out.total.dim() == 0 and math.isfinite(out.total.item()) and out.frames == 4
    assert set(out.terms) >= {"total", "prediction", "target_token_std", "predicted_token_std"}
    with torch.no_grad():
        torch.testing.assert_close(out.embeddings, model.backbone(images), atol=1e-6, rtol=0)
    out.total.backward()
    assert model.encoder.backbone.patch_embed.proj.weight.grad is not None
    assert model.predictor.embed.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in model.target_encoder.parameters())
    with pytest.raises(ValueError, match="ViT"):
        IJEPA(SpatialEncoder.conv(SIZE, EMBED, width=4), MaskedPredictor((1, 1), EMBED, 16, 1, 2))


def test_after_step_moves_the_target_encoder_by_the_ema_formula():
    model = tiny_ijepa(**{"ema_start": 0.9, "ema_end": 1.0})
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))
    name = "backbone.patch_embed.proj.weight"
    online = dict(model.encoder.named_parameters())[name]
    target = dict(model.target_encoder.module.named_parameters())[name]
    for step, total, momentum in [(0, 10, 0.9), (5, 10, 0.95), (10, 10, 1.0)]:
        assert momentum_schedule(step, total, 0.9, 1.0) == pytest.approx(momentum)
        before = target.detach().clone()
        model.after_step(step, total)
        expected = momentum * before + (1 - momentum) * online.detach()
        torch.testing.assert_close(target.detach(), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(target, online)


@pytest.mark.parametrize("mask,kind,targets", [("multiblock", MultiBlockMask, 2), ("block", BlockMask, 1),
                                               ("random", RandomMask, 1)])
def test_the_agents_mask_sampler_follows_the_config(mask, kind, targets):
    cfg = JEPAConfig().override(["dataset=imagefolder", "image_size=32", "patch_size=8", f"pretrain.mask={mask}",
                                 "pretrain.num_targets=2", "pretrain.min_keep=3", "mask_ratio=0.5"])
    sampler = JEPAAgent(cfg, check_paths=False).mask_sampler()
    assert sampler.grid == (4, 4)
    assert isinstance(sampler, kind)
    batch = sampler(3, torch.Generator().manual_seed(0))
    assert isinstance(batch, MaskBatch) and batch.targets.shape[:2] == (3, targets)
    assert batch.context.shape[1] >= 3
    if mask == "random":
        assert batch.context.shape[1] == 8


# ---------------------------------------------------------------------------------------------- 9. probes
def test_probes_separate_separable_features_and_not_random_labels():
    rng = np.random.default_rng(0)
    n, d = 200, 8
    y_train, y_val = rng.integers(0, 2, n), rng.integers(0, 2, n)
    direction = rng.normal(size=d)
    x_train = rng.normal(size=(n, d)) + 4 * np.outer(2 * y_train - 1, direction)
    x_val = rng.normal(size=(n, d)) + 4 * np.outer(2 * y_val - 1, direction)
    assert linear_probe_accuracy(x_train, y_train, x_val, y_val) >= 0.98
    assert knn_accuracy(x_train, y_train, x_val, y_val, k=5) >= 0.98
    noise_train, noise_val = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    assert 0.35 <= linear_probe_accuracy(noise_train, y_train, noise_val, y_val) <= 0.65
    assert 0.35 <= knn_accuracy(noise_train, y_train, noise_val, y_val, k=5) <= 0.65
    # four classes: chance is 1/4
    y4_train, y4_val = rng.integers(0, 4, n), rng.integers(0, 4, n)
    assert knn_accuracy(noise_train, y4_train, noise_val, y4_val, k=5) <= 0.4


def test_the_agents_image_probe(shapes_root, tmp_path, ijepa_run):
    cfg = ijepa_config(shapes_root, tmp_path / "run")
    assert cfg.pretrain.val_folder == "val"
    evaluator = JEPAAgent(cfg).probe()
    assert isinstance(evaluator, ImageProbeEvaluator)
    assert evaluator is not None and len(evaluator.train_set) == 6 and len(evaluator.val_set) == 4
    scalars = evaluator(ijepa_run[0].model, step=1)
    assert set(scalars) == {"probe/linear_accuracy", "probe/knn_accuracy"}
    assert all(0.0 <= v <= 1.0 for v in scalars.values())
    for val in ("", "missing"):
        assert JEPAAgent(ijepa_config(shapes_root, tmp_path / "run", **{"pretrain.val_folder": val})).probe() is None
    # the pretraining run with a val folder logged the probe
    _, metrics = ijepa_run
    assert 0.0 <= metrics["probe/linear_accuracy"] <= 1.0 and 0.0 <= metrics["probe/knn_accuracy"] <= 1.0
    probed = [r["step"] for r in RunDir(ijepa_run[0].run_dir).read_metrics() if "probe/knn_accuracy" in r]
    assert probed == [2, 4]


# ------------------------------------------------------------------------------------------------ 10. CLI
def test_cli_embed_writes_features_for_readable_images(ijepa_run, tmp_path, capsys):
    from torchwm.cli import main

    images = tmp_path / "images"
    write_images(images / "b", 2, (SIZE, SIZE), seed=3)
    write_images(images / "a" / "deep", 1, (SIZE, SIZE), seed=4)
    write_truncated(images / "b" / "img01_broken.png")  # sorts between img00 and img01 of b
    out = tmp_path / "out" / "feats.npy"
    with pytest.warns(UnreadableImageWarning, match="img01_broken"):
        main(["embed", "--run", str(ijepa_run[0].run_dir), "--images", str(images), "--out", str(out)])
    assert "1 unreadable skipped" in capsys.readouterr().out
    feats = np.load(out)
    listed = out.with_suffix(".files.txt").read_text().splitlines()
    expected = [images / "a" / "deep" / "img00.png", images / "b" / "img00.png", images / "b" / "img01.png"]
    assert listed == [str(p) for p in expected]
    assert feats.shape == (3, EMBED) and feats.dtype == np.float32
    backbone = load_backbone(ijepa_run[0].run_dir)
    from torchvision.transforms.functional import to_tensor

    with torch.no_grad():
        for row, path in zip(feats, expected):
            ref = backbone(to_tensor(load_rgb(str(path)))[None])[0].numpy()
            np.testing.assert_allclose(row, ref, atol=1e-5)
    with pytest.raises(SystemExit, match="nowhere"):
        main(["embed", "--run", str(ijepa_run[0].run_dir), "--images", str(tmp_path / "nowhere"),
              "--out", str(out)])
    with pytest.raises(SystemExit, match="no_run"):
        main(["embed", "--run", str(tmp_path / "no_run"), "--images", str(images), "--out", str(out)])


def test_cli_embed_handles_images_of_different_sizes(ijepa_run, tmp_path):
    """Real folders mix sizes; the backbone resizes, so embedding them must work."""
    from torchwm.cli import main

    images = tmp_path / "images"
    write_images(images, 1, (SIZE, SIZE), prefix="a")
    write_images(images, 1, (40, 24), prefix="b")
    out = tmp_path / "feats.npy"
    main(["embed", "--run", str(ijepa_run[0].run_dir), "--images", str(images), "--out", str(out)])
    assert np.load(out).shape == (2, EMBED)


def test_cli_visualize_draws_the_masks(ijepa_run, tmp_path, capsys):
    from torchwm.cli import main

    run = tmp_path / "run"
    shutil.copytree(ijepa_run[0].run_dir, run)
    (run / "figures" / "masks.png").unlink()
    main(["visualize", "--run", str(run)])
    assert "masks.png" in capsys.readouterr().out
    with Image.open(run / "figures" / "masks.png") as figure:
        assert figure.format == "PNG"
    other = tmp_path / "other"
    write_images(other, 2)
    main(["visualize", "--run", str(run), "--images", str(other), "--count", "2"])
    assert (run / "figures" / "masks.png").is_file()
    with pytest.raises(SystemExit, match="cannot load"):
        main(["visualize", "--run", str(tmp_path / "nothing")])


def test_cli_pretrain_refuses_a_world_model_config_and_runs_an_image_config(tmp_path, shapes_root, capsys):
    from torchwm.cli import main

    world = tmp_path / "world.yaml"
    JEPAConfig().save(world)
    with pytest.raises(SystemExit, match="imagefolder"):
        main(["pretrain", "--config", str(world)])
    image_cfg = tmp_path / "image.yaml"
    ijepa_config(shapes_root, tmp_path / "run").save(image_cfg)
    main(["pretrain", "--config", str(image_cfg), "--set", "train.steps=2"])
    out = capsys.readouterr().out
    assert "pretrained 2 steps" in out and "linear probe" in out
    assert (tmp_path / "run" / "model.pt").is_file()


def test_cli_shapes_writes_a_dataset(tmp_path):
    from torchwm.cli import main

    out = tmp_path / "shapes"
    main(["shapes", "--out", str(out), "--train-per-class", "1", "--val-per-class", "1", "--image-size", "16",
          "--classes", "circle", "square", "--no-progress"])
    assert sorted(p.name for p in (out / "train").iterdir()) == ["circle", "square"]


# --------------------------------------------------------------------------------------------- 11. config
@pytest.mark.parametrize("items,field", [
    ({"pretrain.target_scale_min": 0.3, "pretrain.target_scale_max": 0.2}, "pretrain.target_scale_min"),
    ({"pretrain.target_aspect_min": 2.0, "pretrain.target_aspect_max": 1.5}, "pretrain.target_aspect_min"),
    ({"pretrain.context_scale_min": 0.9, "pretrain.context_scale_max": 0.8}, "pretrain.context_scale_min"),
    ({"pretrain.ema_start": 1.0, "pretrain.ema_end": 0.99}, "pretrain.ema_start"),
    ({"pretrain.predictor_dim": 10, "pretrain.predictor_heads": 3}, "pretrain.predictor_dim"),
    ({"pretrain.min_keep": 4}, "pretrain.min_keep"),
    ({"pretrain.min_keep": 0}, "pretrain.min_keep"),
    ({"pretrain.mask": "grid"}, "pretrain.mask"),
    ({"pretrain.crop_scale_min": 0.0}, "pretrain.crop_scale_min"),
    ({"embed_dim": 30, "num_heads": 4}, "embed_dim"),
])
def test_invalid_pretrain_settings_name_the_field(tmp_path, items, field):
    base = {"dataset": "imagefolder", "image_size": SIZE, "patch_size": PATCH, "embed_dim": EMBED, "num_heads": 2}
    cfg = JEPAConfig().override([f"{k}={v}" for k, v in {**base, **items}.items()])
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        cfg.validate(check_paths=False)


def test_valid_pretrain_section_round_trips_and_min_keep_is_only_checked_for_images(tmp_path):
    cfg = JEPAConfig().override(["dataset=imagefolder", f"image_size={SIZE}", f"patch_size={PATCH}",
                                 "pretrain.min_keep=3", "pretrain.num_targets=2", "pretrain.mask=block"])
    cfg.validate(check_paths=False)  # 3 < 4 patches
    cfg.save(tmp_path / "c.yaml")
    assert JEPAConfig.load(tmp_path / "c.yaml") == cfg
    assert JEPAConfig.load(tmp_path / "c.yaml").pretrain.mask == "block"
    world = JEPAConfig().override([f"image_size={SIZE}", f"patch_size={PATCH}", "pretrain.min_keep=4"])
    world.validate(check_paths=False)  # the pretrain grid check applies to image pretraining only
    with pytest.raises(ValueError, match="root_path/image_folder"):
        cfg.override([f"root_path={tmp_path / 'absent'}"]).validate()


# ------------------------------------------------------------------------------------------ TensorBoard
def test_ijepa_run_logs_mask_figure_probe_and_collapse_metrics(shapes_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = ijepa_config(shapes_root, tmp_path / "run", **{"train.steps": 2, "train.eval_every": 2,
                                                          "train.metrics_every": 1, "logging.log_every": 1,
                                                          "logging.tensorboard": True})
    JEPAAgent(cfg).train()
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "masks/examples" in tags["images"]
    figure = acc.Images("masks/examples")[-1]
    assert figure.width > 300 and figure.height > 100
    for tag in ["probe/linear_accuracy", "probe/knn_accuracy"]:
        assert [e.step for e in acc.Scalars(tag)] == [2] and 0.0 <= acc.Scalars(tag)[0].value <= 1.0
    ranks = [e.value for e in acc.Scalars("collapse/effective_rank")]
    assert len(ranks) == 2 and all(1.0 <= r <= EMBED for r in ranks)
    assert all(e.value > 0 for e in acc.Scalars("loss/target_token_std"))

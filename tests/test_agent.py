"""JEPAAgent and the command line, end to end on a tiny point_mass run (CPU, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from torchwm import JEPAAgent, JEPAConfig
from torchwm.eval.goal_reaching import GoalReaching, PolicyResult, episode_seeds, wilson_interval


def _tiny_config(tmp_path, **overrides) -> JEPAConfig:
    items = {
        "image_size": 16, "embed_dim": 16, "batch_size": 4, "learning_rate": 1e-3, "predict_horizon": 2,
        "env.id": "dmc:point_mass-easy", "model.encoder": "conv", "model.conv_width": 4, "model.history": 2,
        "model.temporal_hidden": 16, "model.predictor_hidden": 32, "data.episodes": 4, "data.steps": 12,
        "data.workers": 1, "data.path": str(tmp_path / "store"), "train.steps": 6, "train.eval_every": 3,
        "train.checkpoint_every": 3, "train.metrics_every": 3, "train.warmup_steps": 2,
        "planning.samples": 16, "planning.elites": 4, "planning.iterations": 2, "planning.horizon": 3,
        "planning.episode_steps": 3, "planning.eval_episodes": 2, "planning.parallel": 2, "planning.videos": 1,
        "logging.run_dir": str(tmp_path / "run"), "logging.log_every": 2, "logging.progress": False,
    }
    items.update(overrides)
    return JEPAConfig().override([f"{k}={v}" for k, v in items.items()]).validate()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent")
    cfg = _tiny_config(tmp)
    agent = JEPAAgent(cfg)
    metrics = agent.train()
    return agent, metrics, tmp


def test_train_writes_a_complete_run_directory(trained):
    agent, metrics, _ = trained
    run = agent.run_dir
    assert (run / "config.yaml").exists() and (run / "model.pt").exists()
    assert (run / "checkpoints" / "last.pt").exists()
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert JEPAConfig.load(run / "config.yaml") == agent.cfg
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["steps"] == metrics["steps"] == 6
    for key in ["loss/prediction", "loss/variance", "collapse/effective_rank", "eval/pred_error_step1",
                "eval/copy_error_step4", "eval/probe_r2", "eval/probe_knn_r2", "train/frames_per_s"]:
        assert key in saved and np.isfinite(saved[key]), key
    assert saved["eval/probe_knn_r2"] <= 1.0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6


def test_train_again_resumes_without_retraining(trained):
    agent, metrics, _ = trained
    before = (agent.run_dir / "checkpoints" / "last.pt").read_bytes()
    again = JEPAAgent(agent.cfg).train()
    assert again["steps"] == 6
    assert (agent.run_dir / "checkpoints" / "last.pt").read_bytes() == before


def test_resuming_with_a_different_config_is_refused(trained):
    agent, _, _ = trained
    changed = agent.cfg.override(["learning_rate=0.01"])
    with pytest.raises(ValueError, match="different config"):
        JEPAAgent(changed).train()


def test_load_gives_the_same_model(trained):
    agent, _, _ = trained
    loaded = JEPAAgent.load(agent.run_dir)
    frames = torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        a = agent.world_model.encode(frames)
        b = loaded.world_model.encode(frames)
    torch.testing.assert_close(a, b)
    for (name, p), (_, q) in zip(agent.world_model.state_dict().items(), loaded.world_model.state_dict().items()):
        assert torch.equal(p, q), name


def test_load_of_a_missing_run_names_what_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pt"):
        JEPAAgent.load(tmp_path / "nothing")


def test_plan_returns_an_action_within_bounds(trained):
    agent, _, _ = trained
    rng = np.random.default_rng(0)
    history = rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    goal = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    action = agent.plan(history, goal)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
    assert agent.plan(history[0], goal).shape == (2,)  # one frame is padded to the history
    with pytest.raises(ValueError, match="frames_history"):
        agent.plan(rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8), goal)


def test_training_fits_the_step_whitening_and_planning_whiten_uses_it(trained, capsys):
    from torchwm.planning.costs import step_whitening

    agent, _, tmp = trained
    store = agent.collect()
    episodes = agent.split(store)[0]
    with torch.no_grad():  # the whitening of the training episodes' embeddings, recomputed by hand
        z = [agent.model.encode(torch.as_tensor(np.array(store.episode(i).frames))) for i in episodes]
    saved = JEPAAgent.load(agent.run_dir).model.whitening
    assert saved is not None and torch.allclose(saved, step_whitening(z), atol=1e-4)
    assert agent.planner().whitening is None  # off unless planning.whiten

    loaded = JEPAAgent.load(agent.run_dir)
    loaded.cfg.planning.whiten = True
    assert torch.equal(loaded.planner().whitening, saved)
    loaded.model.latent_whitening.zero_()  # as a model saved before the whitening existed: fitted on first use
    assert torch.allclose(loaded.planner().whitening, saved, atol=1e-5)
    assert "fitting the model's step whitening" in capsys.readouterr().out


def test_evaluate_writes_results_videos_and_compares_with_random(trained):
    agent, _, _ = trained
    result = agent.evaluate()
    assert set(result.results) == {"planner", "random"}
    for r in result.results.values():
        assert len(r.success) == 2 and np.all(np.isfinite(r.final_distance))
        assert np.all(r.min_distance <= r.final_distance + 1e-12)
    saved = json.loads((agent.run_dir / "eval" / "goal_reaching.json").read_text())
    assert saved["episodes"] == 2 and saved["seeds"] == episode_seeds(agent.cfg.seed, 2)
    assert saved["summary"]["planner"]["ms_per_step"] > 0
    gifs = sorted((agent.run_dir / "eval" / "videos").glob("*.gif"))
    assert len(gifs) == 1
    from PIL import Image

    with Image.open(gifs[0]) as gif:  # Pillow merges identical frames and adds up their durations
        assert gif.size == (2 * 2 * 16 + 2 * 2, 2 * 16)
        total_ms = 0
        for i in range(gif.n_frames):
            gif.seek(i)
            total_ms += gif.info["duration"]
    assert total_ms == 100 * (agent.cfg.planning.episode_steps + 1)
    assert "| planner |" in result.table() and "| random |" in result.table()


def test_same_seed_gives_the_same_evaluation(trained):
    agent, _, _ = trained
    a = agent.evaluate(episodes=2, baseline=False, videos=0)
    b = agent.evaluate(episodes=2, baseline=False, videos=0)
    np.testing.assert_allclose(a.results["planner"].final_distance, b.results["planner"].final_distance)


@pytest.mark.parametrize("successes,n,low,high", [
    (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (81, 100, 0.7222, 0.8749),
])
def test_wilson_interval_matches_known_values(successes, n, low, high):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_results_table_reports_steps_to_success_only_where_goals_were_reached():
    reached = PolicyResult(np.array([True, False]), np.array([0.01, 0.3]), np.array([0.01, 0.2]), np.array([7, -1]),
                           2.5, 1.25)
    never = PolicyResult(np.array([False, False]), np.array([0.3, 0.4]), np.array([0.2, 0.3]), np.array([-1, -1]),
                         0.0, 0.0)
    table = GoalReaching("dmc:point_mass-easy", [0, 1], 10, {"planner": reached, "random": never}).table()
    assert "| planner | 50% | 9%-91% | 0.155 | 7.0 | 2.5 | 1.2 |" in table
    assert "| random | 0% | 0%-66% | 0.350 | - | 0.0 | 0.0 |" in table and "nan" not in table


def test_cli_train_and_plan(tmp_path, capsys):
    from torchwm.cli import main

    cfg = _tiny_config(tmp_path, **{"train.steps": 3})
    path = tmp_path / "tiny.yaml"
    cfg.save(path)
    main(["train", "--config", str(path), "--set", "train.eval_every=3"])
    assert "trained 3 steps" in capsys.readouterr().out
    main(["plan", "--run", str(tmp_path / "run"), "--episodes", "2", "--set", "planning.videos=0"])
    out = capsys.readouterr().out
    assert "| planner |" in out and "goal_reaching.json" in out
    saved = lambda path: json.loads((tmp_path / "run" / path / "goal_reaching.json").read_text())  # noqa: E731
    assert saved("eval")["seeds"] == episode_seeds(cfg.seed, 2)
    main(["plan", "--run", str(tmp_path / "run"), "--episodes", "2", "--seed", str(cfg.seed + 1),
          "--set", "planning.videos=0"])
    fresh = f"eval/seed-{cfg.seed + 1}"
    assert f"{fresh}/goal_reaching.json" in capsys.readouterr().out
    assert saved(fresh)["seeds"] == episode_seeds(cfg.seed + 1, 2) != episode_seeds(cfg.seed, 2)  # fresh episodes
    assert saved("eval")["seeds"] == episode_seeds(cfg.seed, 2), "the run's own evaluation was replaced"
    own = saved("eval")
    main(["plan", "--run", str(tmp_path / "run"), "--episodes", "2", "--set", "planning.videos=0",
          "--set", f"planning.horizon={cfg.planning.horizon + 1}", "--set", "planning.cost_steps=all"])
    other = f"eval/cost_steps=all,horizon={cfg.planning.horizon + 1}"
    assert f"{other}/goal_reaching.json" in capsys.readouterr().out
    assert saved(other)["planning"]["horizon"] == cfg.planning.horizon + 1
    assert saved("eval") == own, "an evaluation with other planning settings replaced the run's own"
    with pytest.raises(SystemExit, match="not a run directory"):
        main(["plan", "--run", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="planning.samples"):
        main(["train", "--config", str(path), "--set", "planning.samples=0"])


# ------------------------------------------------------------------------------------- TensorBoard
def _events(run_dir):
    """Everything TensorBoard's own reader finds in ``run_dir`` (all event files in it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _png_size(encoded: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as img:
        return img.size


def test_training_logs_rollout_views_projector_and_hparams(trained):
    agent, metrics, _ = trained
    acc = _events(agent.run_dir)
    tags = acc.Tags()
    for tag in ["rollouts/pca", "rollouts/error_by_step", "rollouts/imagined"]:
        assert tag in tags["images"], tag
        events = acc.Images(tag)
        assert [e.step for e in events] == [3, 6]  # every train.eval_every steps, at fixed windows
        assert _png_size(events[-1].encoded_image_string) == (events[-1].width, events[-1].height)
    for tag in ["rollouts/pca", "rollouts/error_by_step"]:  # matplotlib figures
        assert acc.Images(tag)[-1].width > 300 and acc.Images(tag)[-1].height > 200
    # imagined strip: 2 rows (true future, retrieved) for each of 4 trajectories, 2*horizon=4 columns of
    # 16 px frames with 2 px padding
    imagined = acc.Images("rollouts/imagined")[-1]
    assert (imagined.width, imagined.height) == (4 * (16 + 2) + 2, 2 * 4 * (16 + 2) + 2)
    # scalars are finite and in range; collapse metrics grouped under one prefix
    for tag in ["loss/prediction", "collapse/embedding_std", "collapse/effective_rank", "eval/probe_r2_train"]:
        values = [e.value for e in acc.Scalars(tag)]
        assert values and np.all(np.isfinite(values)), tag
    assert all(1.0 <= e.value <= 16.0 for e in acc.Scalars("collapse/effective_rank"))
    # projector: config plus tensors, metadata (with a header) and sprite for the held-out frames
    run = agent.run_dir
    config = (run / "projector_config.pbtxt").read_text()
    assert "heldout_frames" in config and "sprite" in config
    folder = next(p for p in run.iterdir() if p.is_dir() and (p / "heldout_frames" / "tensors.tsv").exists())
    tensors = (folder / "heldout_frames" / "tensors.tsv").read_text().splitlines()
    meta = (folder / "heldout_frames" / "metadata.tsv").read_text().splitlines()
    assert meta[0].split("\t") == ["root_x", "root_y"] and len(meta) == len(tensors) + 1
    assert len(tensors[0].split("\t")) == agent.cfg.embed_dim
    assert (folder / "heldout_frames" / "sprite.png").exists()
    # hyperparameters with the final metrics, and the same as a text table
    assert any(t.startswith("_hparams_/") for t in acc.summary_metadata)
    assert "run/config/text_summary" in tags["tensors"] and "run/final_metrics/text_summary" in tags["tensors"]
    text = acc.Tensors("run/config/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "`learning_rate`" in text and "`planning.samples`" in text


def test_evaluation_logs_videos_cost_traces_and_success_rates(trained):
    agent, _, _ = trained
    agent.evaluate(episodes=2)
    acc = _events(agent.run_dir)
    tags = acc.Tags()
    assert "goal_reaching/episode_00" in tags["images"]
    strip = acc.Images("goal_reaching/episode_00")[-1]
    frames = agent.cfg.planning.episode_steps + 1  # each frame: observation | 2 px | goal, side by side
    assert (strip.width, strip.height) == (frames * (2 * 16 + 2), 16)
    assert "goal_reaching/episode_00_cost" in tags["images"]
    for name in ["planner", "random"]:
        rates = [e.value for e in acc.Scalars(f"goal_reaching/{name}_success_rate")]
        assert rates and all(0.0 <= r <= 1.0 for r in rates)


def test_visualize_cli_makes_rollout_figures_of_a_saved_run(trained, capsys):
    from torchwm.cli import main

    agent, _, _ = trained
    figures = agent.run_dir / "figures"
    for png in figures.glob("*.png"):
        png.unlink()
    main(["visualize", "--run", str(agent.run_dir)])
    assert "figures: error_by_step.png, imagined.png, pca.png" in capsys.readouterr().out
    from PIL import Image

    names = sorted(p.name for p in figures.glob("*.png"))
    assert names == ["error_by_step.png", "imagined.png", "pca.png"]
    with Image.open(figures / "pca.png") as img:
        assert img.size[0] > 300 and np.asarray(img.convert("L")).std() > 5  # a drawn figure, not blank


# ------------------------------------------------------------------------------------- one agent per job
def test_jepa_agent_returns_the_agent_of_the_configs_job(tmp_path):
    from torchwm.agents import ImagePretrainingAgent, WorldModelAgent

    world = JEPAAgent(_tiny_config(tmp_path))
    assert type(world) is WorldModelAgent and isinstance(world, JEPAAgent) and world.job == "world_model"
    image_cfg = JEPAConfig().override(["dataset=imagefolder", "image_size=32", "patch_size=8"])
    image = JEPAAgent(image_cfg, check_paths=False)
    assert type(image) is ImagePretrainingAgent and image.pretrains and not world.pretrains
    assert type(JEPAAgent()) is WorldModelAgent  # the default config trains a world model
    with pytest.raises(ValueError, match="WorldModelAgent does the 'world_model' job; this config asks for "
                                         "'image_pretraining'"):
        WorldModelAgent(image_cfg, check_paths=False)
    with pytest.raises(ValueError, match="dataset='movies': unknown dataset"):
        JEPAAgent(JEPAConfig(dataset="movies"))
    video_cfg = JEPAConfig().override(["dataset=episodes", "pretrain.method=vjepa", "image_size=32", "patch_size=8"])
    assert type(JEPAAgent(video_cfg)).__name__ == "VideoPretrainingAgent" and video_cfg.job == "video_pretraining"


def test_load_returns_the_agent_of_the_saved_job(trained):
    from torchwm.agents import WorldModelAgent

    agent, _, _ = trained
    loaded = JEPAAgent.load(agent.run_dir)
    assert type(loaded) is WorldModelAgent and loaded.trained_steps == 6
    assert loaded.world_model is loaded.model and not loaded.model.training


def test_cli_lists_presets_and_names_what_is_wrong(trained, tmp_path, capsys):
    from torchwm.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    from torchwm.config import preset_names

    assert ", ".join(preset_names()) in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit, match="no_such_preset.*presets: dmc_goal, dmc_point_mass"):
        main(["train", "--config", "no_such_preset"])
    with pytest.raises(SystemExit, match="collect needs a config whose data is collected from env.id"):
        main(["collect", "--config", "ijepa_tiny", "--set", f"root_path={tmp_path}", "--set", "image_folder=."])
    image_run = tmp_path / "image_run"
    image = JEPAAgent(JEPAConfig().override([
        "dataset=imagefolder", "image_size=16", "patch_size=8", "embed_dim=16", "num_layers=1", "num_heads=2",
        "pretrain.predictor_dim=8", "pretrain.predictor_depth=1", "pretrain.predictor_heads=2", "pretrain.min_keep=1",
        f"logging.run_dir={image_run}"]), check_paths=False)
    image.model = image.build_model()
    image.save()
    image.cfg.save(image.run.config)
    with pytest.raises(SystemExit, match="image_run is an image-pretraining run; plan needs a world-model run"):
        main(["plan", "--run", str(image_run)])
    with pytest.raises(SystemExit, match="cannot load the run"):
        main(["visualize", "--run", str(tmp_path / "nothing")])


def test_a_chunked_model_trains_evaluates_and_plans_end_to_end(tmp_path):
    """model.action_chunk=2: windows of frames 2 steps apart, a predictor over 2 actions, MPC over 4 steps."""
    cfg = _tiny_config(tmp_path, **{"model.action_chunk": 2, "planning.horizon": 4, "planning.execute_steps": 2,
                                     "data.steps": 16})
    agent = JEPAAgent(cfg)
    metrics = agent.train()
    model = agent.world_model
    assert model.action_chunk == 2 and model.predictor.action_dim == 4 and model.context_span == 3
    train_set, _ = agent.datasets(agent.collect())
    assert train_set.stride == 2 and train_set[0].frames.shape[0] == 4 and train_set[0].actions.shape == (4, 2)
    for key in ("eval/pred_error_step4", "eval/probe_r2", "loss/prediction"):
        assert np.isfinite(metrics[key]), key
    assert JEPAAgent.load(agent.run_dir).world_model.action_chunk == 2
    action = agent.plan(np.zeros((5, 3, 16, 16), dtype=np.uint8), np.zeros((3, 16, 16), dtype=np.uint8))
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    planner = agent.evaluate(baseline=False, videos=0).results["planner"]
    assert len(planner.success) == 2 and np.all(np.isfinite(planner.final_distance))

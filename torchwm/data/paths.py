"""Where a config's trajectory store lives when ``data.path`` is not set."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DATA_ROOT = Path("runs") / "data"


def ensure_config_store(cfg):
    """Collect (or reuse) the trajectory store ``cfg`` describes, at :func:`store_path`; returns it."""
    from torchwm.data.collect import ensure_collected

    return ensure_collected(
        cfg.env.id, store_path(cfg), episodes=cfg.data.episodes, steps=cfg.data.steps, policy=cfg.data.policy,
        workers=cfg.data.workers, seed=cfg.seed, image_size=cfg.image_size, action_repeat=cfg.env.action_repeat,
        camera=cfg.env.camera, noise_beta=cfg.data.noise_beta, progress=cfg.logging.progress)


def store_path(cfg) -> Path:
    """``cfg.data.path`` if set, else ``runs/data/<env>_<size>px_ar<repeat>_<policy>_<steps>steps_seed<seed>``.

    Everything that changes the collected frames is in the name, so runs that agree on them share
    one store and a different setting never silently reuses a mismatched one.
    """
    if cfg.data.path:
        return Path(cfg.data.path)
    env = cfg.env.id.replace(":", "-")
    camera = "" if cfg.env.camera < 0 else f"_cam{cfg.env.camera}"
    policy = cfg.data.policy if cfg.data.policy != "noise" else f"noise{cfg.data.noise_beta:g}"
    name = f"{env}_{cfg.image_size}px_ar{cfg.env.action_repeat}{camera}_{policy}_{cfg.data.steps}steps_seed{cfg.seed}"
    return DEFAULT_DATA_ROOT / name

"""Does distance in the embedding follow distance in the world? (any domain with two position coordinates)

Usage::

    python benchmarks/latent_distance.py --run runs/point_mass [--run runs/other ...]

Renders the body at rest on a ``--grid`` x ``--grid`` lattice over its first two position coordinates
(point_mass: the mass's x and y over the arena; reacher: the shoulder and wrist angles; cartpole: the cart's
position and the pole's angle), embeds every frame with each run's encoder and treats the latent L2 distance to
one grid point's embedding as a cost landscape (what a planner's L2 cost sees). Prints, per run:

* Spearman rank correlation between latent and physical distance over random pairs of positions;
* spurious minima: grid points, other than the goal, whose cost is lower than all 8 neighbours',
  averaged over goals (a planner that follows the cost can stop in any of them);
* descent reaches goal: from random (start, goal) pairs, repeatedly step to the cheapest point within
  two grid cells (about what one planning horizon covers) until no step lowers the cost; the share
  of pairs that stop within one cell of the goal;
* y / x sensitivity: mean latent change per unit along the lattice's y axis over that along its x axis
  (reacher: wrist over shoulder). Far below 1, the cost hardly sees y, and a planner stops with y wrong.
* largest 10% of steps: over the run's own training episodes (its trajectory store, no rendering), the share of
  the summed squared one-step change of the embedding that the largest tenth of the steps carry, beside the same
  share of the two position coordinates' change. An embedding that follows the position smoothly matches the
  physical share; one far above it is a staircase: flat between jumps, so a latent distance has plateaus and
  local minima at the scale of the jumps.
* keypoint attention peak (keypoint heads only): over the lattice's frames, the mean of each keypoint's largest
  spatial-softmax weight. Near 1, every keypoint sits on one position of the head's 1/4-resolution map and jumps
  a whole position (4 pixels) as the body crosses into the next. Sharp keypoints and a staircase go together, but
  a finer map does not remove the staircase (docs/BENCHMARKS.md).
* state probe R² (linear / k-NN): the run's state probe (``torchwm.eval.state_probe``, the domain's position
  targets, held-out frames) read by ridge regression and by 10 nearest neighbours. A k-NN figure far above the
  linear one: the embedding holds the state, bent, so its L2 distance (the planner's cost) ranks states poorly.
* target share (reacher only, whose target moves between episodes and stays put within one): the arm on a
  13 x 13 lattice for each of the 8 target positions reacher's own resets (seeds 0-7) place, every frame embedded; the
  share of the embedding's variance that the target carries (over targets at a fixed pose, beside the variance
  over poses at a fixed target), and the mean latent distance between two target positions over that of a
  ~0.5 rad move of both joints. Near 0, the embedding is the arm's; near 1, it spends itself on the target.

The lattice spans the domain's first two position coordinates over their ranges, and the physical
distance wraps around for a periodic one (reacher's shoulder), as the domain's spec says
(``torchwm.envs.domains``); the minima and the descent treat the lattice's edges as walls.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

def lattice(spec, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """``grid`` values along each of the domain's two position coordinates (x = state[0], y = state[1])."""
    x, y = spec.coordinates[:2]
    return np.linspace(x.low, x.high, grid), np.linspace(y.low, y.high, grid)


def lattice_frames(env, spec, grid: int) -> torch.Tensor:
    """``env``'s frames of the body at rest on a ``grid`` x ``grid`` lattice, ``(grid * grid, 3, H, W)`` uint8 in
    ``[iy, ix]`` order (the other coordinates and all velocities at 0)."""
    base = np.zeros(env.unwrapped.state_dim)
    xs, ys = lattice(spec, grid)
    frames = []
    for y in ys:
        for x in xs:
            state = base.copy()
            state[:2] = x, y
            frames.append(env.unwrapped.render_state(state))
    return torch.from_numpy(np.stack(frames))


def grid_embeddings(agent, spec, grid: int) -> tuple[np.ndarray, float | None]:
    """The run's frame embeddings of the body at rest on a ``grid`` x ``grid`` lattice: ``(grid, grid, D)``
    indexed ``[iy, ix]``, and its keypoint head's attention peak over those frames (``None`` without one)."""
    env = agent.make_env()  # the run's env: its task, image size, camera and action repeat
    env.reset(seed=0)
    images = lattice_frames(env, spec, grid)
    env.close()
    with torch.no_grad():
        z = agent.world_model.encode(images)
    return z.numpy().reshape(grid, grid, -1), keypoint_peak(agent.world_model.encoder, images)


def keypoint_peak(encoder, images: torch.Tensor) -> float | None:
    """Mean over frames and keypoints of the largest attention weight of ``encoder``'s spatial softmax (``None``
    without a keypoint head). Near 1, each keypoint sits on one position of the map and moves in steps of a
    position (4 pixels) as the body moves."""
    from torchwm.nn.encoders import SpatialSoftmax

    head = next((m for m in encoder.modules() if isinstance(m, SpatialSoftmax)), None)
    if head is None:
        return None
    with torch.no_grad():
        tokens = encoder.forward_features(images)  # (N, h*w, K)
        side = int(round(tokens.shape[1] ** 0.5))
        fmap = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
        return float(head.attention(fmap).amax(-1).mean())


def target_share(agent, spec, grid: int = 13, targets: int = 8) -> tuple[float, float]:
    """(share, ratio) for a reacher run: the target's share of the embedding's variance, and a target move's
    latent distance over a ~0.5 rad move of both joints' (see the module docs)."""
    env = agent.make_env()
    z = []
    for seed in range(targets):
        env.reset(seed=seed)  # dm_control's reacher places its target; the lattice then sets the arm
        with torch.no_grad():
            z.append(agent.world_model.encode(lattice_frames(env, spec, grid)).numpy())
    env.close()
    z = np.stack(z)  # (targets, grid * grid, D)
    arm, target = z.var(axis=1).sum(-1).mean(), z.var(axis=0).sum(-1).mean()
    xs = lattice(spec, grid)[0]
    n = max(1, int(round(0.5 / (xs[1] - xs[0]))))  # lattice cells in 0.5 rad
    zg = z.reshape(targets, grid, grid, -1)
    arm_move = np.linalg.norm(zg[:, n:, n:] - zg[:, :-n, :-n], axis=-1).mean()
    target_move = np.mean([np.linalg.norm(z[i] - z[j], axis=-1).mean()
                           for i in range(targets) for j in range(i + 1, targets)])
    return float(target / (arm + target)), float(target_move / arm_move)


def spurious_minima(cost: np.ndarray, goal: tuple[int, int]) -> int:
    """Grid points other than ``goal`` whose cost is strictly below all 8 neighbours'."""
    n = cost.shape[0]
    padded = np.pad(cost, 1, constant_values=np.inf)
    neighbours = np.stack([padded[1 + dy:1 + dy + n, 1 + dx:1 + dx + n]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    minima = cost < neighbours.min(0)
    minima[goal] = False
    return int(minima.sum())


def descend(cost: np.ndarray, start: tuple[int, int], reach: int = 2) -> tuple[int, int]:
    """Greedy descent on ``cost``: move to the cheapest point within ``reach`` cells until none is cheaper."""
    n = cost.shape[0]
    y, x = start
    while True:
        y0, y1, x0, x1 = max(0, y - reach), min(n, y + reach + 1), max(0, x - reach), min(n, x + reach + 1)
        window = cost[y0:y1, x0:x1]
        iy, ix = np.unravel_index(np.argmin(window), window.shape)
        if window[iy, ix] >= cost[y, x]:
            return y, x
        y, x = y0 + iy, x0 + ix


def landscape(z: np.ndarray, spec, pairs: int, rng: np.random.Generator) -> dict[str, float]:
    from scipy.stats import spearmanr

    n = z.shape[0]
    xs, ys = lattice(spec, n)
    positions = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)  # [iy * n + ix] -> (x, y)
    flat = z.reshape(n * n, -1)
    a, b = rng.integers(0, n * n, (2, 4000))
    delta = positions[a] - positions[b]
    for axis, coordinate in enumerate(spec.coordinates[:2]):
        if coordinate.periodic:
            delta[:, axis] = (delta[:, axis] + np.pi) % (2 * np.pi) - np.pi
    rho = spearmanr(np.linalg.norm(flat[a] - flat[b], axis=1), np.linalg.norm(delta, axis=1))
    minima = [spurious_minima(np.linalg.norm(z - z[gy, gx], axis=-1), (gy, gx))
              for gy in range(0, n, 2) for gx in range(0, n, 2)]
    sensitivity_x = np.linalg.norm(np.diff(z, axis=1), axis=-1).mean() / (xs[1] - xs[0])
    sensitivity_y = np.linalg.norm(np.diff(z, axis=0), axis=-1).mean() / (ys[1] - ys[0])
    reached = 0
    for _ in range(pairs):
        sy, sx, gy, gx = rng.integers(0, n, 4)
        y, x = descend(np.linalg.norm(z - z[gy, gx], axis=-1), (sy, sx))
        reached += max(abs(y - gy), abs(x - gx)) <= 1
    return {"spearman": float(rho.statistic), "minima": float(np.mean(minima)), "reached": reached / pairs,
            "y_over_x": float(sensitivity_y / sensitivity_x)}


def step_concentration(agent, spec, episodes: int = 60, top: float = 0.1) -> tuple[float, float]:
    """(latent, physical): the share of the summed squared one-step change carried by the largest ``top`` of the
    steps, over the first ``episodes`` episodes of the run's trajectory store (embedding; first two coordinates)."""
    from torchwm.data.store import TrajectoryStore

    store = TrajectoryStore(agent.store_path())
    latent, physical = [], []
    for index in store.indices[:episodes]:
        episode = store.episode(index)
        with torch.no_grad():
            z = agent.world_model.encode(torch.from_numpy(np.array(episode.frames))).numpy()
        latent.append(np.sum(np.diff(z, axis=0) ** 2, axis=1))
        delta = np.diff(np.asarray(episode.states)[:, :2], axis=0)
        for axis, coordinate in enumerate(spec.coordinates[:2]):
            if coordinate.periodic:
                delta[:, axis] = (delta[:, axis] + np.pi) % (2 * np.pi) - np.pi
        physical.append(np.sum(delta ** 2, axis=1))

    def share(squared: list[np.ndarray]) -> float:
        values = np.sort(np.concatenate(squared))[::-1]
        return float(values[: max(1, int(top * len(values)))].sum() / values.sum())

    return share(latent), share(physical)


def probe_shapes(agent) -> tuple[float, float]:
    """Held-out R² of the run's state probe (positions): ``(linear, k-NN)``."""
    store = agent.collect()
    scores = agent.state_probe(store, *agent.split(store))(agent.world_model.encode)  # embeds without gradients
    return scores["eval/probe_r2"], scores["eval/probe_knn_r2"]


def main() -> None:
    from torchwm import JEPAAgent

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", help="a world-model run directory (repeat to compare)")
    parser.add_argument("--grid", type=int, default=25,
                        help="lattice points per side (default 25: 2.4 cm apart on point_mass, 0.26 rad on reacher)")
    parser.add_argument("--pairs", type=int, default=400, help="(start, goal) pairs for the descent")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = args.run or ["runs/point_mass"]

    from torchwm.envs import env_domain

    rows = []
    for run in runs:
        agent = JEPAAgent.load(run)
        spec = env_domain(agent.cfg.env.id)
        if len(spec.coordinates) != 2:
            raise SystemExit(f"error: this benchmark spans two position coordinates; {run} is {agent.cfg.env.id}, "
                             f"whose domain spec lists {len(spec.coordinates)}")
        z, peak = grid_embeddings(agent, spec, args.grid)
        stats = landscape(z, spec, args.pairs, np.random.default_rng(args.seed))
        stats["peak"] = peak
        stats["top_latent"], stats["top_physical"] = step_concentration(agent, spec)
        stats["target"] = target_share(agent, spec) if spec.name == "reacher" else None
        stats["probe"] = probe_shapes(agent)
        rows.append((run, agent.world_model.embed_dim, stats))
    print(f"{args.grid}x{args.grid} positions, {args.pairs} descent pairs")
    print()
    print("| run | embedding | Spearman(latent, physical) | spurious minima per goal | descent reaches goal "
          "| y / x sensitivity | largest 10% of steps (latent / physical) | keypoint attention peak "
          "| state probe R² (linear / k-NN) | target share (variance / move over arm move) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run, dim, s in rows:
        peak = "-" if s["peak"] is None else f"{s['peak']:.2f}"
        target = "-" if s["target"] is None else f"{s['target'][0]:.2f} / {s['target'][1]:.1f}"
        print(f"| {run} | {dim} | {s['spearman']:.2f} | {s['minima']:.1f} | {100 * s['reached']:.0f}% "
              f"| {s['y_over_x']:.2f} | {s['top_latent']:.2f} / {s['top_physical']:.2f} | {peak} "
              f"| {s['probe'][0]:.2f} / {s['probe'][1]:.2f} | {target} |")


if __name__ == "__main__":
    main()

"""SAC on a dm_control task from frozen JEPA features vs. from raw pixels, at equal environment steps.

    python examples/rl_features_vs_pixels.py                                   # point_mass-easy, 10k steps
    python examples/rl_features_vs_pixels.py --env dmc:reacher-easy --steps 50000 --variants features
    tensorboard --logdir runs/rl

One SAC agent (twin Q, Polyak-averaged target critic, automatic entropy tuning, tanh-squashed Gaussian
policy) learns both variants; only the observation pipeline differs. Both see the last ``--frame-stack``
frames; an env step is one agent step (``--action-repeat`` physics steps), so an episode is 1000 /
action_repeat env steps (truncated, never terminated: the critic always bootstraps).

* ``features``: ``JEPAFeatures`` turns each frame into the frozen backbone's D features (no gradient,
  no augmentation); the agent sees the concatenated (k * D,) vector.
* ``pixels``: uint8 frames (``FrameStackObservation``), each of the k frames encoded by one shared
  ``SpatialEncoder.conv`` (width 16, 50-d) and the k embeddings concatenated. As in DrQ-v2, the encoder
  is trained by the critic loss only, the actor sees its output detached, the next observation is
  encoded by the online encoder without gradient (no target encoder), and the sampled batches get
  DrQ's random shift (pad 4, random crop; one shift per frame stack; ``--no-augment`` turns it off).

Actor and critic each start with a trunk Linear(→50) → LayerNorm → Tanh on the (detached, for the actor)
encoder output, then 2 hidden layers of ``--hidden`` units. Evaluation: the mean action, the same
``--eval-episodes`` start states (fixed reset seeds) at every checkpoint and for both variants.
Results: TensorBoard in ``logdir/<variant>_seed<seed>``, a markdown table on stdout, ``logdir/results.json``
(entries of other variants / seeds / envs already in that file are kept, the same ones replaced). The
table's "s / 1k steps" is the learning phase's cost (render, backbone, policy, updates; evaluation not
included). On a CPU that another job keeps busy, ``OMP_NUM_THREADS=1`` can be many times faster.
"""

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.wrappers import FrameStackObservation
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import torchwm
from torchwm.envs.wrappers import JEPAFeatures
from torchwm.nn.encoders import SpatialEncoder

LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


def mlp(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out_dim))


def trunk(in_dim: int, dim: int = 50) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.Tanh())


class PixelEncoder(nn.Module):
    """(N, k, 3, H, W) uint8 or float in [0, 1] → (N, k * embed_dim): one shared conv encoder per frame."""

    def __init__(self, image_size: int, frames: int, embed_dim: int = 50, width: int = 16) -> None:
        super().__init__()
        self.conv = SpatialEncoder.conv(image_size=image_size, embed_dim=embed_dim, width=width)
        self.out_dim = frames * embed_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.conv(obs.flatten(0, 1)).view(len(obs), self.out_dim)


def random_shift(obs: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """DrQ augmentation: (N, k, 3, H, W) uint8 → float in [0, 1], each stack shifted by up to ±pad pixels."""
    n, k, c, h, w = obs.shape
    x = F.pad(obs.float().div(255).view(n, k * c, h, w), (pad,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), device=obs.device)
    rows, cols = dy + torch.arange(h, device=obs.device), dx + torch.arange(w, device=obs.device)  # (n, h), (n, w)
    batch, channel = torch.arange(n, device=obs.device), torch.arange(k * c, device=obs.device)
    x = x[batch[:, None, None, None], channel[:, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    return x.view(n, k, c, h, w)


class Actor(nn.Module):
    def __init__(self, repr_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(trunk(repr_dim), mlp(50, 2 * act_dim, hidden))

    def forward(self, h: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """→ action in [-1, 1] (tanh of a Gaussian sample, or of its mean) and its log-probability."""
        mu, log_std = self.net(h).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        u = mu if deterministic else mu + log_std.exp() * torch.randn_like(mu)
        log_prob = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)  # tanh change of variables
        return torch.tanh(u), log_prob


class Critic(nn.Module):
    def __init__(self, repr_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.trunk = trunk(repr_dim)
        self.q1, self.q2 = mlp(50 + act_dim, 1, hidden), mlp(50 + act_dim, 1, hidden)

    def forward(self, h: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.trunk(h), action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class SAC:
    def __init__(self, encoder: nn.Module, repr_dim: int, act_dim: int, args: argparse.Namespace,
                 device: torch.device, augment: bool) -> None:
        self.encoder = encoder.to(device)
        self.actor = Actor(repr_dim, act_dim, args.hidden).to(device)
        self.critic = Critic(repr_dim, act_dim, args.hidden).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(args.init_alpha), device=device, requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.critic_opt = torch.optim.Adam([*self.encoder.parameters(), *self.critic.parameters()], lr=args.lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=args.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=args.lr)
        self.gamma, self.tau, self.device, self.augment = args.gamma, args.tau, device, augment

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        action, _ = self.actor(self.encoder(torch.as_tensor(obs, device=self.device)[None]), deterministic)
        return action[0].cpu().numpy()

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        obs, act, rew, not_done, next_obs = (torch.as_tensor(batch[k], device=self.device)
                                             for k in ("obs", "action", "reward", "not_done", "next_obs"))
        if self.augment:
            obs, next_obs = random_shift(obs), random_shift(next_obs)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_h = self.encoder(next_obs)
            next_act, next_logp = self.actor(next_h)
            target_q = torch.min(*self.critic_target(next_h, next_act)) - alpha * next_logp
            target_q = rew + not_done * self.gamma * target_q
        h = self.encoder(obs)
        q1, q2 = self.critic(h, act)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        action, logp = self.actor(h.detach())  # the encoder learns from the critic only
        actor_loss = (alpha * logp - torch.min(*self.critic(h.detach(), action))).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()  # critic grads from this are discarded by the next zero_grad
        self.actor_opt.step()
        alpha_loss = (self.log_alpha.exp() * (-logp.detach() - self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.critic_target.parameters()):
                tp.lerp_(p, self.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha_loss": alpha_loss.item(),
                "alpha": alpha.item(), "q": q1.mean().item(), "entropy": -logp.mean().item()}


class ReplayBuffer:
    """Stacks (k, *frame) and only the newest frame of the next stack: next_obs = obs[1:] + that frame."""

    def __init__(self, capacity: int, obs_shape: tuple, dtype: np.dtype, act_dim: int, seed: int) -> None:
        self.obs = np.empty((capacity, *obs_shape), dtype=dtype)  # uint8 for pixels
        self.next_frame = np.empty((capacity, *obs_shape[1:]), dtype=dtype)
        self.action = np.empty((capacity, act_dim), dtype=np.float32)
        self.reward = np.empty(capacity, dtype=np.float32)
        self.not_done = np.empty(capacity, dtype=np.float32)
        self.capacity, self.size, self.i, self.rng = capacity, 0, 0, np.random.default_rng(seed)

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        self.obs[self.i], self.next_frame[self.i] = obs, next_obs[-1]
        self.action[self.i], self.reward[self.i], self.not_done[self.i] = action, reward, not terminated
        self.i, self.size = (self.i + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, n: int) -> dict[str, np.ndarray]:
        idx = self.rng.integers(0, self.size, n)
        obs = self.obs[idx]
        next_obs = np.concatenate([obs[:, 1:], self.next_frame[idx][:, None]], axis=1)
        return dict(obs=obs, action=self.action[idx], reward=self.reward[idx], not_done=self.not_done[idx],
                    next_obs=next_obs)


class StackedView(gym.ObservationWrapper):
    """(k * D,) JEPA features → (k, D), so both variants store (k, *frame) stacks in the replay buffer."""

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (k, env.observation_space.shape[0] // k), np.float32)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        return obs.reshape(self.observation_space.shape)


def make_env(variant: str, args: argparse.Namespace, backbone, seed: int) -> gym.Env:
    env = torchwm.make_env(args.env, image_size=args.image_size, action_repeat=args.action_repeat, seed=seed)
    if variant == "features":
        return StackedView(JEPAFeatures(env, backbone, frame_history=args.frame_stack), args.frame_stack)
    return FrameStackObservation(env, stack_size=args.frame_stack)


def evaluate(agent: SAC, env: gym.Env, episodes: int, seed: int) -> tuple[np.ndarray, int]:
    """Returns of ``episodes`` mean-action episodes and the env steps they took."""
    returns, steps = [], 0
    low, high = env.action_space.low, env.action_space.high
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)  # the same start states at every checkpoint
        done, total = False, 0.0
        while not done:
            action = agent.act(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(low + (action + 1) * (high - low) / 2)
            total, done, steps = total + reward, terminated or truncated, steps + 1
        returns.append(total)
    return np.asarray(returns), steps


def run(variant: str, args: argparse.Namespace, backbone, device: torch.device) -> dict:
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    env, eval_env = make_env(variant, args, backbone, args.seed), make_env(variant, args, backbone, args.seed + 1)
    obs_shape, act_dim = env.observation_space.shape, env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    if variant == "features":
        encoder, repr_dim = nn.Flatten(), int(np.prod(obs_shape))
    else:
        encoder = PixelEncoder(args.image_size, args.frame_stack)
        repr_dim = encoder.out_dim
    agent = SAC(encoder, repr_dim, act_dim, args, device, augment=variant == "pixels" and args.augment)
    buffer = ReplayBuffer(args.steps, obs_shape, env.observation_space.dtype, act_dim, args.seed)
    writer = SummaryWriter(str(Path(args.logdir) / f"{variant}_seed{args.seed}"))
    rng = np.random.default_rng(args.seed)
    evals, timers, updates, eval_steps = [], dict(act=0.0, update=0.0, eval=0.0), 0, 0
    start = time.perf_counter()
    obs, _ = env.reset()
    episode_return, episode = 0.0, 0
    bar = tqdm(range(1, args.steps + 1), desc=variant, unit="step", dynamic_ncols=True)
    for step in bar:
        tic = time.perf_counter()
        action = rng.uniform(-1, 1, act_dim).astype(np.float32) if step <= args.start_steps else \
            agent.act(obs, deterministic=False)
        next_obs, reward, terminated, truncated, _ = env.step(low + (action + 1) * (high - low) / 2)
        buffer.add(obs, action, reward, next_obs, terminated)
        obs, episode_return = next_obs, episode_return + reward
        if terminated or truncated:
            episode += 1
            writer.add_scalar("train/episode_return", episode_return, step)
            bar.set_postfix(episode=episode, ret=f"{episode_return:.1f}",
                            eval=f"{evals[-1]['mean']:.1f}" if evals else "-")
            obs, _ = env.reset()
            episode_return = 0.0
        toc = time.perf_counter()
        timers["act"] += toc - tic
        if step > args.start_steps:
            for _ in range(args.updates_per_step):
                metrics = agent.update(buffer.sample(args.batch_size))
                updates += 1
            if step % 100 == 0:
                for key, value in metrics.items():
                    writer.add_scalar(f"train/{key}", value, step)
        timers["update"] += time.perf_counter() - toc
        if step % args.eval_every == 0 or step == args.steps:
            tic = time.perf_counter()
            returns, steps_taken = evaluate(agent, eval_env, args.eval_episodes, seed=10_000 * (args.seed + 1))
            timers["eval"] += time.perf_counter() - tic
            eval_steps += steps_taken
            evals.append(dict(step=step, mean=float(returns.mean()), std=float(returns.std())))
            writer.add_scalar("eval/return", returns.mean(), step)
            writer.add_scalar("eval/return_std", returns.std(), step)
            bar.set_postfix(episode=episode, ret=f"{episode_return:.1f}", eval=f"{returns.mean():.1f}")
    writer.close()
    env.close()
    eval_env.close()
    random_steps = min(args.start_steps, args.steps)
    return dict(env=args.env, variant=variant, seed=args.seed, steps=args.steps,
                physics_steps=args.steps * args.action_repeat, final_return=evals[-1]["mean"],
                final_return_std=evals[-1]["std"], best_return=max(e["mean"] for e in evals), evals=evals,
                wall_time_s=time.perf_counter() - start,
                s_per_1k_steps=(1000 * timers["act"] / args.steps  # learning phase: acting + updates
                                + timers["update"] / max(updates, 1) * 1000 * args.updates_per_step),
                act_ms_per_step=1000 * timers["act"] / args.steps,
                update_ms_per_update=1000 * timers["update"] / max(updates, 1),
                eval_ms_per_step=1000 * timers["eval"] / eval_steps,
                random_steps=random_steps, updates=updates, device=str(device))


def load_backbone(args: argparse.Namespace):
    path = Path(args.backbone)
    if not path.exists():
        raise SystemExit(f"error: no backbone at {path}. Train one first: `torchwm demo` (point_mass, writes "
                         "runs/point_mass) or `torchwm train --config dmc_reacher` (writes runs/reacher), "
                         "or pass --backbone RUN_DIR, or run only --variants pixels")
    try:
        backbone = torchwm.load_backbone(path)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}\n(train a backbone with `torchwm demo` or "
                         "`torchwm train --config dmc_reacher`)") from None
    config = path / "config.yaml" if path.is_dir() else path.parent / "config.yaml"
    if config.is_file():
        import yaml

        trained_on = (yaml.safe_load(config.read_text()) or {}).get("env", {}).get("id")
        if trained_on and trained_on != args.env:
            print(f"warning: the backbone in {path} was trained on {trained_on}, not {args.env}")
    return backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dmc:point_mass-easy")
    parser.add_argument("--backbone", default=None, help="JEPA run directory or model.pt (default: runs/<domain>)")
    parser.add_argument("--steps", type=int, default=10_000, help="env steps per variant (agent steps)")
    parser.add_argument("--variants", nargs="+", default=["features", "pixels"], choices=["features", "pixels"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--action-repeat", type=int, default=4)
    parser.add_argument("--frame-stack", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbone's (64 without one)")
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--logdir", default="runs/rl")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--start-steps", type=int, default=1000, help="uniform random actions first, no updates")
    parser.add_argument("--updates-per-step", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--tau", type=float, default=0.01, help="Polyak rate of the target critic")
    parser.add_argument("--init-alpha", type=float, default=0.1)
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="pixels: no random shift")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    for name in ("steps", "eval_every", "eval_episodes", "batch_size", "updates_per_step", "frame_stack"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    try:
        torchwm.envs.registry.parse_env_id(args.env)
    except ValueError as err:
        parser.error(str(err))
    args.backbone = args.backbone or f"runs/{args.env.split(':', 1)[1].split('-')[0]}"
    backbone = load_backbone(args) if "features" in args.variants else None
    if args.image_size is None:
        args.image_size = (backbone.image_size if backbone is not None else 0) or 64
    elif backbone is not None and backbone.image_size and backbone.image_size != args.image_size:
        print(f"warning: the backbone was trained at {backbone.image_size} px; frames of {args.image_size} px "
              "are resized for it, the pixel agent sees them as rendered")
    device = torch.device(args.device)
    if backbone is not None:
        backbone = backbone.to(device)
    results = [run(variant, args, backbone, device) for variant in args.variants]

    print(f"\n{args.env}, seed {args.seed}, {args.steps} env steps (x{args.action_repeat} action repeat = "
          f"{args.steps * args.action_repeat} physics steps), eval: {args.eval_episodes} episodes, mean action\n")
    print("| variant | env steps | final eval return | best eval return | wall time | s / 1k steps |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['variant']} | {r['steps']} | {r['final_return']:.1f} ± {r['final_return_std']:.1f} | "
              f"{r['best_return']:.1f} | {r['wall_time_s'] / 60:.1f} min | {r['s_per_1k_steps']:.0f} |")
    out = Path(args.logdir) / "results.json"
    key = lambda r: (r["env"], r["variant"], r["seed"])  # noqa: E731
    previous = json.loads(out.read_text())["results"] if out.is_file() else []
    merged = [r for r in previous if key(r) not in {key(n) for n in results}] + results
    out.write_text(json.dumps({"results": merged, "last_args": vars(args)}, indent=2))
    print(f"\nresults: {out}; curves: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()

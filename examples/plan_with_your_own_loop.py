"""Drive a dm_control environment toward a goal image with a trained world model, step by step.

    python examples/plan_with_your_own_loop.py runs/point_mass

Shows the pieces `JEPAAgent.evaluate` is made of: a gymnasium environment with goals, the MPC
controller (CEM, warm-started), and success read from the simulator.
"""

import sys

import torch

from torchwm import JEPAAgent

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/point_mass"
agent = JEPAAgent.load(run_dir)
cfg = agent.cfg
env = agent.make_env()  # the run's env: same task, image size, camera, action repeat and goal protocol
controller = agent.controller()

obs, info = env.reset(seed=123)
controller.reset(torch.from_numpy(obs[None]), torch.from_numpy(info["goal_image"][None]))
for step in range(cfg.planning.episode_steps):
    action = controller.act(torch.from_numpy(obs[None]))[0].cpu().numpy()
    obs, _, terminated, truncated, info = env.step(action)
    if step % 10 == 0 or info["success"]:
        print(f"step {step:3d}  distance {info['distance']:.3f}  predicted cost {float(controller.result.cost[0]):.3f}")
    if info["success"] or terminated or truncated:
        break
print("reached the goal" if info["success"] else "did not reach the goal",
      f"in {step + 1} steps; planning took {sum(controller.plan_ms) / len(controller.plan_ms):.1f} ms per call")

"""Train a JEPA world model on reacher and reach goal images zero-shot (about 20 minutes on 2 CPU cores).

    python examples/reacher_zero_shot.py                  # the full preset
    python examples/reacher_zero_shot.py --steps 500      # a quick look (the planner will be weak)
"""

import argparse

from torchwm import JEPAAgent, JEPAConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
parser.add_argument("--episodes", type=int, default=20, help="goal-reaching episodes to evaluate")
args = parser.parse_args()

cfg = JEPAConfig.load("dmc_reacher_planning")  # the reacher preset shaped for planning
cfg.logging.run_dir = "runs/example_reacher"
if args.steps:  # its own run directory: resuming the full run with other settings would mix two experiments
    cfg.train.steps = args.steps
    cfg.logging.run_dir = f"runs/example_reacher_{args.steps}steps"

agent = JEPAAgent(cfg)
metrics = agent.train()  # collects the data first (cached), resumes if interrupted
print(f"held-out prediction error / copy-last at step 1: {metrics['eval/pred_over_copy_step1']:.2f}, "
      f"probe R^2: {metrics['eval/probe_r2']:.2f}")
print(agent.evaluate(episodes=args.episodes))

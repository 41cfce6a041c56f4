"""Frozen-feature quality of an I-JEPA run: linear probe and k-NN accuracy of its encoder against the same
architecture randomly initialised, on the run's labelled train/val folders.

    torchwm shapes --out data/shapes && torchwm pretrain --config ijepa_tiny
    python benchmarks/ijepa_probe.py --run runs/ijepa_tiny
"""

from __future__ import annotations

import argparse
import time

import torch

from torchwm import JEPAAgent
from torchwm.data.images import eval_transform, open_image_folder
from torchwm.eval.classification import probe_encoder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/ijepa_tiny", help="I-JEPA run directory")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the random-init baselines")
    args = parser.parse_args(argv)
    agent = JEPAAgent.load(args.run)
    cfg = agent.cfg
    transform = eval_transform(cfg.image_size)
    train = open_image_folder(cfg.root_path, cfg.image_folder, transform)
    val = open_image_folder(cfg.root_path, cfg.pretrain.val_folder, transform)
    k = cfg.pretrain.knn_k
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        start = time.perf_counter()
        r = probe_encoder(agent.build_model().backbone, train, val, k=k)
        rows.append((f"random init (seed {seed})", r, time.perf_counter() - start))
    start = time.perf_counter()
    rows.append((f"I-JEPA, {agent.metrics.get('steps', '?')} steps", probe_encoder(agent.ijepa.backbone, train, val, k=k),
                 time.perf_counter() - start))
    chance = 1 / rows[-1][1].classes
    print(f"{cfg.root_path}: {rows[-1][1].train_size} train / {rows[-1][1].val_size} val images, "
          f"{rows[-1][1].classes} classes (chance {chance:.1%}); ViT {cfg.embed_dim}-d x {cfg.num_layers} blocks, "
          f"{cfg.image_size} px, patch {cfg.patch_size}")
    print("| encoder | linear probe | k-NN (k=%d) | probe time (s) |" % k)
    print("|---|---:|---:|---:|")
    for name, r, seconds in rows:
        print(f"| {name} | {r.linear_accuracy:.1%} | {r.knn_accuracy:.1%} | {seconds:.0f} |")


if __name__ == "__main__":
    main()

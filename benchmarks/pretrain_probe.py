"""Frozen-feature quality of pretraining runs against the same architecture randomly initialised.

    python benchmarks/pretrain_probe.py --run runs/sigreg_tiny --run runs/ijepa_tiny     # shapes: class probes
    python benchmarks/pretrain_probe.py --run runs/vjepa_tiny --run runs/sigreg_reacher    # episodes: state R^2

For a run on an image folder with a labelled ``pretrain.val_folder``: linear-probe (logistic regression on
standardised features) and k-NN accuracy, trained on the training folder and scored on the val folder. For a
run on the episodes of an env: the physics-state probe (ridge regression to the domain's position targets,
fitted on frames of the training episodes, R² on frames of the held-out ones; for reacher also the joints).
Each run gets one row per ``--seeds`` seed of its architecture randomly initialised (built exactly as the run
builds its model, without training) and one row for its trained encoder. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch

from torchwm import JEPAAgent


def class_probe(agent, encoder) -> dict[str, float]:
    from torchwm.data.images import eval_transform, open_image_folder
    from torchwm.eval.classification import probe_encoder

    c = agent.cfg
    transform = eval_transform(c.image_size)
    result = probe_encoder(encoder, open_image_folder(c.root_path, c.image_folder, transform),
                           open_image_folder(c.root_path, c.pretrain.val_folder, transform), k=c.pretrain.knn_k)
    return {"linear": result.linear_accuracy, "knn": result.knn_accuracy, "chance": 1 / result.classes}


def state_probe(agent, encoder) -> dict[str, float]:
    store = agent.collect()
    scores = agent.state_probe(store, *agent.split(store))(encoder)
    return {"r2": scores["eval/probe_r2"], "r2_joints": scores.get("eval/probe_r2_joints", float("nan"))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="a pretraining run directory (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the random-init baselines")
    args = parser.parse_args(argv)
    rows = []
    for run in args.run:
        agent = JEPAAgent.load(run)
        c = agent.cfg
        probe = state_probe if c.dataset == "episodes" else class_probe
        data = c.env.id if c.dataset == "episodes" else f"{c.root_path}/{c.image_folder}"
        arch = f"{agent.model.backbone.kind} {agent.model.backbone.embed_dim}-d"
        candidates = []
        for seed in args.seeds:
            torch.manual_seed(seed)
            candidates.append((f"random init (seed {seed})", agent.build_model().backbone.eval()))
        candidates.append((f"{c.pretrain.method}, {agent.trained_steps} steps", agent.model.backbone.eval()))
        for name, encoder in candidates:
            start = time.perf_counter()
            with torch.no_grad():
                scores = probe(agent, encoder)
            rows.append((run, data, arch, name, scores, time.perf_counter() - start))
    print("| run | data | encoder | weights | linear probe | k-NN | state R^2 (positions) | state R^2 (joints) "
          "| probe time (s) |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    fmt = lambda scores, key, pct: (f"{scores[key]:.1%}" if pct else f"{scores[key]:.3f}") if key in scores else "-"  # noqa: E731
    for run, data, arch, name, s, seconds in rows:
        print(f"| {run} | {data} | {arch} | {name} | {fmt(s, 'linear', True)} | {fmt(s, 'knn', True)} "
              f"| {fmt(s, 'r2', False)} | {fmt(s, 'r2_joints', False)} | {seconds:.0f} |")


if __name__ == "__main__":
    main()

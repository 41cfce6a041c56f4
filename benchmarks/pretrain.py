"""I-JEPA pretraining throughput: training images/s and peak memory for ViT-Tiny/Small at several sizes.

Times full optimisation steps (multi-block masks, context encoder on the context patches, EMA target
encoder on the whole image, predictor, AdamW step, EMA update) on random images, so disk and decoding
are not measured (the shapes dataset decodes at ~1000 images/s per core, far above these rates).

    python benchmarks/pretrain.py                       # tiny and small at 64, 96, 224 px
    python benchmarks/pretrain.py --models tiny --sizes 64 --steps 5
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from torchwm import JEPAAgent
from torchwm.config import JEPAConfig
from torchwm.training import make_optimizer

# (embed_dim, heads) of the standard ViT sizes; 12 blocks each
MODELS = {"tiny": (192, 3), "small": (384, 6)}


def patch_size_for(image_size: int) -> int:
    """16 px patches at 224 (the standard), 8 px below 128 so small images still have a useful grid."""
    return 16 if image_size >= 128 else 8


def measure(model_name: str, image_size: int, batch_size: int, steps: int, warmup: int) -> dict[str, float]:
    dim, heads = MODELS[model_name]
    cfg = JEPAConfig(dataset="imagefolder", image_size=image_size, patch_size=patch_size_for(image_size),
                     embed_dim=dim, num_layers=12, num_heads=heads, batch_size=batch_size)
    agent = JEPAAgent(cfg, check_paths=False)
    torch.manual_seed(0)
    model = agent.build_model()
    masks = agent.mask_sampler(model.encoder.grid_size)
    optimizer = make_optimizer(model, 1e-4, 0.04)
    images = torch.rand(batch_size, 3, image_size, image_size)
    elapsed = 0.0
    for step in range(warmup + steps):
        start = time.perf_counter()
        out = model.loss(images, masks(batch_size))
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        model.after_step(step + 1, warmup + steps)
        if step >= warmup:
            elapsed += time.perf_counter() - start
    grid = model.encoder.grid_size
    return {"images_per_s": steps * batch_size / elapsed, "ms_per_step": 1000 * elapsed / steps,
            "patches": grid[0] * grid[1], "params_m": sum(p.numel() for p in model.encoder.parameters()) / 1e6}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 96, 224])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(f"{'model':<8}{'size':>6}{'patch':>7}{'patches':>9}{'params (M)':>12}{'ms/step':>10}{'images/s':>10}"
          f"{'max RSS so far (GiB)':>22}")
    for name in args.models:
        for size in args.sizes:
            r = measure(name, size, args.batch_size, args.steps, args.warmup)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux → GiB
            print(f"{'ViT-' + name:<8}{size:>6}{patch_size_for(size):>7}{r['patches']:>9.0f}{r['params_m']:>12.1f}"
                  f"{r['ms_per_step']:>10.0f}{r['images_per_s']:>10.1f}{rss:>22.2f}", flush=True)


if __name__ == "__main__":
    main()

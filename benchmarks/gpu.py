"""GPU benchmarks in one run: world-model training, CEM planning latency and pretraining throughput, with peak memory.

Usage::

    python benchmarks/gpu.py                          # every section on CUDA: a few minutes
    python benchmarks/gpu.py --out gpu.md             # also write the table (and the machine) to gpu.md
    python benchmarks/gpu.py --only train plan        # some sections: train, plan, pretrain
    python benchmarks/gpu.py --quick --device cpu     # tiny sizes, few steps: checks the script in about a minute

Everything runs on random tensors shaped like the real batches, already on the device, so neither dm_control
collection and rendering nor disk and decoding are measured. Models are built by their agents
(``build_model``) from the presets, as ``torchwm train`` / ``torchwm pretrain`` build them.

* ``train``: world-model optimisation steps (``model.loss`` + backward + gradient clipping + AdamW + EMA update)
  on uint8 frame sequences, for ``dmc_reacher_planning`` (keypoint conv net) and ``dmc_reacher`` with a ViT
  encoder; frames encoded per second.
* ``plan``: one CEM call (300 samples x 30 iterations, horizon 5) for 1 and for 50 episodes planned in one
  batch, on a freshly built (untrained) world model: milliseconds per call, median after a warm-up call.
* ``pretrain``: optimisation steps of ``sigreg_tiny`` (images of multi-view batches), ``ijepa_tiny`` (images
  with multi-block masks) and ``vjepa_tiny`` (clips with tube and future masks); masks are sampled inside
  the timed step, as the trainer's ``batch_fn`` does.

On CUDA each training setting runs in float32 and under ``torch.autocast("cuda", dtype=torch.bfloat16)``;
peak memory is ``torch.cuda.max_memory_allocated`` since the setting started. On a CPU only float32 runs and
peak memory is the process's maximum resident set so far (it never goes down, so later rows include earlier
ones). A setting that fails prints its error in its row and the others still run; rows print as they finish,
and the table prints even after Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("MUJOCO_GL", "egl")  # the world-model agent reads action bounds from a (never rendered) env

import numpy as np
import torch

SECTIONS = ("train", "plan", "pretrain")
VIT = ("model.encoder=vit", "patch_size=8", "embed_dim=192", "num_layers=6", "num_heads=3")
"""a ViT under the reacher world model: the sizes of `vjepa_tiny`'s video ViT (192-d, 6 blocks, 3 heads, 8 px)"""
QUIET = ("logging.progress=false", "logging.tensorboard=false")


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does: full (a GPU) or ``--quick`` (checks the script on a CPU)."""

    steps: int
    warmup: int
    calls: int
    samples: int
    iterations: int
    horizon: int
    episodes: tuple[int, ...]
    overrides: dict[str, tuple[str, ...]]
    """extra config overrides by preset (``--quick``: small batches and sequences)"""


FULL = Sizes(steps=20, warmup=3, calls=10, samples=300, iterations=30, horizon=5, episodes=(1, 50), overrides={})
QUICK = Sizes(steps=2, warmup=1, calls=2, samples=64, iterations=3, horizon=5, episodes=(1, 4), overrides={
    "dmc_reacher_planning": ("batch_size=2", "train.sequence_length=6"),
    "dmc_reacher": ("batch_size=2", "train.sequence_length=6"),
    "sigreg_tiny": ("batch_size=4",), "ijepa_tiny": ("batch_size=2",), "vjepa_tiny": ("batch_size=2",)})


@dataclass
class Row:
    section: str
    setting: str
    device: str
    throughput: str
    memory: str
    notes: str

    def markdown(self) -> str:
        cells = (self.section, self.setting, self.device, self.throughput, self.memory, self.notes)
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


HEADER = "| section | setting | device | throughput | peak memory | notes |\n|---|---|---|---:|---:|---|"


# ------------------------------------------------------------------------------------------- machine
def machine_facts(device: torch.device) -> list[str]:
    """Lines naming the accelerator (or the CPU), the software versions and the matmul precision."""
    import torchwm

    lines = [f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
             f"Python {platform.python_version()}, torchwm {torchwm.__version__}, "
             f"float32 matmul precision {torch.get_float32_matmul_precision()!r}"]
    if device.type == "cuda":
        try:
            p = torch.cuda.get_device_properties(device)
            lines.append(f"GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}, "
                         f"{p.multi_processor_count} SMs, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}"
                         f"{driver_version()}")
        except (RuntimeError, AssertionError) as err:
            lines.append(f"GPU: {device} unavailable ({type(err).__name__}: {err})")
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    lines.append(f"CPU: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    return lines


def driver_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
        if out:
            return f", driver {out[0]}"
    return ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB RSS"  # KiB on Linux


def autocast(device: torch.device, bf16: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def precisions(device: torch.device) -> list[bool]:
    """bf16 autocast or not: both on CUDA, float32 only elsewhere."""
    return [False, True] if device.type == "cuda" else [False]


# ------------------------------------------------------------------------------------------- models
def agent_for(preset: str, overrides: tuple[str, ...], device: torch.device, sizes: Sizes):
    from torchwm import JEPAAgent
    from torchwm.config import load_config

    cfg = load_config(preset, [*overrides, *sizes.overrides.get(preset, ()), *QUIET, f"device={device}"],
                      check_paths=False)
    return JEPAAgent(cfg, check_paths=False)


def world_model(agent, device: torch.device):
    torch.manual_seed(0)
    return agent.build_model(*agent.action_bounds()).to(device)


def train_seconds(model, batch: Callable[[], tuple[Any, ...]], cfg, device: torch.device, bf16: bool,
                  sizes: Sizes) -> float:
    """Seconds of ``sizes.steps`` optimisation steps as the trainer takes them, after ``sizes.warmup`` untimed ones."""
    from torchwm.training import make_optimizer

    optimizer = make_optimizer(model, cfg.learning_rate, cfg.train.weight_decay)
    total = sizes.warmup + sizes.steps
    model.train()
    start = 0.0
    for step in range(total):
        if step == sizes.warmup:
            sync(device)
            start = time.perf_counter()
        with autocast(device, bf16):
            out = model.loss(*batch())
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        if hasattr(model, "after_step"):
            model.after_step(step + 1, total)
    sync(device)
    return time.perf_counter() - start


def world_model_training(preset: str, overrides: tuple[str, ...], device: torch.device, bf16: bool,
                         sizes: Sizes) -> tuple[str, str]:
    agent = agent_for(preset, overrides, device, sizes)
    c, length = agent.cfg, agent.sequence_length
    model = world_model(agent, device)
    low, high = model.action_low, model.action_high  # (A,)
    frames = torch.randint(0, 256, (c.batch_size, length, 3, c.image_size, c.image_size), dtype=torch.uint8,
                           device=device)
    actions = low + (high - low) * torch.rand(c.batch_size, length - c.model.history, low.numel(), device=device)
    seconds = train_seconds(model, lambda: (frames, actions), c, device, bf16, sizes)
    encoder = c.model.encoder if c.model.encoder != "vit" else f"vit {c.embed_dim}-d x {c.num_layers}"
    return (f"{sizes.steps * c.batch_size * length / seconds:.0f} frames/s",
            f"{1e3 * seconds / sizes.steps:.1f} ms/step; batch {c.batch_size} x {length} frames at {c.image_size} px; "
            f"{encoder}")


def planning_latency(preset: str, overrides: tuple[str, ...], device: torch.device, episodes: int,
                     sizes: Sizes) -> tuple[str, str]:
    plan = ("planning.planner=cem", f"planning.samples={sizes.samples}", f"planning.iterations={sizes.iterations}",
            f"planning.horizon={sizes.horizon}")
    agent = agent_for(preset, (*overrides, *plan), device, sizes)
    p = agent.cfg.planning
    model = world_model(agent, device).eval()
    planner = agent.planner()
    size = agent.cfg.image_size
    frames = torch.randint(0, 256, (episodes, model.history, 3, size, size), dtype=torch.uint8, device=device)
    times = []
    with torch.no_grad():
        context = model.context(model.encode(frames))  # (E, C)
        goal = model.encode(frames[:, -1])  # (E, D)
        for call in range(sizes.calls + 1):  # the first call warms up
            sync(device)
            start = time.perf_counter()
            planner.plan(model, context, goal, model.action_low, model.action_high)
            sync(device)
            if call:
                times.append(time.perf_counter() - start)
    ms = 1e3 * float(np.median(times))
    return (f"{ms:.1f} ms/call",
            f"{ms / episodes:.2f} ms/episode; {p.samples} samples x {p.iterations} iterations x horizon {p.horizon}, "
            f"{p.elites} elites, cost_steps {p.cost_steps}; median of {sizes.calls}")


def pretraining(preset: str, device: torch.device, bf16: bool, sizes: Sizes) -> tuple[str, str]:
    agent = agent_for(preset, (), device, sizes)
    c, p = agent.cfg, agent.cfg.pretrain
    torch.manual_seed(0)
    model = agent.build_model().to(device)
    b, s = c.batch_size, c.image_size
    if p.method == "vjepa":
        clips = torch.randint(0, 256, (b, p.clip_frames, 3, s, s), dtype=torch.uint8, device=device)
        samplers = agent.mask_samplers()
        batch = lambda: (clips, {k: sampler(b) for k, sampler in samplers.items()})  # noqa: E731
        unit, shape = "clips", f"{b} clips x {p.clip_frames} frames; masks {', '.join(samplers)}"
    elif p.method == "sigreg":
        views = p.global_views + p.local_views
        images = torch.rand(b, views, 3, s, s, device=device)
        batch = lambda: (images,)  # noqa: E731
        unit, shape = "images", f"{b} images x {views} views ({p.global_views} global)"
    else:
        masks = agent.mask_sampler()
        images = torch.rand(b, 3, s, s, device=device)
        batch = lambda: (images, masks(b))  # noqa: E731
        unit, shape = "images", f"{b} images, {p.mask} masks"
    seconds = train_seconds(model, batch, c, device, bf16, sizes)
    encoder = c.model.encoder if p.method == "sigreg" else f"vit {c.embed_dim}-d x {c.num_layers}"
    return (f"{sizes.steps * b / seconds:.1f} {unit}/s",
            f"{1e3 * seconds / sizes.steps:.1f} ms/step; {shape} at {s} px; {encoder}")


# ------------------------------------------------------------------------------------------- main
def measure(rows: list[Row], section: str, setting: str, device: torch.device, fn: Callable[[], tuple[str, str]]):
    """Run one measurement into ``rows``; an error becomes its row instead of ending the run."""
    try:
        reset_peak(device)
        throughput, notes = fn()
        row = Row(section, setting, str(device), throughput, peak_memory(device), notes)
    except Exception as err:  # noqa: BLE001 - one failed setting must not lose the others
        memory = "-"
        with contextlib.suppress(Exception):
            memory = peak_memory(device)  # e.g. what an out-of-memory setting reached
        row = Row(section, setting, str(device), "error", memory, f"{type(err).__name__}: {err}"[:300])
    rows.append(row)
    with contextlib.suppress(Exception):
        reset_peak(device)  # frees what the failed setting left
    print(row.markdown(), flush=True)


def run(args: argparse.Namespace, device: torch.device, rows: list[Row]) -> None:
    sizes = QUICK if args.quick else FULL
    models = {"dmc_reacher_planning": ("dmc_reacher_planning", ()), "dmc_reacher + ViT": ("dmc_reacher", VIT)}
    if "train" in args.only:
        for name, (preset, overrides) in models.items():
            for bf16 in precisions(device):
                measure(rows, "world-model training", f"{name}, {'bf16 autocast' if bf16 else 'fp32'}", device,
                        lambda: world_model_training(preset, overrides, device, bf16, sizes))
    if "plan" in args.only:
        for name, (preset, overrides) in models.items():
            for episodes in sizes.episodes:
                measure(rows, "CEM planning", f"{name}, {episodes} episode{'s' if episodes > 1 else ''} per call",
                        device, lambda: planning_latency(preset, overrides, device, episodes, sizes))
    if "pretrain" in args.only:
        for preset in ("sigreg_tiny", "ijepa_tiny", "vjepa_tiny"):
            for bf16 in precisions(device):
                measure(rows, "pretraining", f"{preset}, {'bf16 autocast' if bf16 else 'fp32'}", device,
                        lambda: pretraining(preset, device, bf16, sizes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="tiny batches and few steps: checks the script on a CPU")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--out", help="also write the machine, the table and the command to this Markdown file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    command = shlex.join(["python", *(sys.argv if argv is None else [sys.argv[0], *argv])])
    facts = [*machine_facts(device), f"dmc_reacher + ViT: the dmc_reacher preset with --set {' '.join(VIT)}"]
    print("\n".join(facts), flush=True)
    print(f"\n{HEADER}", flush=True)
    rows: list[Row] = []
    try:
        run(args, device, rows)
    finally:
        table = "\n".join([HEADER, *(r.markdown() for r in rows)])
        text = "\n".join([*facts, "", table, "", "```bash", command, "```", ""])
        print(f"\n{table}\n\n{command}", flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"table: {args.out}")


if __name__ == "__main__":
    main()

"""Window parallelism (issue 16): measured speed-up and bytes on this CPU, and a model of the GPU speed-up.

    python benchmarks/bench_parallel.py cpu     # 1 vs 2 processes on the demo model, interleaved, min of 2 rounds
    python benchmarks/bench_parallel.py model   # FLOPs of the real architectures (meta device) -> speed-up model

``cpu`` launches ``syncguide panorama --window-parallel`` as torchrun would (RANK, WORLD_SIZE, ... by hand, one
thread per process, gloo) and counts, in every process, the bytes each collective brings in (``worker`` mode
wraps ``torch.distributed``'s calls); the bytes are checked against :func:`step_bytes`'s formula. ``model`` counts
the FLOPs of one model call of SD 2-base (UNet, VAE decoder, LPIPS' VGG16) and FLUX.1-dev (transformer, VAE
decoder) with ``torch.utils.flop_counter`` on the meta device (no weights, no memory), turns them into GPU
seconds at an assumed throughput, and models a step on P GPUs: the largest share of model calls, the serial
anchor pass of exact sync, the all-gathers (ring: (P-1)/P of the stack over the link, plus a per-hop latency),
and the final decode (each process decodes the whole canvas). Results: BENCHMARKS.md, "Window parallelism".
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from architectures import FLUX_DEV, SD2_UNET, sd_vae

PROMPT = "a snowy mountain range"
CPU_ARGS = ["--width", "1024", "--steps", "10", "--view-batch-size", "1", "--sync-batch-size", "1", "--device", "cpu"]
CPU_CASES = {"MultiDiffusion": ["--method", "multidiffusion"], "SyncDiffusion (exact, 10 steps)": []}
GPU_FLOPS = 400e12  # H200 bf16/fp16 dense: 989 TFLOP/s peak; 40% of it is a usual large-model utilisation
LINKS = {"NVLink (one node)": (300e9, 5e-6), "InfiniBand NDR (across nodes)": (45e9, 20e-6)}  # bytes/s, s per hop
PROCESSES = (1, 2, 4, 8, 16, 32, 64)


# --- cpu: measured -----------------------------------------------------------------------------------------------


def worker(args: list[str]) -> int:
    """One process: count the bytes the collectives bring in, run the command, write rank 0's counts."""
    import torch.distributed as dist

    from syncguide.cli.main import main

    counts = {"all_gather": 0, "broadcast": 0, "calls": 0}
    gather, broadcast = dist.all_gather, dist.broadcast

    def counted_gather(outputs, tensor, *a, **k):
        counts["all_gather"] += tensor.numel() * tensor.element_size() * (len(outputs) - 1)
        counts["calls"] += 1
        return gather(outputs, tensor, *a, **k)

    def counted_broadcast(tensor, src, *a, **k):
        if dist.get_rank() != src:
            counts["broadcast"] += tensor.numel() * tensor.element_size()
        counts["calls"] += 1
        return broadcast(tensor, src, *a, **k)

    dist.all_gather, dist.broadcast = counted_gather, counted_broadcast
    import syncguide.pipeline

    loop = syncguide.pipeline.sample_joint

    def timed_loop(*a, **k):
        start = time.perf_counter()
        try:
            return loop(*a, **k)
        finally:
            counts["loop_seconds"] = time.perf_counter() - start

    syncguide.pipeline.sample_joint = timed_loop
    torch.set_num_threads(1)
    status = main(args)
    if os.environ.get("RANK", "0") == "0":
        Path(os.environ["BENCH_COUNTS"]).write_text(json.dumps(counts))
    return status


def launch(n: int, args: list[str], directory: Path) -> dict:
    """``n`` processes of one run (torchrun's environment by hand); rank 0's JSON line and byte counts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    processes = []
    for rank in range(n):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n)}
        env.update(LOCAL_WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, BENCH_COUNTS="counts.json")
        command = [sys.executable, __file__, "worker", *args]
        processes.append(subprocess.Popen(command, cwd=directory, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate()[0] for p in processes]
    if any(p.returncode for p in processes):
        raise SystemExit(f"a run failed: {args}")
    line = json.loads(next(x for x in outputs[0].splitlines() if x.startswith("{")))
    return {"seconds": line["seconds"], **json.loads((directory / "counts.json").read_text())}


def cpu() -> None:
    """1 vs 2 processes, interleaved rounds (other jobs only ever add time: the minimum is kept)."""
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(2):
            for name, extra in CPU_CASES.items():
                for n in (1, 2):
                    args = ["panorama", PROMPT, *CPU_ARGS, *extra, "--window-parallel", "--overwrite"]
                    result = launch(n, [*args, "--out", f"{n}.png"], Path(tmp))
                    best = rows.setdefault((name, n), result)
                    for key in ("seconds", "loop_seconds"):
                        best[key] = min(best[key], result[key])
                same = (Path(tmp) / "1.png").read_bytes() == (Path(tmp) / "2.png").read_bytes()
                rows[(name, 2)]["same"] = same
                print(f"round {round_} {name}: done", file=sys.stderr)
    check_bytes(rows)
    print("| method | processes | call s | speed-up | sampling loop s | speed-up | kB in / step, rank 0 | same PNG |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, n), row in rows.items():
        one = rows[(name, 1)]
        speed, loop = one["seconds"] / row["seconds"], one["loop_seconds"] / row["loop_seconds"]
        volume = (row["all_gather"] + row["broadcast"]) / 10
        same = "" if n == 1 else ("yes" if row["same"] else "NO")
        cells = f"{row['seconds']:.2f} | {speed:.2f}x | {row['loop_seconds']:.2f} | {loop:.2f}x | {volume / 1e3:.1f}"
        print(f"| {name} | {n} | {cells} | {same} |")


def check_bytes(rows: dict) -> None:
    """The bytes rank 0 received in the 2-process runs equal the formula (demo: 16-latent windows of 8 channels,
    4 px a latent, so 31 windows at stride 8 on the 256-latent canvas; CFG inside a call; 10 steps all synced)."""
    steps, view, digest = 10, 8 * 16 * 16 * 4, 5 * 8 * 8  # one window's latents (float32); the argument check
    md = rows[("MultiDiffusion", 2)]
    assert md["all_gather"] == steps * 16 * view + digest, md  # rank 1 makes 16 of the 31 calls a step
    assert md["broadcast"] == 0, md
    sync = rows[("SyncDiffusion (exact, 10 steps)", 2)]
    assert sync["all_gather"] == steps * (16 + 15) * view + digest, sync  # and 15 of the 30 gradient passes
    assert sync["broadcast"] == steps * (10 * 8 + 3 * 64 * 64 * 4), sync  # the anchor image and its header


# --- model: GPU speed-up from FLOPs and bytes -------------------------------------------------------------------


def flops(module: torch.nn.Module, *args, **kwargs) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args, **kwargs)
    return float(counter.get_total_flops())


def sd2_costs() -> dict:
    """FLOPs of SD 2-base's UNet call (CFG: 2 rows, 64x64 latents), its VAE decoder (one 512 px window) and
    LPIPS' VGG16 trunk (two 512 px images)."""
    import torchvision
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD2_UNET)
        vae = AutoencoderKL(**sd_vae(4))
        vgg = torchvision.models.vgg16().features
        return {
            "call": flops(unet, torch.randn(2, 4, 64, 64), torch.ones(2), torch.randn(2, 77, 1024)),
            "decode": flops(vae.decode, torch.randn(1, 4, 64, 64)),
            "lpips": flops(vgg, torch.randn(2, 3, 512, 512)),
        }


def flux_costs() -> dict:
    """FLOPs of FLUX.1-dev's transformer call (guidance-distilled: 1 row; a 1024 px window = 4096 tokens, 512 text
    tokens) and its VAE decoder (one 1024 px window); LPIPS' VGG16 at 1024 px for fast sync's loss."""
    import torchvision
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(**FLUX_DEV)
        vae = AutoencoderKL(**sd_vae(16))
        vgg = torchvision.models.vgg16().features
        call = flops(
            model,
            hidden_states=torch.randn(1, 4096, 64),
            encoder_hidden_states=torch.randn(1, 512, 4096),
            pooled_projections=torch.randn(1, 768),
            timestep=torch.ones(1),
            img_ids=torch.zeros(4096, 3),
            txt_ids=torch.zeros(512, 3),
            guidance=torch.ones(1),
        )
        return {
            "call": call,
            "decode": flops(vae.decode, torch.randn(1, 16, 128, 128)),
            "lpips": flops(vgg, torch.randn(2, 3, 1024, 1024)),
        }


def scenarios() -> list[dict]:
    """The runs modelled: SD 2-base 512 x 3072 (the paper's setting) and a 360-degree FLUX.1-dev 8192 x 1024."""
    sd, flux = sd2_costs(), flux_costs()
    sd_stack = 41 * 4 * 64 * 64 * 2  # 41 windows (stride 8), fp16 latents, B = 1 (CFG's rows are not gathered)
    flux_stack = 64 * 16 * 128 * 128 * 2  # 64 windows (stride 16, circular), bf16
    base = [
        ("SD 2-base 512x3072, MultiDiffusion", sd, 41, 50, sd_stack, 0, 6),
        ("SD 2-base 512x3072, exact sync every step", sd, 41, 50, sd_stack, 3 * 512 * 512 * 2, 6),
        ("FLUX.1-dev 8192x1024 360-degree, MultiDiffusion", flux, 64, 28, flux_stack, 0, 8),
        ("FLUX.1-dev 8192x1024 360-degree, fast sync every step", flux, 64, 28, flux_stack, 3 * 1024**2 * 2, 8),
    ]
    return [
        {"name": n, "costs": c, "windows": w, "steps": s, "stack": b, "anchor": a, "canvas": k}
        for n, c, w, s, b, a, k in base
    ]


def step_seconds(row: dict, p: int, link: tuple[float, float]) -> tuple[float, float]:
    """(compute, communication) seconds of one step on ``p`` GPUs: the largest share of the calls (and of the
    sync gradient passes), the anchor pass alone, and each all-gather of the stack over ``link``."""
    costs, w = row["costs"], row["windows"]
    bandwidth, hop = link
    compute = math.ceil(w / p) * costs["call"]
    gathers = 1
    name = row["name"]
    if "exact" in name:  # anchor: forward + decode; each other window: forward + decode + LPIPS, and backward (x2)
        compute += costs["call"] + costs["decode"]
        compute += math.ceil((w - 1) / p) * 3 * (costs["call"] + costs["decode"] + costs["lpips"])
        gathers = 2
    elif "fast" in name:  # the held output is the step's; gradient through x0 and LPIPS (tiny decoder: ~free)
        compute += math.ceil((w - 1) / p) * 3 * costs["lpips"]
        gathers = 2
    comm = 0.0 if p == 1 else gathers * ((p - 1) * hop + (p - 1) / p * row["stack"] / bandwidth)
    if row["anchor"] and p > 1:
        comm += (p - 1) * hop + row["anchor"] / bandwidth
    return compute / GPU_FLOPS, comm


def run_seconds(row: dict, p: int, link: tuple[float, float]) -> tuple[float, float]:
    compute, comm = step_seconds(row, p, link)
    decode = row["canvas"] * row["costs"]["decode"] / GPU_FLOPS  # the whole canvas, by every process
    return row["steps"] * (compute + comm) + decode, row["steps"] * comm


def model() -> None:
    rows = scenarios()
    for row in rows:
        c = row["costs"]
        print(
            f"{row['name']}: call {c['call'] / 1e12:.2f} TFLOP, window decode {c['decode'] / 1e12:.2f}, LPIPS"
            f" {c['lpips'] / 1e12:.2f}; {row['windows']} windows, {row['steps']} steps; stack {row['stack'] / 1e6:.1f}"
            f" MB a gather; one process {run_seconds(row, 1, LINKS['NVLink (one node)'])[0]:.0f} s"
        )
    for link_name, link in LINKS.items():
        print(f"\n{link_name}: speed-up (communication share of the run)\n")
        print("| run | " + " | ".join(f"P={p}" for p in PROCESSES) + " |")
        print("|---|" + "---|" * len(PROCESSES))
        for row in rows:
            one = run_seconds(row, 1, link)[0]
            cells = []
            for p in PROCESSES:
                total, comm = run_seconds(row, p, link)
                cells.append(f"{one / total:.1f}x ({100 * comm / total:.1f}%)")
            print(f"| {row['name']} | " + " | ".join(cells) + " |")
    plot(rows)


def plot(rows: list[dict]) -> None:
    """results/window_parallel.png: modelled speed-up against processes, NVLink, with the ideal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    ps = list(PROCESSES)
    axis.plot(ps, ps, "k:", label="ideal")
    for row in rows:
        one = run_seconds(row, 1, LINKS["NVLink (one node)"])[0]
        axis.plot(ps, [one / run_seconds(row, p, LINKS["NVLink (one node)"])[0] for p in ps], "o-", label=row["name"])
    axis.set(xscale="log", yscale="log", xlabel="processes (GPUs)", ylabel="modelled speed-up")
    axis.set_xticks(ps, [str(p) for p in ps])
    axis.set_yticks(ps, [str(p) for p in ps])
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    axis.set_title("Window parallelism: modelled speed-up on H200s over NVLink")
    out = Path(__file__).resolve().parent.parent / "results" / "window_parallel.png"
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(f"\nplot: {out}")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "worker":
        sys.exit(worker(sys.argv[2:]))
    if command not in ("cpu", "model"):
        raise SystemExit(__doc__)
    cpu() if command == "cpu" else model()

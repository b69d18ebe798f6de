"""Training throughput per model on this machine: images/s of forward + hybrid loss + backward + SGD step.

    python -m cytoedge.benchmarks.train_throughput [--models all] [--batch 16] [--size 224] [--steps 5] [--threads N]

Measures model compute only (random input tensors, no data loading), batch 16 at
224 x 224 as in the paper's recipe, after one warm-up step. Prints a table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence


def measure(name: str, batch: int, size: int, steps: int) -> dict[str, float]:
    import torch

    from cytoedge.train.losses import HybridLoss
    from cytoedge.train.models import create_model

    torch.manual_seed(0)
    model = create_model(name, 5).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=0.005)
    crit = HybridLoss()
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % 5

    def step() -> None:
        logits, emb = model(x)
        loss = crit(logits, emb, y).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"images_per_s": batch / median, "step_ms": 1000 * median, "min_ms": 1000 * times[0],
            "max_ms": 1000 * times[-1]}


def main(argv: Sequence[str] | None = None) -> int:
    from cytoedge.train.models import list_models

    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.train_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all", help="comma-separated registry names, or 'all'")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5, help="timed steps per model (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args(argv)
    import platform

    import torch
    from rich.console import Console
    from rich.table import Table

    if args.threads:
        torch.set_num_threads(args.threads)
    names = list_models() if args.models == "all" else [m.strip() for m in args.models.split(",")]
    t = Table(title=f"training throughput, batch {args.batch} at {args.size}x{args.size}, "
                    f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    for col in ("model", "images/s", "step ms (median)", "min ms", "max ms"):
        t.add_column(col, justify="right" if col != "model" else "left")
    for name in names:
        r = measure(name, args.batch, args.size, args.steps)
        t.add_row(name, f"{r['images_per_s']:.1f}", f"{r['step_ms']:.0f}", f"{r['min_ms']:.0f}", f"{r['max_ms']:.0f}")
    Console(width=110).print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

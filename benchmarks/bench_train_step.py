"""One training iteration: Cerberus vs torchreid's ResNet-50 triplet engine (a script, no test).

An iteration is forward + losses + backward + Adam step on one P x K batch (P = 16 identities,
K = 4 images, 384x128 by default), random images already on the device (no data loading).

- ours: the engine's path (:class:`cerberus.training.engine.TrainStep` -> ``compute_losses`` with
  every term on: L_sem with adaptive margins, CE + soft-margin batch-hard triplet on the 5
  representations, L_reg), the paper model of ``configs/market1501.yaml``, Market-1501 schema,
  751 classes, Adam with the config's betas and weight decay; the loss values are read back to
  the host each step as the engine does. Labels are P random identities x K; each identity has
  one random SID per group (so SIDs are consistent with identities), and the adaptive margins
  come from the SID counts of 751 such random identities.
- torchreid: what ``ImageTripletEngine.forward_backward`` does for one step:
  ``build_model('resnet50', num_classes=751, loss='triplet', pretrained=False)`` in train mode
  returns ``(logits, features)``; ``TripletLoss(margin=0.3)`` + ``CrossEntropyLoss(label_smooth
  =True)`` from ``torchreid.losses`` (weights 1, 1), ``torchreid.optim.build_optimizer(optim=
  'adam')``, ``.item()`` of each loss and the accuracy, zero_grad, backward, step.

Both run with the same memory format (channels_last by default, as our engine on CPU and CUDA)
and, on CUDA, the same bf16 autocast (our engine's ``train.amp``; torchreid's engine itself runs
fp32 - use ``--no-amp`` to compare in fp32).

Each model is measured in a fresh subprocess so memory peaks do not mix: seconds/iteration is the
median over the timed iterations after warm-up; peak memory is, on CPU, the growth of the
resident high-water mark over the resident size after building model, optimiser and batch
(``/proc/self/clear_refs`` resets the mark; elsewhere ``ru_maxrss``), on CUDA
``torch.cuda.max_memory_allocated`` (after a reset at the same point; includes the weights).

    python benchmarks/bench_train_step.py               # P=16 K=4 384x128, CPU
    python benchmarks/bench_train_step.py --device cuda
    python benchmarks/bench_train_step.py --quick       # P=4 K=4 128x64
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from _common import (
    import_torchreid,
    markdown_table,
    max_rss_mib,
    median,
    print_machine,
    run_script,
    timed,
)

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 751  # Market-1501 training identities


def _status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            return int(re.search(rf"{key}:\s+(\d+) kB", fh.read()).group(1)) / 1024
    except (OSError, AttributeError):
        return None


def _reset_rss_peak() -> float:
    """Reset the resident high-water mark to the current RSS; returns the baseline (MiB)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return max_rss_mib()  # cannot reset: growth over the peak so far
    return _status_mib("VmRSS") or max_rss_mib()


def _rss_peak() -> float:
    return _status_mib("VmHWM") or max_rss_mib()


def make_batch(args, device: torch.device, mf: torch.memory_format):
    """Images, labels (P identities x K) and SIDs (one per identity and group), seeded."""
    from cerberus.attributes.schema import GROUPS
    from cerberus.attributes.schema_files import get_schema
    from cerberus.attributes.sids import adaptive_margins

    rng = np.random.default_rng(0)
    num_sids = get_schema("market1501").num_sids
    id_sids = np.stack([rng.integers(0, num_sids[g], NUM_CLASSES) for g in GROUPS], axis=1)
    counts = {g: np.bincount(id_sids[:, k], minlength=num_sids[g]) for k, g in enumerate(GROUPS)}
    margins = {
        g: torch.as_tensor(m) for g, m in adaptive_margins(counts, NUM_CLASSES).items()
    }  # alpha, beta: the paper's (also the config's defaults)
    ids = np.repeat(rng.choice(NUM_CLASSES, args.p, replace=False), args.k)
    labels = torch.as_tensor(ids, device=device)
    sids = torch.as_tensor(id_sids[ids], device=device)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.p * args.k, 3, args.height, args.width, generator=g)
    images = images.to(device).contiguous(memory_format=mf)
    return images, labels, sids, margins


def setup_ours(args, device, mf, amp):
    from cerberus.attributes.schema_files import get_schema
    from cerberus.config import load_config
    from cerberus.training.checkpoints import model_from_config
    from cerberus.training.engine import TrainStep

    cfg = load_config(args.config)
    images, labels, sids, margins = make_batch(args, device, mf)
    model = model_from_config(cfg.model, get_schema("market1501"), NUM_CLASSES, load_weights=False)
    net = TrainStep(model, margins, cfg.loss).to(device).to(memory_format=mf)
    net.train()
    optimizer = torch.optim.Adam(
        net.parameters(),
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        weight_decay=cfg.optim.weight_decay,
    )

    def step():
        with amp():
            losses = net(images, labels, sids)
        values = {k: float(v.detach()) for k, v in losses.items()}  # the engine logs these
        optimizer.zero_grad(set_to_none=True)
        losses["total_loss"].backward()
        optimizer.step()
        return values

    return step


def setup_torchreid(args, device, mf, amp):
    torchreid = import_torchreid()
    if torchreid is None:
        raise SystemExit(2)
    images, labels, _, _ = make_batch(args, device, mf)
    model = torchreid.models.build_model(
        "resnet50", num_classes=NUM_CLASSES, loss="triplet", pretrained=False
    )
    model = model.to(device).to(memory_format=mf)
    model.train()
    optimizer = torchreid.optim.build_optimizer(model, optim="adam", lr=0.0003)
    criterion_t = torchreid.losses.TripletLoss(margin=0.3)
    criterion_x = torchreid.losses.CrossEntropyLoss(
        num_classes=NUM_CLASSES, use_gpu=device.type == "cuda", label_smooth=True
    )

    def step():  # ImageTripletEngine.forward_backward, weight_t = weight_x = 1
        with amp():
            outputs, features = model(images)
            loss_t = criterion_t(features, labels)
            loss_x = criterion_x(outputs, labels)
            loss = loss_t + loss_x
        summary = {
            "loss_t": loss_t.item(),
            "loss_x": loss_x.item(),
            "acc": torchreid.metrics.accuracy(outputs, labels)[0].item(),
        }
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return summary

    return step


def worker(args) -> None:
    """Measure one model in this (fresh) process; print one JSON line."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    mf = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    use_amp = cuda and not args.no_amp

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    step = (setup_ours if args.worker == "ours" else setup_torchreid)(args, device, mf, amp)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _reset_rss_peak()
    first = step()
    times = timed(step, warmup=max(0, args.warmup - 1), iters=args.iters, sync=sync)
    last = step()
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _rss_peak()
    result = {
        "model": args.worker,
        "median_s": median(times),
        "min_s": min(times),
        "base_mib": base,
        "peak_mib": peak,
        "first": first,
        "last": last,
    }
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--p", type=int, default=16, help="identities per batch")
    parser.add_argument("--k", type=int, default=4, help="images per identity")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (CPU 5, CUDA 30)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed (CPU 2, CUDA 10)")
    parser.add_argument(
        "--memory-format", choices=["channels_last", "contiguous"], default="channels_last"
    )
    parser.add_argument("--no-amp", action="store_true", help="CUDA: fp32 instead of bf16 autocast")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "market1501.yaml")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--models", nargs="+", default=["ours", "torchreid"])
    parser.add_argument("--quick", action="store_true", help="P=4 K=4 at 128x64, 2 iterations")
    parser.add_argument("--worker", choices=["ours", "torchreid"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.p, args.k, args.height, args.width = 4, 4, 128, 64
        args.iters = args.iters or 2
        args.warmup = args.warmup if args.warmup is not None else 1
    cuda = args.device == "cuda"
    args.iters = args.iters or (30 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    args.warmup = max(1, args.warmup)  # the first step allocates Adam's state: never timed
    if args.worker:
        worker(args)
        return

    print_machine()
    amp = "bf16 autocast" if cuda and not args.no_amp else "fp32"
    print(
        f"# device {args.device}, batch P={args.p} x K={args.k} = {args.p * args.k} at "
        f"{args.height}x{args.width}, {args.memory_format}, {amp}, "
        f"{args.warmup} warm-up + {args.iters} timed iterations, one subprocess per model, "
        f"{args.threads or torch.get_num_threads()} torch threads"
    )
    models = list(args.models)
    if "torchreid" in models and import_torchreid() is None:
        models.remove("torchreid")
    passthrough = [a for a in sys.argv[1:] if a != "--quick"]
    passthrough += [
        f"--p={args.p}",
        f"--k={args.k}",
        f"--height={args.height}",
        f"--width={args.width}",
        f"--iters={args.iters}",
        f"--warmup={args.warmup}",
    ]
    rows, results = [], {}
    for name in models:
        cmd = [sys.executable, __file__, *passthrough, f"--worker={name}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"{name}: worker failed (exit {proc.returncode})\n{proc.stderr[-3000:]}")
            continue
        r = json.loads(lines[-1][len("RESULT ") :])
        results[name] = r
        losses = ", ".join(f"{k} {v:.3f}" for k, v in r["last"].items())
        print(f"# {name}: last step {losses}")
        growth = r["peak_mib"] - r["base_mib"]
        mem = (
            f"{r['peak_mib']:.0f} (+{growth:.0f} over weights)"
            if cuda
            else f"+{growth:.0f} (RSS {r['base_mib']:.0f} before)"
        )
        rows.append(
            [
                "ours (TrainStep, all losses)" if name == "ours" else "torchreid resnet50 triplet",
                f"{r['median_s']:.3f}",
                f"{r['min_s']:.3f}",
                f"{args.p * args.k / r['median_s']:.1f}",
                mem,
            ]
        )
    peak_head = "peak CUDA MiB" if cuda else "peak RSS growth MiB"
    print()
    print(markdown_table(["model", "s/iter (median)", "s/iter (min)", "images/s", peak_head], rows))
    if len(results) == 2:
        ratio = results["ours"]["median_s"] / results["torchreid"]["median_s"]
        print(f"\nours / torchreid time per iteration = {ratio:.2f}x")


if __name__ == "__main__":
    run_script(main)

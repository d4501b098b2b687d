"""The paper setting on one CUDA machine, in one command, in under 8 minutes (a script).

Prepared on CPU so that a GPU's few minutes go to measuring, not debugging. Steps, each timed and
written to ``OUT/gpu_check.json`` as soon as it ends (a step that fails records its one-line
error and the next step still runs, so one broken step does not waste the run):

1. ``synth``: the built-in synthetic benchmark rendered at the paper's input size, 384x128.
2. ``train``: ``configs/market1501.yaml`` (ResNet-50, last stride 1, P=16 x K=4, bf16 autocast,
   channels_last, the paper's losses) for a few hundred iterations on it, **from random
   initialisation** (``model.pretrained=false``: no ImageNet weights can be fetched offline, so
   the metrics of this short run say nothing about the paper's numbers), then ``eval``. From the
   training log: iterations/s in the steady state (after the first fifth), the data-loader stall
   fraction (time in the loader's ``next()`` over wall time, the engine's ``data_wait_s``), the
   projected wall time of the paper's 24k iterations, and peak GPU memory.
3. ``fp32``: the same run with ``train.amp=false``; the losses of the first iteration must agree
   within ``LOSS_FIRST_RTOL`` and the mean total loss of the last third within
   ``LOSS_TAIL_RTOL`` (the two trajectories diverge slowly, so this is a loose check); features of
   256 test images from the bf16-trained model, embedded under bf16 autocast and in fp32, must
   agree to a mean part cosine of ``FEATURE_MIN_COSINE`` per image.
4. ``bench_train_step`` / ``bench_extraction``: ours and torchreid 0.2.5's ResNet-50 (when it
   imports) on the same card and batch (bf16 + channels_last): images/s, peak memory, GMACs per
   image, throughput per multiply-accumulate relative to torchreid, and model FLOP utilisation
   against the card's dense bf16 peak (``PEAK_BF16_TFLOPS``, or ``--peak-tflops``); training
   counts 3x the forward MACs (forward + backward), a MAC is 2 FLOPs.
5. ``ddp``: ``torchrun --nproc_per_node=N -m cerberus.cli train`` over NCCL with every GPU present
   (N = 1 proves the DistributedDataParallel path: the engine wraps the model under torchrun even
   for one process).

Goals it reports against (issue: the paper setting on a GPU): at least torchreid's throughput
per MAC in training and extraction; 24k iterations projected under 4 hours on one H100-class
card; no data-loader stall above 10%.

    python benchmarks/gpu_check.py --out runs/gpu_check           # a CUDA machine
    python benchmarks/gpu_check.py --smoke --out /tmp/gpu_smoke    # CPU, tiny, about a minute

``--smoke`` runs every step with tiny settings on the CPU (ResNet-18, 64x32, a few iterations,
gloo instead of NCCL): the test suite runs it, so the script is known to work before a GPU ever
sees it. Its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PAPER_ITERATIONS = 24_000
LOSS_FIRST_RTOL = 0.02
LOSS_TAIL_RTOL = 0.10
FEATURE_MIN_COSINE = 0.99
FEATURE_MEAN_COSINE = 0.999
GOAL_HOURS = 4.0
GOAL_STALL = 0.10

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
}


@dataclass
class Settings:
    """Sizes of one check; :func:`settings` gives the GPU run's and the smoke run's."""

    device: str
    height: int
    width: int
    train_ids: int
    test_ids: int
    cameras: int
    iterations: int
    overrides: list[str] = field(default_factory=list)
    bench_p: int = 16
    bench_k: int = 4
    bench_iters: int = 30
    bench_warmup: int = 10
    extract_batch: int = 64
    extract_iters: int = 50
    ddp_iterations: int = 20
    feature_images: int = 256


def settings(smoke: bool, iterations: int | None) -> Settings:
    if smoke:
        return Settings(
            device="cpu",
            height=64,
            width=32,
            train_ids=8,
            test_ids=6,
            cameras=2,
            iterations=iterations or 6,
            overrides=[
                "model.backbone=resnet18",
                "model.dim=32",
                "data.p=4",
                "data.k=2",
                "data.num_workers=0",
                "eval.num_workers=0",
                "eval.batch_size=16",
                "train.threads=1",
            ],
            bench_p=2,
            bench_k=2,
            bench_iters=1,
            bench_warmup=1,
            extract_batch=4,
            extract_iters=1,
            ddp_iterations=2,
            feature_images=8,
        )
    workers = max(1, min(8, (os.cpu_count() or 2) - 2))
    return Settings(
        device="cuda",
        height=384,
        width=128,
        train_ids=200,
        test_ids=200,
        cameras=6,
        iterations=iterations or 300,
        overrides=[f"data.num_workers={workers}", f"eval.num_workers={workers}"],
    )


def peak_tflops(device_name: str, given: float | None) -> float | None:
    """The card's dense bf16 peak (TFLOP/s): ``given``, else looked up by name, else None."""
    if given:
        return given
    for key, value in PEAK_BF16_TFLOPS.items():
        if all(part in device_name for part in key.split()):
            return value
    return None


class Report:
    """The results file, rewritten after every step so a killed run keeps what it measured."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self.data: dict[str, Any] = {"meta": meta, "steps": {}}
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        print(f"## {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            result = {"ok": True, **fn()}
        except Exception as exc:  # recorded, the next step runs
            line = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
            result = {"ok": False, "error": line, "traceback": traceback.format_exc()[-4000:]}
            print(f"   FAILED: {line}", flush=True)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        self.data["steps"][name] = result
        self.write()
        print(f"   done in {result['seconds']:.1f} s", flush=True)
        return result if result["ok"] else None


def machine(device: str) -> dict[str, Any]:
    import platform

    import torch

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "device": device,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if device == "cuda":
        info.update(
            gpu=torch.cuda.get_device_name(0),
            gpus=torch.cuda.device_count(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16=torch.cuda.is_bf16_supported(),
            gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        )
    return info


def _overrides(s: Settings, data: Path, out: Path, iterations: int, *more: str) -> list[str]:
    """The config overrides every run of this check shares (one list: the DDP run and the
    timed runs cannot drift apart); ``more`` before the settings' own overrides."""
    return [
        f"data.root={data}",
        "model.pretrained=false",  # offline: no ImageNet weights (the results say so)
        f"optim.iterations={iterations}",
        f"train.output_dir={out}",
        f"train.device={s.device}",
        "train.eval_every=0",
        "train.checkpoint_every=0",
        "train.progress=false",
        *more,
        *s.overrides,
    ]


def train_config(s: Settings, data: Path, out: Path, *extra: str):
    from cerberus.config import load_config

    overrides = _overrides(
        s,
        data,
        out,
        s.iterations,
        f"optim.warmup_iterations={max(1, s.iterations // 10)}",
        "train.log_every=1",
    )
    return load_config(ROOT / "configs" / "market1501.yaml", [*overrides, *extra])


def read_log(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r for r in rows if "total_loss" in r]


def steady_state(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Iterations/s and stall fraction after the first fifth of the run (warm-up excluded)."""
    a = rows[len(rows) // 5]
    b = rows[-1]
    its = b["iteration"] - a["iteration"]
    wall = b["elapsed_s"] - a["elapsed_s"]
    if its <= 0 or wall <= 0:  # a run too short to have a steady state: the whole run
        a = {"iteration": 0, "elapsed_s": 0.0, "data_wait_s": 0.0}
        its, wall = b["iteration"], b["elapsed_s"]
    stall = (b["data_wait_s"] - a["data_wait_s"]) / wall
    return {
        "iterations_per_s": its / wall,
        "seconds_per_iteration": wall / its,
        "data_loader_stall_fraction": stall,
        "projected_paper_hours": wall / its * PAPER_ITERATIONS / 3600,
    }


def run_train(s: Settings, data: Path, out: Path, *extra: str) -> dict[str, Any]:
    import torch

    from cerberus.evaluation.evaluate import evaluate_checkpoint
    from cerberus.training.engine import train

    cfg = train_config(s, data, out, *extra)
    if s.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = train(cfg, resume=False)
    peak = torch.cuda.max_memory_allocated() / 2**30 if s.device == "cuda" else None
    rows = read_log(out / "log.jsonl")
    metrics = evaluate_checkpoint(
        result.checkpoint, device=s.device, num_workers=cfg.eval.num_workers
    )
    return {
        "iterations": result.iterations,
        "train_seconds": result.seconds,
        "data_wait_seconds": result.data_wait_seconds,
        "peak_gpu_memory_gib": peak,
        **steady_state(rows),
        "first_losses": result.first_losses,
        "tail_total_loss": sum(r["total_loss"] for r in rows[-max(1, len(rows) // 3) :])
        / max(1, len(rows) // 3),
        "metrics": {
            "reID mAP": metrics["reid"]["map_score"],
            "reID rank-1": metrics["reid"]["rank1_score"],
            "APS mAP": metrics["aps"]["full"]["map_score"],
            "PAR mA": metrics["par"]["mean_accuracy_score"],
        },
        "checkpoint": str(result.checkpoint),
    }


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def compare_precision(
    s: Settings, data: Path, bf16: dict[str, Any], fp32: dict[str, Any]
) -> dict[str, Any]:
    """bf16 against fp32: first-iteration losses, tail loss, features of the same model."""
    import numpy as np
    import torch

    from cerberus.data.datasets import ImageDataset, read_dataset
    from cerberus.data.transforms import build_transforms
    from cerberus.inference.loading import load_model

    first = {
        k: relative(bf16["first_losses"][k], v)
        for k, v in fp32["first_losses"].items()
        if k in bf16["first_losses"] and abs(v) > 1e-6
    }
    tail = relative(bf16["tail_total_loss"], fp32["tail_total_loss"])
    model = load_model(bf16["checkpoint"]).model
    dataset = read_dataset(data, "market1501")
    images = ImageDataset(
        dataset.gallery, build_transforms(height=s.height, width=s.width, train=False)
    )
    n = min(s.feature_images, len(images))
    x = torch.stack([images[i]["image"] for i in range(n)]).to(s.device)
    x = x.contiguous(memory_format=torch.channels_last)
    model = model.to(s.device).to(memory_format=torch.channels_last).eval()
    with torch.inference_mode():
        full = model(x)["features"].float()
        if s.device == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                low = model(x)["features"].float()
        else:  # the smoke run: bf16 autocast on CPU exercises the same comparison
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(x)["features"].float()
    cos = torch.nn.functional.cosine_similarity(full, low, dim=-1).mean(dim=1).cpu().numpy()
    out = {
        "first_loss_rel_diff": first,
        "tail_total_loss_rel_diff": tail,
        "feature_cosine_min": float(np.min(cos)),
        "feature_cosine_mean": float(np.mean(cos)),
        "feature_images": n,
        "tolerances": {
            "first_loss_rtol": LOSS_FIRST_RTOL,
            "tail_loss_rtol": LOSS_TAIL_RTOL,
            "feature_min_cosine": FEATURE_MIN_COSINE,
            "feature_mean_cosine": FEATURE_MEAN_COSINE,
        },
    }
    out["within_tolerance"] = bool(
        all(v <= LOSS_FIRST_RTOL for v in first.values())
        and tail <= LOSS_TAIL_RTOL
        and out["feature_cosine_min"] >= FEATURE_MIN_COSINE
        and out["feature_cosine_mean"] >= FEATURE_MEAN_COSINE
    )
    return out


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a child (this checkout's ``src`` first on its path); its one-line failure."""
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{Path(cmd[1]).name} exited {proc.returncode}: {tail[0][:300]}")
    return proc.stdout


def bench_config(s: Settings, out: Path) -> Path:
    """The paper config with this check's overrides (smoke: ResNet-18), for the bench scripts."""
    from cerberus.config import load_config, save_config

    path = out / "bench_config.yaml"
    save_config(load_config(ROOT / "configs" / "market1501.yaml", [*s.overrides]), path)
    return path


def bench_train_step(s: Settings, config: Path) -> dict[str, Any]:
    """The bench script's worker, once per model, in fresh processes: RESULT lines."""
    sys.path.insert(0, str(BENCH))
    from _common import import_torchreid

    models = ["ours"] + (["torchreid"] if import_torchreid() is not None else [])
    out: dict[str, Any] = {"batch": s.bench_p * s.bench_k, "models": {}}
    for name in models:
        cmd = [
            sys.executable,
            str(BENCH / "bench_train_step.py"),
            f"--device={s.device}",
            f"--p={s.bench_p}",
            f"--k={s.bench_k}",
            f"--height={s.height}",
            f"--width={s.width}",
            f"--iters={s.bench_iters}",
            f"--warmup={s.bench_warmup}",
            f"--config={config}",
            f"--worker={name}",
        ]
        lines = [x for x in _run(cmd, 300).splitlines() if x.startswith("RESULT ")]
        r = json.loads(lines[-1][len("RESULT ") :])
        r["images_per_s"] = s.bench_p * s.bench_k / r["median_s"]
        out["models"][name] = r
    return out


def bench_extraction(s: Settings, config: Path, report: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(BENCH / "bench_extraction.py"),
        f"--device={s.device}",
        f"--batch={s.extract_batch}",
        f"--height={s.height}",
        f"--width={s.width}",
        f"--iters={s.extract_iters}",
        f"--warmup={s.bench_warmup}",
        "--memory-formats",
        "channels_last",
        f"--json={report}",
        f"--config={config}",
    ]
    _run(cmd, 300)
    return json.loads(report.read_text())


def macs_per_image(s: Settings) -> dict[str, float]:
    """Forward GMACs per image of ours (paper config) and torchreid's ResNet-50 when present."""
    from cerberus.attributes.schema_files import get_schema
    from cerberus.config import load_config
    from cerberus.modeling.model import count_flops
    from cerberus.training.checkpoints import model_from_config

    cfg = load_config(ROOT / "configs" / "market1501.yaml", [*s.overrides])
    model = model_from_config(cfg.model, get_schema("market1501"), 751, load_weights=False)
    return {"ours": count_flops(model, height=s.height, width=s.width)["macs"] / 1e9}


def utilisation(
    results: dict[str, Any], macs: dict[str, float], peak: float | None
) -> dict[str, Any]:
    """Throughput per MAC relative to torchreid and FLOP utilisation against the bf16 peak."""
    out: dict[str, Any] = {"peak_bf16_tflops": peak}
    train = (results.get("bench_train_step") or {}).get("models", {})
    extraction = (results.get("bench_extraction") or {}).get("models", {})
    extract_macs = {k: v.get("gmacs") for k, v in extraction.items()}
    gmacs = {**macs, **{k: v for k, v in extract_macs.items() if v}}
    for kind, table, passes in (("train", train, 3), ("extraction", extraction, 1)):
        rows = {}
        for name, r in table.items():
            ips = r.get("images_per_s")
            g = gmacs.get("ours" if name == "ours" else "torchreid")
            if not ips or not g:
                continue
            flops = ips * g * 1e9 * 2 * passes
            rows[name] = {
                "images_per_s": ips,
                "gmacs_per_image": g,
                "achieved_tflops": flops / 1e12,
                "mfu": flops / (peak * 1e12) if peak else None,
            }
        if "ours" in rows and "torchreid" in rows:
            ours, ref = rows["ours"], rows["torchreid"]
            rows["ours_per_mac_vs_torchreid"] = (ours["images_per_s"] * ours["gmacs_per_image"]) / (
                ref["images_per_s"] * ref["gmacs_per_image"]
            )
        out[kind] = rows
    return out


def run_ddp(s: Settings, data: Path, out: Path) -> dict[str, Any]:
    import torch

    gpus = torch.cuda.device_count() if s.device == "cuda" else 1
    overrides = _overrides(s, data, out, s.ddp_iterations, "optim.warmup_iterations=1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={gpus}",
        "-m",
        "cerberus.cli",
        "train",
        "-c",
        str(ROOT / "configs" / "market1501.yaml"),
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    _run(cmd, 300, env)
    backend = "nccl" if s.device == "cuda" else "gloo"
    from cerberus.training.checkpoints import load_checkpoint

    return {
        "processes": gpus,
        "backend": backend,
        "iterations": int(load_checkpoint(out / "last.pt")["iteration"]),
        "wall_seconds": time.perf_counter() - t0,
        "checkpoint_written": (out / "last.pt").is_file(),
    }


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return str(v)


def summary_rows(data: dict[str, Any]) -> list[list[str]]:
    """The printed table: one row per figure, with its goal where the issue sets one."""
    steps = data["steps"]
    rows: list[list[str]] = []
    for name, step in steps.items():
        if not step.get("ok"):
            rows.append([name, "FAILED", step.get("error", ""), ""])
    t = steps.get("train", {})
    if t.get("ok"):
        rows += [
            ["train", "iterations/s (steady)", _fmt(t["iterations_per_s"]), ""],
            [
                "train",
                "data-loader stall",
                f"{100 * t['data_loader_stall_fraction']:.1f}%",
                f"<= {100 * GOAL_STALL:.0f}%",
            ],
            [
                "train",
                f"projected {PAPER_ITERATIONS} iterations",
                f"{t['projected_paper_hours']:.2f} h",
                f"< {GOAL_HOURS:.0f} h",
            ],
            ["train", "peak GPU memory (GiB)", _fmt(t["peak_gpu_memory_gib"]), ""],
            *[["eval", k, _fmt(100 * v), "random init"] for k, v in t["metrics"].items()],
        ]
    p = steps.get("precision", {})
    if p.get("ok"):
        worst = max(p["first_loss_rel_diff"].values(), default=0.0)
        rows += [
            ["bf16 vs fp32", "first-iteration losses, max rel diff", f"{worst:.4f}", ""],
            ["bf16 vs fp32", "tail loss rel diff", f"{p['tail_total_loss_rel_diff']:.4f}", ""],
            [
                "bf16 vs fp32",
                "feature cosine min / mean",
                f"{p['feature_cosine_min']:.4f} / {p['feature_cosine_mean']:.4f}",
                "",
            ],
            ["bf16 vs fp32", "within tolerance", str(p["within_tolerance"]), "True"],
        ]
    u = steps.get("utilisation", {})
    if u.get("ok"):
        for kind in ("train", "extraction"):
            for name, r in u.get(kind, {}).items():
                if name == "ours_per_mac_vs_torchreid":
                    rows.append([kind, "ours per MAC / torchreid", f"{r:.2f}x", ">= 1.00x"])
                    continue
                mfu = f", MFU {100 * r['mfu']:.1f}%" if r["mfu"] is not None else ""
                rows.append(
                    [
                        kind,
                        f"{name} images/s",
                        f"{r['images_per_s']:.1f}",
                        f"{r['gmacs_per_image']:.2f} GMACs{mfu}",
                    ]
                )
    d = steps.get("ddp", {})
    if d.get("ok"):
        rows.append(
            [
                "ddp",
                f"torchrun x{d['processes']} ({d['backend']})",
                f"{d['iterations']} iterations, {d['wall_seconds']:.0f} s",
                "runs",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on the CPU (tests)")
    parser.add_argument("--iterations", type=int, default=None, help="training run (GPU: 300)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="card's dense bf16 peak")
    parser.add_argument(
        "--skip", nargs="*", default=[], help="steps to leave out (synth is reused if present)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    s = settings(args.smoke, args.iterations)
    if s.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --smoke for the CPU dry run", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    meta = machine(s.device)
    meta["settings"] = asdict(s)
    report = Report(args.out / "gpu_check.json", meta)
    data = args.out / "synthetic"
    results: dict[str, Any] = {}

    def synth() -> dict[str, Any]:
        from cerberus.data.synthetic.benchmark import generate_synthetic

        if (data / "market_attribute.mat").is_file():
            return {"reused": str(data)}
        summary = generate_synthetic(
            data,
            num_train_ids=s.train_ids,
            num_test_ids=s.test_ids,
            num_cameras=s.cameras,
            num_distractors=max(2, s.test_ids // 4),
            num_junk=max(1, s.test_ids // 8),
            height=s.height,
            width=s.width,
            num_workers=max(1, min(16, os.cpu_count() or 1)),
        )
        return {"summary": str(summary)}

    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("synth", synth),
        ("train", lambda: run_train(s, data, args.out / "train_bf16")),
        ("fp32", lambda: run_train(s, data, args.out / "train_fp32", "train.amp=false")),
        ("precision", lambda: compare_precision(s, data, results["train"], results["fp32"])),
        ("bench_train_step", lambda: bench_train_step(s, bench_config(s, args.out))),
        (
            "bench_extraction",
            lambda: bench_extraction(
                s, bench_config(s, args.out), args.out / "bench_extraction.json"
            ),
        ),
        (
            "utilisation",
            lambda: utilisation(
                results,
                macs_per_image(s),
                peak_tflops(meta.get("gpu", ""), args.peak_tflops)
                if s.device == "cuda"
                else args.peak_tflops,
            ),
        ),
        ("ddp", lambda: run_ddp(s, data, args.out / "ddp")),
    ]
    for name, fn in steps:
        if name in args.skip:
            continue
        r = report.step(name, fn)
        if r is not None:
            results[name] = r
    rows = summary_rows(report.data)
    sys.path.insert(0, str(BENCH))
    from _common import markdown_table

    table = markdown_table(["step", "figure", "value", "goal / note"], rows)
    (args.out / "gpu_check.md").write_text(
        f"# gpu_check, {meta['date']}, {meta.get('gpu', meta['device'])}\n\n"
        f"`{meta['command']}`\n\n{table}\n"
    )
    print()
    print(table)
    failed = [n for n, st in report.data["steps"].items() if not st.get("ok")]
    if failed:
        print(f"\nfailed steps: {', '.join(failed)} (errors in {report.path})")
    return 1 if failed else 0


if __name__ == "__main__":
    from _common import run_script

    run_script(main)

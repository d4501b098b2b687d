"""Feature-extraction throughput: Cerberus vs torchreid's ResNet-50 (a script, no test).

Model throughput only: a random batch already on the device (no decoding, no data loader), the
models in eval mode under ``torch.inference_mode``. Ours is the paper configuration read from
``configs/market1501.yaml`` (ResNet-50, last stride 1, two branches, d = 512, alignment on;
``forward_features``, the five representations); torchreid's is
``torchreid.models.build_model('resnet50', num_classes=751, loss='softmax', pretrained=False)``
in eval mode, which returns its 2048-d pooled features (last stride 2). No pretrained weights are
loaded: the speed does not depend on them.

CUDA: bf16 autocast and channels_last for both. CPU: fp32, both memory formats are timed
(channels_last and contiguous) so the table shows whether channels_last helps; our training
engine uses channels_last on CPU too. Also prints parameters and GMACs (multiply-accumulates,
``torch.utils.flop_counter``: convolutions and matrix products) of both at the input size.
Target on CPU: ours >= 0.6x torchreid's images/s.

    python benchmarks/bench_extraction.py                   # 384x128, batch 64, CPU
    python benchmarks/bench_extraction.py --device cuda --iters 50
    python benchmarks/bench_extraction.py --quick           # 128x64, batch 8, seconds
    python benchmarks/bench_extraction.py --profile         # where our time goes (top ops)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _common import import_torchreid, markdown_table, median, print_machine, run_script, timed
from torch.utils.flop_counter import FlopCounterMode

from cerberus.attributes.schema_files import get_schema
from cerberus.config import load_config
from cerberus.modeling.model import count_flops, count_parameters, fuse_batchnorm
from cerberus.training.checkpoints import model_from_config

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 751  # Market-1501 training identities


def build_ours(config: Path) -> torch.nn.Module:
    cfg = load_config(config)
    schema = get_schema(cfg.data.dataset)
    model = model_from_config(cfg.model, schema, NUM_CLASSES, load_weights=False)
    print(
        f"# ours: {cfg.model.backbone}, last stride {cfg.model.last_stride}, d={cfg.model.dim}, "
        f"alignment {cfg.model.use_alignment} (from {config})"
    )
    return model


class OursFeatures(torch.nn.Module):
    """The inference path of extraction: ``model(x)["features"]`` in eval mode."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["features"]


def fuse_conv_bn(model: torch.nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the Conv2d before it (in place); returns the count.

    Covers ResNets (torchvision's and torchreid's): ``convN`` / ``bnN`` attribute pairs of a
    block and Conv2d -> BatchNorm2d neighbours in a Sequential (stem, downsample).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = 0
    for module in list(model.modules()):
        if isinstance(module, torch.nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                    module._modules[a] = fuse_conv_bn_eval(conv, bn)
                    module._modules[b] = torch.nn.Identity()
                    fused += 1
        for i in range(1, 5):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{i}", torch.nn.Identity())
                fused += 1
    return fused


def torchreid_macs(model: torch.nn.Module, height: int, width: int) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, height, width))
    return counter.get_total_flops() / 2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--iters", type=int, default=None, help="timed batches (CPU 5, CUDA 50)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed batches (CPU 2, CUDA 10)")
    parser.add_argument(
        "--memory-formats",
        nargs="+",
        choices=["channels_last", "contiguous"],
        default=None,
        help="CPU default: both; CUDA default: channels_last",
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "market1501.yaml")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--no-torchreid", action="store_true")
    parser.add_argument(
        "--fuse-bn",
        action="store_true",
        help="also fold BatchNorm into torchreid's convolutions (it does not by itself)",
    )
    parser.add_argument(
        "--unfused",
        action="store_true",
        help="time our raw training module instead of the inference path (BN not folded)",
    )
    parser.add_argument("--profile", action="store_true", help="torch.profiler top ops of ours")
    parser.add_argument("--quick", action="store_true", help="128x64, batch 8, 2 iters")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.height, args.width, args.batch = 128, 64, 8
        args.iters = args.iters or 2
        args.warmup = args.warmup or 1
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    iters = args.iters or (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    default_formats = ["channels_last"] if cuda else ["channels_last", "contiguous"]
    formats = args.memory_formats or default_formats
    print_machine()
    print(
        f"# device {args.device}, input {args.batch}x3x{args.height}x{args.width}, "
        f"{warmup} warm-up + {iters} timed batches, {'bf16 autocast' if cuda else 'fp32'}"
    )

    torch.manual_seed(0)
    ours = build_ours(args.config).eval()
    counts = count_parameters(ours)
    our_macs = count_flops(ours, height=args.height, width=args.width)["macs"]
    if not args.unfused:  # what `cerberus extract` / `cerberus eval` run
        ours = fuse_batchnorm(ours)
        print("# ours: BatchNorm folded into convolutions, as cerberus extract / eval do")
    models = {"ours": (OursFeatures(ours), counts["embedding_params"], our_macs)}
    torchreid = None if args.no_torchreid else import_torchreid()
    if torchreid is not None:
        ref = torchreid.models.build_model(
            "resnet50", num_classes=NUM_CLASSES, loss="softmax", pretrained=False
        ).eval()
        ref_params = sum(p.numel() for n, p in ref.named_parameters() if "classifier" not in n)
        models["torchreid resnet50"] = (
            ref,
            ref_params,
            torchreid_macs(ref, args.height, args.width),
        )
    if args.fuse_bn:
        with torch.no_grad():
            for name, (model, _, _) in models.items():
                if name == "ours" and not args.unfused:
                    continue
                print(f"# {name}: {fuse_conv_bn(model)} BatchNorm2d folded into convolutions")
    device = torch.device(args.device)
    x0 = torch.randn(args.batch, 3, args.height, args.width)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    rows, speed = [], {}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for fmt in formats:
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        x = x0.to(device).contiguous(memory_format=mf)
        for name, (model, params, macs) in models.items():
            model.to(device=device, memory_format=mf)

            def run(model=model, x=x):
                with torch.inference_mode(), amp:
                    return model(x)

            out = run()
            times = timed(run, warmup=warmup, iters=iters, sync=sync)
            sec = median(times)
            speed[(fmt, name)] = args.batch / sec
            results.setdefault(fmt, {})["ours" if name == "ours" else "torchreid"] = {
                "images_per_s": args.batch / sec,
                "ms_per_batch": sec * 1000,
                "gmacs": macs / 1e9,
                "params": params,
            }
            rows.append(
                [
                    name,
                    fmt,
                    f"{params / 1e6:.1f}M",
                    f"{macs / 1e9:.2f}",
                    f"{tuple(out.shape)}",
                    f"{sec * 1000:.0f}",
                    f"{args.batch / sec:.1f}",
                ]
            )
            print("  ".join(rows[-1]), flush=True)
            model.to("cpu")
            if cuda:
                torch.cuda.empty_cache()

    if args.profile:
        model = models["ours"][0].to(device=device, memory_format=torch.channels_last)
        x = x0.to(device).contiguous(memory_format=torch.channels_last)
        acts = [torch.profiler.ProfilerActivity.CPU]
        if cuda:
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.inference_mode(), amp, torch.profiler.profile(activities=acts) as prof:
            model(x)
            sync()
        key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=15))

    headers = ["model", "memory format", "params", "GMACs/img", "output", "ms/batch", "images/s"]
    print()
    print(markdown_table(headers, rows))
    ref_name = "torchreid resnet50"
    for fmt in formats:
        if (fmt, ref_name) in speed:
            ratio = speed[(fmt, "ours")] / speed[(fmt, ref_name)]
            print(f"\n{fmt}: ours / torchreid throughput = {ratio:.2f}x (target >= 0.6x)", end="")
    if len(formats) == 2:
        for name in models:
            gain = speed[("channels_last", name)] / speed[("contiguous", name)]
            print(f"\n{name}: channels_last / contiguous = {gain:.2f}x", end="")
    print()
    if torchreid is not None:
        print(f"MACs ratio ours / torchreid = {our_macs / models[ref_name][2]:.2f}")
    if args.json is not None:
        fmt = "channels_last" if "channels_last" in results else formats[0]
        args.json.write_text(
            json.dumps({"device": args.device, "batch": args.batch, "models": results[fmt]})
        )


if __name__ == "__main__":
    run_script(main)

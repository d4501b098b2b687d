"""Training loop (method §4): P x K batches, Adam, warm-up + cosine, atomic checkpoints.

Resuming is exact: a batch is a pure function of ``(seed, iteration)`` (see
:class:`~cerberus.data.samplers.PKBatchSampler`), the learning rate a pure function of the
iteration, and the checkpoint holds the model, the optimiser, the iteration and the RNG state.
Multi-GPU runs go through ``torchrun`` (DistributedDataParallel, NCCL on GPU, gloo on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from cerberus.attributes.schema import GROUPS
from cerberus.attributes.sids import adaptive_margins, sid_identity_counts
from cerberus.config import Config, save_config, with_absolute_data_paths
from cerberus.data.datasets import (
    ImageDataset,
    ReIDDataset,
    drop_unreadable,
    exclude_training_sids,
)
from cerberus.data.samplers import PKBatchSampler
from cerberus.data.table import open_dataset
from cerberus.data.transforms import build_transforms
from cerberus.devices import resolve_device
from cerberus.errors import CerberusError
from cerberus.files import atomic_write
from cerberus.modeling.losses import compute_losses, fixed_margins
from cerberus.modeling.model import Cerberus
from cerberus.modeling.optim import group_summary, parameter_groups
from cerberus.training.checkpoints import (
    CHECKPOINT_VERSION,
    build_model_for,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)

logger = logging.getLogger(__name__)

LOSS_TERMS = ("sem_loss", "ce_loss", "triplet_loss", "reg_loss", "attr_loss", "total_loss")


def learning_rate(
    iteration: int,
    *,
    lr: float,
    warmup_start_lr: float,
    warmup_iterations: int,
    iterations: int,
    min_lr: float = 0.0,
) -> float:
    """method §4.1: linear warm-up ``warmup_start_lr -> lr`` over ``warmup_iterations``, then
    cosine.

    ``lr(i) = s + (lr - s) * i / W`` for ``i < W``; afterwards
    ``min_lr + (lr - min_lr) * (1 + cos(pi * (i - W) / (T - W))) / 2``.
    """
    if iteration < warmup_iterations:
        return warmup_start_lr + (lr - warmup_start_lr) * iteration / warmup_iterations
    span = max(1, iterations - warmup_iterations)
    progress = min(1.0, (iteration - warmup_iterations) / span)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_margins(cfg: Config, dataset: ReIDDataset) -> dict[str, torch.Tensor]:
    """Per-SID margins: adaptive from the training identities' SID counts, or a fixed value."""
    schema = dataset.schema
    if cfg.loss.margin != "adaptive":
        return fixed_margins(schema.num_sids, float(cfg.loss.margin))
    table = dataset.train_identity_table()
    margins = adaptive_margins(
        sid_identity_counts(table), len(table), alpha=cfg.loss.alpha, beta=cfg.loss.beta
    )
    return {g: torch.as_tensor(margins[g]) for g in GROUPS}


class TrainStep(nn.Module):
    """The model plus its losses, so DistributedDataParallel sees every parameter in one graph.

    ``forward(images, labels, sids, values)`` returns the dict of named loss terms
    (:data:`LOSS_TERMS`); ``values`` (attribute codes) feed the optional attribute heads.
    """

    def __init__(self, model: Cerberus, margins: dict[str, torch.Tensor], cfg: Config):
        super().__init__()
        self.model = model
        for g in GROUPS:
            self.register_buffer(f"margin_{g}", margins[g].float())
        self.loss_cfg = cfg.loss

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        sids: torch.Tensor,
        values: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        output = self.model(images)
        c = self.loss_cfg
        return compute_losses(
            output,
            labels=labels,
            sids=sids,
            model=self.model,
            margins={g: getattr(self, f"margin_{g}") for g in GROUPS},
            lambda_sem=c.lambda_sem,
            lambda_id=c.lambda_id,
            lambda_reg=c.lambda_reg,
            values=values,
            lambda_attr=c.lambda_attr,
            attr_form=c.attr_form,
            semantic=c.semantic,
            semantic_scale=c.semantic_scale,
            use_sem=c.use_sem,
            use_id=c.use_id,
            use_reg=c.use_reg,
        )


@dataclass
class TrainResult:
    checkpoint: Path
    iterations: int
    seconds: float
    last_losses: dict[str, float]
    first_losses: dict[str, float]
    data_wait_seconds: float = 0.0
    """Time spent waiting for the data loader to hand over the next batch (in ``seconds``)."""


def _distributed_context() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def _check_resumable(saved: Config, cfg: Config, path: Path) -> None:
    saved = with_absolute_data_paths(saved)  # a relative root of an older run: as of this cwd
    if saved.train.seed != cfg.train.seed:
        raise CerberusError(
            f"{path}: cannot resume: it was trained with train.seed={saved.train.seed}, this run "
            f"has {cfg.train.seed} (other batches); use a new train.output_dir or the same seed"
        )
    for section in ("data", "model", "loss"):
        a, b = getattr(saved, section), getattr(cfg, section)
        if section == "data":
            a = a.__class__(**{**a.__dict__, "num_workers": 0})
            b = b.__class__(**{**b.__dict__, "num_workers": 0})
        if a != b:
            raise CerberusError(
                f"{path}: cannot resume: its {section} config differs from this run's "
                "(use a new train.output_dir or resume with the same config)"
            )


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Delete ``.last.pt.tmp<pid>`` files left by a run killed while writing its checkpoint.

    Only our own naming (:func:`cerberus.files.atomic_write`) is touched, and only for
    processes that no longer run.
    """
    if not out_dir.is_dir():
        return
    for tmp in out_dir.glob(".*.tmp*"):
        pid = tmp.name.rpartition(".tmp")[2]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        try:
            tmp.unlink()
            logger.info("removed %s, left by an interrupted checkpoint write", tmp)
        except OSError as exc:
            logger.warning("could not remove %s (%s)", tmp, exc.strerror or exc)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def _trim_log(log_path: Path, iteration: int) -> None:
    """Drop log lines past ``iteration`` (written after the checkpoint a run resumes from)."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            it = json.loads(line).get("iteration", 0)
        except (ValueError, AttributeError):
            continue  # a line cut by the kill
        if isinstance(it, int) and it <= iteration:
            kept.append(line + "\n")
    text = "".join(kept)
    atomic_write(log_path, lambda fh: fh.write(text.encode()), "training log")


def train(
    cfg: Config,
    *,
    resume: bool = True,
    dataset: ReIDDataset | None = None,
    on_evaluate: Callable[[Cerberus, int], dict[str, float]] | None = None,
) -> TrainResult:
    """Train Cerberus as configured; resume from ``output_dir/last.pt`` when present.

    Args:
        cfg: the resolved config.
        resume: continue from ``last.pt`` in the output folder if it exists.
        dataset: an already read dataset (else read from ``cfg.data``).
        on_evaluate: called as ``on_evaluate(model, iteration)`` every ``train.eval_every``
            iterations on rank 0; its metrics are logged (the CLI hands it
            :func:`cerberus.evaluation.evaluate.periodic_evaluation`; the training loop itself knows
            nothing of evaluation).
    """
    cfg = with_absolute_data_paths(cfg)  # stored in the checkpoint: usable from any folder
    rank, local_rank, world = _distributed_context()
    # under torchrun even one process goes through DistributedDataParallel (the path is proved)
    distributed = world > 1 or dist.is_torchelastic_launched()
    device = resolve_device(cfg.train.device, "train.device", local_rank=local_rank)
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    out_dir = Path(cfg.train.output_dir)
    ckpt_path = out_dir / "last.pt"

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    threads = torch.get_num_threads()  # saved in the checkpoint: the run repeats with it
    if is_main:
        logger.info("intra-op threads: %d (train.threads=%d)", threads, cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    if dataset is None:
        d = cfg.data
        dataset = open_dataset(d.root, d.dataset, attributes=d.attributes, schema=d.schema)
    dataset = exclude_training_sids(dataset, cfg.data.exclude_sids)
    if cfg.data.on_bad_image == "skip":
        train_images = drop_unreadable(dataset.train, "training set")
        if len(train_images) != len(dataset.train):
            dataset = dataclasses.replace(dataset, train=train_images)
    model = build_model_for(cfg, dataset)
    step_module = TrainStep(model, build_margins(cfg, dataset), cfg).to(device)
    if cfg.train.channels_last:  # faster convolutions on CUDA and on CPU (oneDNN)
        step_module = step_module.to(memory_format=torch.channels_last)
    groups = parameter_groups(
        step_module,
        weight_decay=cfg.optim.weight_decay,
        decay_norm_and_bias=cfg.optim.decay_norm_and_bias,
        decay_prototypes=cfg.optim.decay_prototypes,
    )
    if is_main:
        logger.info("optimiser groups: %s", group_summary(groups))
    optimizer = torch.optim.Adam(groups, lr=cfg.optim.warmup_start_lr, betas=cfg.optim.betas)

    start = 0
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        saved = checkpoint_config(state, ckpt_path)
        _check_resumable(saved, cfg, ckpt_path)
        if state["meta"].get("threads", threads) != threads:
            logger.warning(
                "%s was written with %d intra-op threads, this run has %d: the result will not "
                "be bit-identical to an uninterrupted run (set train.threads)",
                ckpt_path,
                state["meta"]["threads"],
                threads,
            )
        model.load_state_dict(state["model"])
        try:
            optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # e.g. written before the weight-decay groups were split
            raise CerberusError(
                f"{ckpt_path}: cannot resume: its optimizer state does not fit this run's "
                f"parameter groups ({str(exc).splitlines()[0][:120]}); use a new "
                "train.output_dir or --no-resume"
            ) from None
        torch.set_rng_state(state["rng"]["torch"])
        start = int(state["iteration"])
        if is_main:
            logger.info("resuming from %s at iteration %d", ckpt_path, start)
    log_path = out_dir / "log.jsonl"
    if is_main:
        _remove_stale_temporaries(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CerberusError(
                f"{out_dir}: cannot create train.output_dir ({exc.strerror or exc})"
            ) from None
        save_config(cfg, out_dir / "config.yaml")
        if start:
            _trim_log(log_path, start)
        elif log_path.exists():  # a fresh run starts a new log
            atomic_write(log_path, lambda fh: None, "training log")

    net: nn.Module = step_module
    if distributed:
        c = cfg.loss
        net = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[local_rank] if device.type == "cuda" else None,
            # A switched-off term leaves its parameters (prototypes, v, classifiers) unused.
            find_unused_parameters=not (c.use_sem and c.use_id and c.use_reg),
        )

    d = cfg.data
    transform = build_transforms(
        height=d.height,
        width=d.width,
        train=True,
        flip=d.flip,
        pad=d.pad,
        random_erasing=d.random_erasing,
    )
    sampler = PKBatchSampler(
        dataset.train.labels,
        p=d.p,
        k=d.k,
        seed=cfg.train.seed,
        start=start,
        stop=cfg.optim.iterations,
        rank=rank,
        world_size=world,
    )
    loader = torch.utils.data.DataLoader(
        ImageDataset(dataset.train, transform),
        batch_sampler=sampler,
        num_workers=d.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    meta = {
        "schema": dataset.schema.to_dict(),
        "num_classes": dataset.num_train_ids,
        "dataset": dataset.name,
        "threads": threads,
        # N_g^G of the training identities: the prior of the prior-aware decision (method §8.2)
        "sid_counts": {g: c.tolist() for g, c in dataset.train_sid_counts().items()},
    }
    amp = cfg.train.amp and device.type == "cuda"
    progress = None
    if is_main and cfg.train.progress:
        from tqdm import tqdm

        progress = tqdm(total=cfg.optim.iterations, initial=start, desc="train", unit="it")

    def checkpoint(iteration: int) -> None:
        if not is_main:
            return
        state = {
            "format": "cerberus",
            "version": CHECKPOINT_VERSION,
            "iteration": iteration,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "config": cfg.to_dict(),
            "meta": meta,
        }
        save_checkpoint(state, ckpt_path)

    if on_evaluate is None and cfg.train.eval_every and is_main:
        logger.warning(
            "train.eval_every=%d but no evaluation was handed to train(): none runs "
            "(the CLI passes cerberus.evaluation.evaluate.periodic_evaluation)",
            cfg.train.eval_every,
        )

    first: dict[str, float] = {}
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    data_wait = 0.0  # seconds spent in the loader's next(): the data-loader stall
    iteration = start
    net.train()
    try:
        tick = time.perf_counter()
        for batch in loader:
            data_wait += time.perf_counter() - tick
            lr = learning_rate(
                iteration,
                lr=cfg.optim.lr,
                warmup_start_lr=cfg.optim.warmup_start_lr,
                warmup_iterations=cfg.optim.warmup_iterations,
                iterations=cfg.optim.iterations,
                min_lr=cfg.optim.min_lr,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = batch["image"].to(device, non_blocking=True)
            if cfg.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = batch["label"].to(device)
            sids = batch["sids"].to(device)
            values = batch["values"].to(device)
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()
            with ctx:
                losses = net(images, labels, sids, values)
            values = {k: float(v.detach()) for k, v in losses.items()}
            for name, value in values.items():
                if not math.isfinite(value):
                    raise CerberusError(
                        f"iteration {iteration}: {name} is {value}; training stopped "
                        f"(last checkpoint: {ckpt_path if ckpt_path.exists() else 'none'})"
                    )
            optimizer.zero_grad(set_to_none=True)
            losses["total_loss"].backward()
            optimizer.step()
            iteration += 1
            if not first:
                first = values
            last = values
            if progress is not None:
                progress.update(1)
                progress.set_postfix(
                    {k.removesuffix("_loss"): f"{v:.3f}" for k, v in values.items()}, refresh=False
                )
            if is_main and (iteration % cfg.train.log_every == 0 or iteration == 1):
                timing = {
                    "elapsed_s": round(time.perf_counter() - t0, 4),
                    "data_wait_s": round(data_wait, 4),
                }
                with open(log_path, "a") as fh:
                    fh.write(
                        json.dumps({"iteration": iteration, "lr": lr, **values, **timing}) + "\n"
                    )
            if cfg.train.checkpoint_every and iteration % cfg.train.checkpoint_every == 0:
                checkpoint(iteration)
            if (
                on_evaluate is not None
                and is_main
                and cfg.train.eval_every
                and iteration % cfg.train.eval_every == 0
            ):
                model.eval()
                metrics = on_evaluate(model, iteration)
                model.train()
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"iteration": iteration, **metrics}) + "\n")
            tick = time.perf_counter()
    finally:
        if progress is not None:
            progress.close()
    if iteration > start or not ckpt_path.exists():
        checkpoint(iteration)
    if distributed:
        dist.barrier()
    return TrainResult(
        checkpoint=ckpt_path,
        iterations=iteration,
        seconds=time.perf_counter() - t0,
        last_losses=last,
        first_losses=first,
        data_wait_seconds=data_wait,
    )

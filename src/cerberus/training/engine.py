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

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from cerberus.attributes.schema import GROUPS
from cerberus.attributes.sids import adaptive_margins, sid_identity_counts
from cerberus.config import Config, LossConfig, save_config, with_absolute_data_paths
from cerberus.data.datasets import (
    ImageDataset,
    ReIDDataset,
    drop_unreadable,
    exclude_training_sids,
)
from cerberus.data.samplers import PKBatchSampler
from cerberus.data.table import open_dataset
from cerberus.data.transforms import build_transforms, camera_look
from cerberus.devices import resolve_device
from cerberus.errors import CerberusError
from cerberus.files import atomic_write
from cerberus.modeling.losses import compute_losses, fixed_margins
from cerberus.modeling.model import Cerberus
from cerberus.modeling.optim import group_summary, parameter_groups
from cerberus.training.checkpoints import (
    build_model_for,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
    training_checkpoint,
    training_meta,
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

    def __init__(self, model: Cerberus, margins: dict[str, torch.Tensor], loss: LossConfig):
        super().__init__()
        self.model = model
        for g in GROUPS:
            self.register_buffer(f"margin_{g}", margins[g].float())
        self.loss = loss

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        sids: torch.Tensor,
        values: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        output = self.model(images)
        return compute_losses(
            output,
            labels=labels,
            sids=sids,
            model=self.model,
            margins={g: getattr(self, f"margin_{g}") for g in GROUPS},
            values=values,
            loss=self.loss,
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


# --------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class RunContext:
    """Where this process trains: its rank among ``world`` (torchrun), device, output folder
    and intra-op threads (saved in the checkpoint: the run repeats with them)."""

    rank: int
    local_rank: int
    world: int
    distributed: bool
    device: torch.device
    out_dir: Path
    threads: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "log.jsonl"


def _distributed_context() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def set_up(cfg: Config) -> RunContext:
    """Rank, device and process group (torchrun: NCCL on GPU, gloo on CPU), the intra-op threads,
    then ``torch.manual_seed(train.seed)``: every random draw of the run follows it."""
    rank, local_rank, world = _distributed_context()
    # under torchrun even one process goes through DistributedDataParallel (the path is proved)
    distributed = world > 1 or dist.is_torchelastic_launched()
    device = resolve_device(cfg.train.device, "train.device", local_rank=local_rank)
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    threads = torch.get_num_threads()
    if rank == 0:
        logger.info("intra-op threads: %d (train.threads=%d)", threads, cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    out_dir = Path(cfg.train.output_dir)
    return RunContext(rank, local_rank, world, distributed, device, out_dir, threads)


def training_data(cfg: Config, dataset: ReIDDataset | None) -> ReIDDataset:
    """The dataset to train on: read from ``cfg.data`` unless given, excluded SIDs left out,
    unreadable training images dropped when ``data.on_bad_image`` is ``"skip"``."""
    if dataset is None:
        d = cfg.data
        dataset = open_dataset(d.root, d.dataset, attributes=d.attributes, schema=d.schema)
    dataset = exclude_training_sids(dataset, cfg.data.exclude_sids)
    if cfg.data.on_bad_image == "skip":
        train_images = drop_unreadable(dataset.train, "training set")
        if len(train_images) != len(dataset.train):
            dataset = dataclasses.replace(dataset, train=train_images)
    return dataset


def unknown_cells(dataset: ReIDDataset) -> dict[str, int]:
    """Per attribute, how many training images have it unknown (``-1``): cells the semantic
    loss leaves out. Only attributes with at least one such cell; names in schema order."""
    values = np.asarray(dataset.train.values)
    counts = (values < 0).sum(0) if values.size else np.zeros(len(dataset.schema.attributes))
    return {a.name: int(n) for a, n in zip(dataset.schema.attributes, counts) if n > 0}


def log_unknown_cells(dataset: ReIDDataset) -> None:
    """One log line naming the attributes left unknown on some training images, with counts."""
    cells = unknown_cells(dataset)
    if cells:
        logger.info(
            "unknown attribute cells left out of training (of %d images): %s",
            len(dataset.train),
            ", ".join(f"{name} {n}" for name, n in cells.items()),
        )


def build_training(
    cfg: Config, dataset: ReIDDataset, run: RunContext
) -> tuple[Cerberus, TrainStep, torch.optim.Adam]:
    """The model (initialised from the seeded RNG), its :class:`TrainStep` on the run's device
    and Adam over its parameter groups (method §4.1)."""
    model = build_model_for(cfg, dataset)
    step_module = TrainStep(model, build_margins(cfg, dataset), cfg.loss).to(run.device)
    if cfg.train.channels_last:  # faster convolutions on CUDA and on CPU (oneDNN)
        step_module = step_module.to(memory_format=torch.channels_last)
    groups = parameter_groups(
        step_module,
        weight_decay=cfg.optim.weight_decay,
        decay_norm_and_bias=cfg.optim.decay_norm_and_bias,
        decay_prototypes=cfg.optim.decay_prototypes,
    )
    if run.is_main:
        logger.info("optimiser groups: %s", group_summary(groups))
    optimizer = torch.optim.Adam(groups, lr=cfg.optim.warmup_start_lr, betas=cfg.optim.betas)
    return model, step_module, optimizer


def wrap_distributed(step_module: TrainStep, cfg: Config, run: RunContext) -> nn.Module:
    """``step_module`` in DistributedDataParallel under torchrun, else itself."""
    if not run.distributed:
        return step_module
    c = cfg.loss
    return nn.parallel.DistributedDataParallel(
        step_module,
        device_ids=[run.local_rank] if run.device.type == "cuda" else None,
        # A switched-off term leaves its parameters (prototypes, v, classifiers) unused.
        find_unused_parameters=not (c.use_sem and c.use_id and c.use_reg),
    )


def batch_loader(
    cfg: Config, dataset: ReIDDataset, run: RunContext, start: int
) -> torch.utils.data.DataLoader:
    """P x K batches from iteration ``start`` to ``optim.iterations``, this rank's share; a batch
    is a pure function of ``(seed, iteration)`` (:class:`PKBatchSampler`)."""
    d = cfg.data
    transform = build_transforms(
        height=d.height,
        width=d.width,
        train=True,
        flip=d.flip,
        pad=d.pad,
        random_erasing=d.random_erasing,
        look=camera_look(d),
    )
    sampler = PKBatchSampler(
        dataset.train.labels,
        p=d.p,
        k=d.k,
        seed=cfg.train.seed,
        start=start,
        stop=cfg.optim.iterations,
        rank=run.rank,
        world_size=run.world,
    )
    return torch.utils.data.DataLoader(
        ImageDataset(dataset.train, transform),
        batch_sampler=sampler,
        num_workers=d.num_workers,
        pin_memory=run.device.type == "cuda",
        persistent_workers=False,
    )


# --------------------------------------------------------------------------- resume


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


def resume_from(
    path: Path, cfg: Config, model: Cerberus, optimizer: torch.optim.Optimizer, run: RunContext
) -> int:
    """Load the model, optimiser and torch RNG state of the checkpoint at ``path`` (written by
    this run's config: same seed, data, model and loss) and return its iteration."""
    state = load_checkpoint(path)
    saved = checkpoint_config(state, path)
    _check_resumable(saved, cfg, path)
    if state["meta"].get("threads", run.threads) != run.threads:
        logger.warning(
            "%s was written with %d intra-op threads, this run has %d: the result will not "
            "be bit-identical to an uninterrupted run (set train.threads)",
            path,
            state["meta"]["threads"],
            run.threads,
        )
    model.load_state_dict(state["model"])
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as exc:  # e.g. written before the weight-decay groups were split
        raise CerberusError(
            f"{path}: cannot resume: its optimizer state does not fit this run's "
            f"parameter groups ({str(exc).splitlines()[0][:120]}); use a new "
            "train.output_dir or --no-resume"
        ) from None
    torch.set_rng_state(state["rng"]["torch"])
    start = int(state["iteration"])
    if run.is_main:
        logger.info("resuming from %s at iteration %d", path, start)
    return start


def prepare_output(cfg: Config, run: RunContext, start: int) -> None:
    """On rank 0: the output folder (stale temporaries removed), ``config.yaml``, and the log
    cut back to ``start`` (a resumed run) or emptied (a fresh one)."""
    if not run.is_main:
        return
    out_dir, log_path = run.out_dir, run.log_path
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


# --------------------------------------------------------------------------- logging


class TrainingLog:
    """What a run reports on rank 0: ``log.jsonl`` (one JSON line per ``train.log_every``
    iterations and at iteration 1, with lr, the loss terms, ``elapsed_s`` and ``data_wait_s``;
    one line per evaluation), the progress bar, and the first and last losses."""

    def __init__(self, cfg: Config, run: RunContext, start: int) -> None:
        self.path = run.log_path
        self.every = cfg.train.log_every
        self.write = run.is_main
        self.progress = None
        if run.is_main and cfg.train.progress:
            from tqdm import tqdm

            self.progress = tqdm(total=cfg.optim.iterations, initial=start, desc="train", unit="it")
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self.data_wait = 0.0  # seconds spent in the loader's next(): the data-loader stall

    def start_clock(self) -> None:
        """Time from now on (``elapsed_s`` counts from the first batch's request)."""
        self.t0 = time.perf_counter()

    def losses(self, iteration: int, lr: float, values: dict[str, float]) -> None:
        """Record the loss terms of the step that ended at ``iteration``."""
        if not self.first:
            self.first = values
        self.last = values
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(
                {k.removesuffix("_loss"): f"{v:.3f}" for k, v in values.items()}, refresh=False
            )
        if self.write and (iteration % self.every == 0 or iteration == 1):
            timing = {
                "elapsed_s": round(time.perf_counter() - self.t0, 4),
                "data_wait_s": round(self.data_wait, 4),
            }
            self._line({"iteration": iteration, "lr": lr, **values, **timing})

    def metrics(self, iteration: int, metrics: dict[str, float]) -> None:
        self._line({"iteration": iteration, **metrics})

    def _line(self, row: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


# --------------------------------------------------------------------------- checkpointing


def write_checkpoint(
    run: RunContext,
    model: Cerberus,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    cfg: Config,
    meta: dict,
) -> None:
    """On rank 0: ``last.pt`` (:func:`~cerberus.training.checkpoints.training_checkpoint`),
    written atomically."""
    if run.is_main:
        state = training_checkpoint(model, optimizer, iteration, cfg, meta)
        save_checkpoint(state, run.checkpoint_path)


# --------------------------------------------------------------------------- the loop


def train_iteration(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    iteration: int,
    cfg: Config,
    run: RunContext,
) -> tuple[float, dict[str, float]]:
    """One step (method §4): the scheduled lr, forward and losses (bf16 autocast with
    ``train.amp`` on CUDA), a check that every term is finite, backward, Adam.
    Returns ``(lr, {term: value})``."""
    o = cfg.optim
    lr = learning_rate(
        iteration,
        lr=o.lr,
        warmup_start_lr=o.warmup_start_lr,
        warmup_iterations=o.warmup_iterations,
        iterations=o.iterations,
        min_lr=o.min_lr,
    )
    for group in optimizer.param_groups:
        group["lr"] = lr
    device = run.device
    images = batch["image"].to(device, non_blocking=True)
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = batch["label"].to(device)
    sids = batch["sids"].to(device)
    codes = batch["values"].to(device)
    amp = cfg.train.amp and device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
        losses = net(images, labels, sids, codes)
    values = {k: float(v.detach()) for k, v in losses.items()}
    for name, value in values.items():
        if not math.isfinite(value):
            ckpt = run.checkpoint_path
            raise CerberusError(
                f"iteration {iteration}: {name} is {value}; training stopped "
                f"(last checkpoint: {ckpt if ckpt.exists() else 'none'})"
            )
    optimizer.zero_grad(set_to_none=True)
    losses["total_loss"].backward()
    optimizer.step()
    return lr, values


def run_loop(
    net: nn.Module,
    model: Cerberus,
    optimizer: torch.optim.Optimizer,
    loader: torch.utils.data.DataLoader,
    *,
    cfg: Config,
    run: RunContext,
    start: int,
    meta: dict,
    log: TrainingLog,
    on_evaluate: Callable[[Cerberus, int], dict[str, float]] | None,
) -> int:
    """Iterations ``start`` .. ``optim.iterations``: a step, its log line, a checkpoint every
    ``train.checkpoint_every``, an evaluation every ``train.eval_every``. Returns the last."""
    t = cfg.train
    evaluate = on_evaluate is not None and run.is_main and bool(t.eval_every)
    iteration = start
    net.train()
    tick = time.perf_counter()
    for batch in loader:
        log.data_wait += time.perf_counter() - tick
        lr, values = train_iteration(net, optimizer, batch, iteration, cfg, run)
        iteration += 1
        log.losses(iteration, lr, values)
        if t.checkpoint_every and iteration % t.checkpoint_every == 0:
            write_checkpoint(run, model, optimizer, iteration, cfg, meta)
        if evaluate and iteration % t.eval_every == 0:
            model.eval()
            metrics = on_evaluate(model, iteration)
            model.train()
            log.metrics(iteration, metrics)
        tick = time.perf_counter()
    return iteration


def train(
    cfg: Config,
    *,
    resume: bool = True,
    dataset: ReIDDataset | None = None,
    on_evaluate: Callable[[Cerberus, int], dict[str, float]] | None = None,
    on_finish: Callable[[Path], object] | None = None,
) -> TrainResult:
    """Train Cerberus as configured; resume from ``output_dir/last.pt`` when present.

    Set-up, data, model and optimiser, resume, output folder, batches, then the loop, a
    last checkpoint and ``on_finish`` (each step a function above).

    Args:
        cfg: the resolved config.
        resume: continue from ``last.pt`` in the output folder if it exists.
        dataset: an already read dataset (else read from ``cfg.data``).
        on_evaluate: called as ``on_evaluate(model, iteration)`` every ``train.eval_every``
            iterations on rank 0; its metrics are logged (the CLI hands it
            :func:`cerberus.evaluation.evaluate.periodic_evaluation`; the training loop itself knows
            nothing of evaluation).
        on_finish: called on rank 0 as ``on_finish(checkpoint)`` once the last checkpoint is
            written (the CLI hands it
            :func:`cerberus.evaluation.calibration.calibration_after_training`, which stores a
            calibrated threshold in it).
    """
    cfg = with_absolute_data_paths(cfg)  # stored in the checkpoint: usable from any folder
    run = set_up(cfg)
    dataset = training_data(cfg, dataset)
    if run.is_main:
        log_unknown_cells(dataset)
    model, step_module, optimizer = build_training(cfg, dataset, run)
    ckpt_path = run.checkpoint_path
    start = 0
    if resume and ckpt_path.is_file():
        start = resume_from(ckpt_path, cfg, model, optimizer, run)
    prepare_output(cfg, run, start)
    net = wrap_distributed(step_module, cfg, run)
    loader = batch_loader(cfg, dataset, run, start)
    meta = training_meta(dataset, run.threads)
    log = TrainingLog(cfg, run, start)
    if on_evaluate is None and cfg.train.eval_every and run.is_main:
        logger.warning(
            "train.eval_every=%d but no evaluation was handed to train(): none runs "
            "(the CLI passes cerberus.evaluation.evaluate.periodic_evaluation)",
            cfg.train.eval_every,
        )
    log.start_clock()
    try:
        iteration = run_loop(
            net, model, optimizer, loader,
            cfg=cfg, run=run, start=start, meta=meta, log=log, on_evaluate=on_evaluate,
        )  # fmt: skip
    finally:
        log.close()
    if iteration > start or not ckpt_path.exists():
        write_checkpoint(run, model, optimizer, iteration, cfg, meta)
    if on_finish is not None and run.is_main:
        on_finish(ckpt_path)
    if run.distributed:
        dist.barrier()
    return TrainResult(
        checkpoint=ckpt_path,
        iterations=iteration,
        seconds=time.perf_counter() - log.t0,
        last_losses=log.last,
        first_losses=log.first,
        data_wait_seconds=log.data_wait,
    )

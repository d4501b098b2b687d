"""Typed, frozen configuration filled from a YAML file plus ``key=value`` overrides.

One dataclass per area (data, model, loss, optimiser, training, evaluation). Components take
explicit arguments; only the CLI and the engine see a whole :class:`Config`. The defaults are
the paper setting (SPEC sections 2-4); ``configs/*.yaml`` only state what differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from cerberus.errors import CerberusError
from cerberus.files import atomic_write


@dataclass(frozen=True)
class DataConfig:
    """Dataset, input size, sampler and augmentation (SPEC 4)."""

    dataset: str = "market1501"
    root: str = "data/market1501"
    attributes: str | None = None
    height: int = 384
    width: int = 128
    p: int = 16
    k: int = 4
    num_workers: int = 4
    flip: bool = True
    pad: int = 0
    """Pad-and-random-crop pixels (torchreid's habit); 0, the paper (SPEC 4: flip and random
    erasing only), turns it off."""
    random_erasing: float = 0.5
    on_bad_image: str = "stop"
    """``"stop"``: an unreadable image stops the run naming the file; ``"skip"``: images are
    checked first and unreadable ones are left out, with their names in the log."""
    exclude_sids: tuple[str, ...] = ()
    """Training identities having any of these SIDs (``"L:12"``: group L, SID 12) are removed,
    which makes those SIDs unseen in training (the Figure 7(b) experiment)."""


@dataclass(frozen=True)
class ModelConfig:
    """Backbone and heads (SPEC 2)."""

    backbone: str = "resnet50"
    pretrained: bool = True
    backbone_weights: str | None = None
    dim: int = 512
    last_stride: int = 1
    align_sigma: float = 5.0
    use_alignment: bool = True
    attribute_heads: bool = False
    """Add training heads that classify each attribute from its group's representation (a PAR
    reference baseline in the style of FastAttr, not the paper's method; see loss.lambda_attr)."""


@dataclass(frozen=True)
class LossConfig:
    """Loss weights, margins and ablation switches (SPEC 3)."""

    lambda_sem: float = 5.0
    lambda_id: float = 1.0
    lambda_reg: float = 0.001
    margin: str = "adaptive"
    """``"adaptive"`` (SPEC 3) or a fixed number such as ``"0"`` or ``"0.6"`` for the ablation."""
    alpha: float = 0.4
    beta: float = 1.8
    semantic: str = "hinge"
    """Form of L_sem: ``"hinge"`` (the paper, SPEC 3) or ``"softmax"`` (cross-entropy over the
    group's prototypes on scaled cosines, the true SID's margin subtracted; SPEC 8)."""
    semantic_scale: float = 10.0
    """The scale s of the softmax form (unused by the hinge)."""
    lambda_attr: float = 0.0
    """Weight of the attribute heads' mean cross-entropy (needs model.attribute_heads)."""
    use_sem: bool = True
    use_id: bool = True
    use_reg: bool = True


@dataclass(frozen=True)
class OptimConfig:
    """Adam with linear warm-up then cosine annealing, per iteration (SPEC 4)."""

    lr: float = 3.5e-4
    warmup_start_lr: float = 3.5e-6
    warmup_iterations: int = 2000
    iterations: int = 24000
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    """Adam's L2 coefficient (added to the gradient) of the decayed groups, see
    :func:`cerberus.optim.parameter_groups`; conv / linear weights are always decayed."""
    decay_norm_and_bias: bool = True
    """Also decay BatchNorm weights / biases and other biases (torchreid and the bag of tricks
    baseline do; it is what Cerberus did before the groups were explicit)."""
    decay_prototypes: bool = False
    """Also decay the SID prototypes and the L_reg residual vectors v_l. Off: the losses see
    them through cosines and differences, so decay would only shrink them."""


@dataclass(frozen=True)
class TrainConfig:
    """Run control: seed, device, precision, checkpoints, logging."""

    output_dir: str = "runs/market1501"
    seed: int = 0
    # Intra-op CPU threads (0: torch's default). CPU results depend on it (reductions split
    # differently), so a run records the count it used: same seed + same threads, same weights.
    threads: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    checkpoint_every: int = 1000
    eval_every: int = 0
    log_every: int = 20
    progress: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """Feature extraction and evaluation."""

    batch_size: int = 128
    num_workers: int = 4
    flip_test: bool = False
    decision: str = "cosine"
    """How PAR and APS score SIDs: ``"cosine"`` (the paper, SPEC 5: nearest prototype, mean
    cosine) or ``"posterior"`` (SPEC 8: softmax of ``prior_scale`` x cosine plus the log training
    frequency of each SID)."""
    prior_scale: float = 10.0


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for section in out.values():
            for k, v in section.items():
                if isinstance(v, tuple):
                    section[k] = list(v)
        return out

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections or ``section={"key": value}`` updates replaced."""
        updated = {}
        for name, value in sections.items():
            current = getattr(self, name)
            updated[name] = (
                dataclasses.replace(current, **value) if isinstance(value, dict) else value
            )
        return dataclasses.replace(self, **updated)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check and convert one YAML value to the annotated field type."""
    text = str(annotation)
    if value is None:
        if "None" in text:
            return None
        raise CerberusError(f"{where}: must not be empty")
    if text.startswith("tuple"):
        if not isinstance(value, list | tuple):
            raise CerberusError(f"{where}: expected a list, got {value!r}")
        inner = float if "float" in text else str if "str" in text else int
        try:
            return tuple(inner(v) for v in value)  # type: ignore[operator]
        except (TypeError, ValueError):
            raise CerberusError(f"{where}: expected a list of {inner.__name__}") from None
    if "bool" in text:
        if isinstance(value, bool):
            return value
        raise CerberusError(f"{where}: expected true or false, got {value!r}")
    if text.startswith("int") or text == "<class 'int'>":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise CerberusError(f"{where}: expected an integer, got {value!r}")
    if "float" in text:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise CerberusError(f"{where}: expected a number, got {value!r}")
    if "str" in text:
        return str(value)
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise CerberusError(
            f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict[str, dict[str, Any]]:
    """``["optim.lr=1e-3", "model.backbone=resnet18"]`` -> nested dict with YAML-typed values."""
    out: dict[str, dict[str, Any]] = {}
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise CerberusError(f"override {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        section, name = key.split(".", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            raise CerberusError(f"override {item!r}: value is not valid YAML") from None
        out.setdefault(section.strip(), {})[name.strip()] = value
    return out


def config_from_dict(raw: dict[str, Any], where: str = "config") -> Config:
    """A :class:`Config` from a nested dict (checked: unknown sections or keys are errors)."""
    sections = {f.name: f.type for f in fields(Config)}
    hints = get_type_hints(Config)
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise CerberusError(
            f"{where}: unknown section {unknown[0]!r}; valid: {', '.join(sections)}"
        )
    built = {}
    for name in sections:
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise CerberusError(f"{where}: section {name!r} must be a mapping")
        built[name] = _build(hints[name], values, f"{where}: {name}")
    cfg = Config(**built)
    _validate(cfg, where)
    return cfg


def _validate(cfg: Config, where: str) -> None:
    if cfg.loss.margin != "adaptive":
        try:
            float(cfg.loss.margin)
        except ValueError:
            raise CerberusError(
                f"{where}: loss.margin must be 'adaptive' or a number, got {cfg.loss.margin!r}"
            ) from None
    if cfg.eval.decision not in ("cosine", "posterior"):
        raise CerberusError(
            f"{where}: eval.decision must be 'cosine' or 'posterior', got {cfg.eval.decision!r}"
        )
    if not cfg.eval.prior_scale > 0:
        raise CerberusError(f"{where}: eval.prior_scale must be > 0, got {cfg.eval.prior_scale}")
    if cfg.loss.semantic not in ("hinge", "softmax"):
        raise CerberusError(
            f"{where}: loss.semantic must be 'hinge' or 'softmax', got {cfg.loss.semantic!r}"
        )
    if not cfg.loss.semantic_scale > 0:
        raise CerberusError(
            f"{where}: loss.semantic_scale must be positive, got {cfg.loss.semantic_scale}"
        )
    if cfg.data.on_bad_image not in ("stop", "skip"):
        raise CerberusError(
            f"{where}: data.on_bad_image must be 'stop' or 'skip', got {cfg.data.on_bad_image!r}"
        )
    if cfg.optim.warmup_iterations > cfg.optim.iterations:
        raise CerberusError(f"{where}: optim.warmup_iterations exceeds optim.iterations")
    if cfg.train.threads < 0:
        raise CerberusError(f"{where}: train.threads must be >= 0, got {cfg.train.threads}")
    if cfg.loss.lambda_attr < 0:
        raise CerberusError(f"{where}: loss.lambda_attr must be >= 0, got {cfg.loss.lambda_attr}")
    if cfg.loss.lambda_attr > 0 and not cfg.model.attribute_heads:
        raise CerberusError(f"{where}: loss.lambda_attr > 0 needs model.attribute_heads=true")
    if cfg.data.pad < 0:
        raise CerberusError(f"{where}: data.pad must be 0 (off) or positive, got {cfg.data.pad}")
    if cfg.data.height <= 0 or cfg.data.width <= 0:
        raise CerberusError(f"{where}: data.height and data.width must be positive")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (``None``: paper defaults), then apply ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise CerberusError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            at = f" at line {line + 1}" if line is not None else ""
            raise CerberusError(f"{path}: not valid YAML{at}") from None
        if not isinstance(raw, dict):
            raise CerberusError(f"{path}: top level must be a mapping of sections")
    for section, values in parse_overrides(overrides or []).items():
        base = raw.get(section)
        raw[section] = {**(base if isinstance(base, dict) else {}), **values}
    return config_from_dict(raw, where)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (beside every checkpoint), atomically."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write(path, lambda fh: fh.write(text.encode()), "config")

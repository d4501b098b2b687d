"""Typed, frozen configuration filled from a YAML file plus ``key=value`` overrides.

One dataclass per area (data, model, loss, optimiser, training, evaluation). Components take
explicit arguments; only the CLI and the engine see a whole :class:`Config`. The defaults are
the paper setting (method §2-4); ``configs/*.yaml`` only state what differs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml
from pydantic import StrictBool, StrictInt, TypeAdapter, ValidationError

from cerberus.errors import CerberusError
from cerberus.files import atomic_write


@dataclass(frozen=True)
class CameraLookConfig:
    """The camera look of training crops: the steps that make synthetic people look like real
    low-resolution CCTV people, colour names kept (all 0: off). Declared once here; the data
    config takes them as its own keys (``data.noise``, ...) and
    :class:`cerberus.data.transforms.CameraLook` applies them."""

    brightness: float = 0.0
    """Brightness factor drawn in [1 - brightness, 1 + brightness] per training image."""
    contrast: float = 0.0
    """Contrast factor (about the image's mean grey) in [1 - contrast, 1 + contrast]."""
    saturation: float = 0.0
    """Saturation factor (about each pixel's luma) in [1 - saturation, 1 + saturation]."""
    gamma: float = 0.0
    """Gamma g with log g in [-gamma, gamma]."""
    cast: float = 0.0
    """Colour cast: each channel times a factor in [1 - cast, 1 + cast]."""
    low_res: float = 0.0
    """Probability of scaling the image down to a width in ``low_res_width`` and back up."""
    low_res_width: tuple[int, int] = (15, 40)
    blur: float = 0.0
    """Largest sigma (pixels of the stored image) of a Gaussian blur."""
    noise: float = 0.0
    """Largest sd (grey levels of 255) of Gaussian noise."""
    jpeg_quality: int = 0
    """Lowest quality of a JPEG round trip (quality drawn in [jpeg_quality, 95]; 0: none)."""


@dataclass(frozen=True)
class DataConfig(CameraLookConfig):
    """Dataset, input size, sampler and augmentation (method §4.2), and the camera look of
    training crops (the fields of :class:`CameraLookConfig`, not in the method)."""

    dataset: str = "market1501"
    """``market1501`` or ``dukemtmc`` (a benchmark tree), or ``table``: a folder with
    ``images.csv`` and ``attributes.csv`` (:mod:`cerberus.data.table`, docs/data.md)."""
    root: str = "data/market1501"
    attributes: str | None = None
    """The Lin et al. ``.mat`` file of a benchmark (default: the one in ``root``)."""
    schema: str | None = None
    """The attribute schema of a table dataset: a shipped name (``market1501``, ``dukemtmc``,
    ``retail_example``) or the path of a schema ``.yaml`` file; default: ``root/schema.yaml``."""
    height: int = 384
    width: int = 128
    p: int = 16
    k: int = 4
    num_workers: int = 4
    flip: bool = True
    pad: int = 0
    """Pad-and-random-crop pixels (torchreid's habit); 0, the paper (method §4.2: flip and random
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
    """Backbone and heads (method §2)."""

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
    prototype_init: str = "he_normal"
    """Initialiser of the SID prototypes (Table 7): he_normal (method §2.4), he_uniform,
    xavier_normal, xavier_uniform, normal_0.01, normal_0.1, normal_1 or normal_10."""
    par_feature: bool = False
    """The attribute heads read a separate PAR feature (FC+BN on the pooled global map) instead
    of the group representations: the two-head reID / PAR baseline of Fig. 1b."""


@dataclass(frozen=True)
class LossConfig:
    """Loss weights, margins and ablation switches (method §3)."""

    lambda_sem: float = 5.0
    lambda_id: float = 1.0
    lambda_reg: float = 0.001
    margin: str = "adaptive"
    """``"adaptive"`` (method §3) or a fixed number such as ``"0"`` or ``"0.6"`` for the
    ablation."""
    alpha: float = 0.4
    beta: float = 1.8
    semantic: str = "hinge"
    """Form of L_sem: ``"hinge"`` (the paper, method §3.1) or ``"softmax"`` (cross-entropy over the
    group's prototypes on scaled cosines, the true SID's margin subtracted; method §8.1)."""
    semantic_scale: float = 10.0
    """The scale s of the softmax form (unused by the hinge)."""
    lambda_attr: float = 0.0
    """Weight of the attribute heads' loss (needs model.attribute_heads)."""
    attr_form: str = "ce"
    """The attribute heads' loss: ``"ce"`` (cross-entropy over each attribute's values) or
    ``"bce"`` (binary cross-entropy on each value's one-hot label, as PAR models train)."""
    use_sem: bool = True
    use_id: bool = True
    use_reg: bool = True


@dataclass(frozen=True)
class OptimConfig:
    """Adam with linear warm-up then cosine annealing, per iteration (method §4.1)."""

    lr: float = 3.5e-4
    warmup_start_lr: float = 3.5e-6
    warmup_iterations: int = 2000
    iterations: int = 24000
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    """Adam's L2 coefficient (added to the gradient) of the decayed groups, see
    :func:`cerberus.modeling.optim.parameter_groups`; conv / linear weights are always decayed."""
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
    # At the end of `cerberus train`: calibrate "same person" on the test split (query +
    # gallery, identities not trained on) and store the threshold in last.pt (docs/calibration.md).
    calibrate: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """Feature extraction and evaluation."""

    batch_size: int = 128
    num_workers: int = 4
    flip_test: bool = False
    decision: str = "cosine"
    """How PAR and APS score SIDs: ``"cosine"`` (the paper, method §5: nearest prototype, mean
    cosine) or ``"posterior"`` (method §8.2: softmax of ``prior_scale`` x cosine plus the log
    training
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


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {
    int: TypeAdapter(StrictInt),
    bool: TypeAdapter(StrictBool),
}
"""Integers and booleans strict (``3`` is no ``true``, ``1.5`` no integer); the other fields
lax: a float from a YAML 1.1 string such as ``1e-3``, a string from a number (``margin: 0.6``),
a tuple from a list."""


def _type_name(annotation: Any) -> str:
    """How an error names the expected type (as before pydantic: "a number", "an integer")."""
    names = {float: "a number", int: "an integer", str: "a string"}
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    return names.get(args[0]) or getattr(args[0], "__name__", None) or str(annotation)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check and convert one YAML value to the annotated field type (pydantic); ``true`` /
    ``false`` only where the field is a bool (pydantic would take ``true`` as 1.0)."""
    if isinstance(value, bool) and annotation is not bool and bool not in get_args(annotation):
        raise CerberusError(f"{where}: expected {_type_name(annotation)}, got {value!r}")
    if annotation not in _ADAPTERS:
        _ADAPTERS[annotation] = TypeAdapter(annotation, config={"coerce_numbers_to_str": True})
    try:
        return _ADAPTERS[annotation].validate_python(value)
    except ValidationError as e:
        error = e.errors()[0]
        at = "".join(f"[{i}]" for i in error["loc"])
        raise CerberusError(f"{where}{at}: {error['msg']}, got {value!r}") from None


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


def config_from_dict(
    raw: dict[str, Any], where: str = "config", origins: dict[str, str] | None = None
) -> Config:
    """A :class:`Config` from a nested dict (checked: unknown sections or keys are errors).

    ``origins`` maps ``section.key`` to where its value came from (a file, the command line);
    a key it does not name took its value from ``where`` when ``origins`` is None, else the
    default. Errors about two values name each one's origin."""
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
    _validate(cfg, where, origins)
    return cfg


_POSITIVE = (
    "data.height", "data.width", "data.p", "data.k", "model.dim", "model.align_sigma",
    "optim.lr", "optim.iterations", "train.log_every", "eval.batch_size", "eval.prior_scale",
    "loss.semantic_scale",
)  # fmt: skip
_NON_NEGATIVE = (
    "data.num_workers", "data.pad", "data.gamma", "data.low_res", "data.blur", "data.noise",
    "data.jpeg_quality", "optim.warmup_start_lr", "optim.warmup_iterations",
    "optim.min_lr", "optim.weight_decay", "loss.lambda_sem", "loss.lambda_id", "loss.lambda_reg",
    "loss.lambda_attr", "loss.alpha", "loss.beta", "train.threads", "train.checkpoint_every",
    "train.eval_every", "eval.num_workers",
)  # fmt: skip
_CHOICES = {
    "data.on_bad_image": ("stop", "skip"),
    "data.dataset": ("market1501", "dukemtmc", "table"),
    "loss.semantic": ("hinge", "softmax"),
    "loss.attr_form": ("ce", "bce"),
    "model.prototype_init": (
        "he_normal",
        "he_uniform",
        "xavier_normal",
        "xavier_uniform",
        "normal_0.01",
        "normal_0.1",
        "normal_1",
        "normal_10",
    ),
    "eval.decision": ("cosine", "posterior"),
    "model.last_stride": (1, 2),
}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(device: str, where: str) -> str:
    """``device`` if it names a device torch knows (auto, cpu, cuda, cuda:N, mps), else raise."""
    if not _DEVICE.fullmatch(device):
        raise CerberusError(f"{where} must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    return device


def _value(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _validate(cfg: Config, where: str, origins: dict[str, str] | None = None) -> None:
    """Range and choice checks of every field, so bad values stop here, not mid-run."""

    def origin(key: str) -> str:
        return where if origins is None else origins.get(key, "default")

    for key in _POSITIVE:
        if not _value(cfg, key) > 0:  # also catches NaN
            raise CerberusError(f"{where}: {key} must be positive, got {_value(cfg, key)}")
    for key in _NON_NEGATIVE:
        if not _value(cfg, key) >= 0:
            raise CerberusError(f"{where}: {key} must be >= 0, got {_value(cfg, key)}")
    for key, choices in _CHOICES.items():
        if _value(cfg, key) not in choices:
            options = " or ".join(repr(c) for c in choices)
            raise CerberusError(f"{where}: {key} must be {options}, got {_value(cfg, key)!r}")
    if cfg.loss.margin != "adaptive":
        try:
            float(cfg.loss.margin)
        except ValueError:
            raise CerberusError(
                f"{where}: loss.margin must be 'adaptive' or a number, got {cfg.loss.margin!r}"
            ) from None
    betas = cfg.optim.betas
    if not all(0 <= b < 1 for b in betas):  # two of them: the type says so
        raise CerberusError(
            f"{where}: optim.betas must be two numbers in [0, 1), got {list(betas)}"
        )
    if not 0 <= cfg.data.random_erasing <= 1:
        raise CerberusError(
            f"{where}: data.random_erasing must be a probability in [0, 1], "
            f"got {cfg.data.random_erasing}"
        )
    for key in ("data.brightness", "data.contrast", "data.saturation", "data.cast"):
        if not 0 <= _value(cfg, key) < 1:  # a factor in [1 - v, 1 + v] must stay positive
            raise CerberusError(f"{where}: {key} must be in [0, 1), got {_value(cfg, key)}")
    if not cfg.data.low_res <= 1:
        raise CerberusError(
            f"{where}: data.low_res must be a probability in [0, 1], got {cfg.data.low_res}"
        )
    low, high = cfg.data.low_res_width
    if not 1 <= low <= high:
        raise CerberusError(
            f"{where}: data.low_res_width must be two widths 1 <= low <= high, "
            f"got {list(cfg.data.low_res_width)}"
        )
    if cfg.data.jpeg_quality > 95:
        raise CerberusError(
            f"{where}: data.jpeg_quality must be 0 (off) to 95, got {cfg.data.jpeg_quality}"
        )
    check_device(cfg.train.device, f"{where}: train.device")
    if cfg.optim.warmup_iterations > cfg.optim.iterations:
        w, n = "optim.warmup_iterations", "optim.iterations"
        raise CerberusError(
            f"{w}={cfg.optim.warmup_iterations} ({origin(w)}) exceeds "
            f"{n}={cfg.optim.iterations} ({origin(n)}): lower {w} or raise {n}"
        )
    if cfg.loss.lambda_attr > 0 and not cfg.model.attribute_heads:
        raise CerberusError(f"{where}: loss.lambda_attr > 0 needs model.attribute_heads=true")
    if cfg.model.par_feature and not cfg.model.attribute_heads:
        raise CerberusError(f"{where}: model.par_feature needs model.attribute_heads=true")


def packaged_configs() -> dict[str, Path]:
    """The configs shipped in the package (``cerberus/configs/*.yaml``), by bare name."""
    folder = Path(str(resources.files("cerberus") / "configs"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def resolve_config(path: str | Path) -> Path:
    """``path`` itself, unless it is a bare name (no ``/`` or ``\\``, no ``.yaml`` / ``.yml``)
    of a packaged config: then that file, so ``-c synthetic`` works from any folder."""
    text = str(path)
    bare = not any(c in text for c in "/\\") and not text.endswith((".yaml", ".yml"))
    if bare and text in packaged_configs():
        return packaged_configs()[text]
    return Path(path)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (``None``: paper defaults; a bare name such as ``synthetic``: the
    packaged config of that name), then apply ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        given = str(path)
        path = resolve_config(path)
        where = str(path) if str(path) == given else f"{given} ({path})"
        if not path.is_file():
            names = ", ".join(packaged_configs())
            raise CerberusError(
                f"{path}: config file not found (give a YAML file, or a packaged config: {names})"
            )
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise CerberusError(
                f"{path}: not UTF-8 text (byte {exc.start}); is it a YAML config?"
            ) from None
        except OSError as exc:
            raise CerberusError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            at = f" at line {line + 1}" if line is not None else ""
            raise CerberusError(f"{path}: not valid YAML{at}") from None
        if not isinstance(raw, dict):
            raise CerberusError(f"{path}: top level must be a mapping of sections")
    origins = {
        f"{section}.{key}": where
        for section, values in raw.items()
        if isinstance(values, dict)
        for key in values
    }
    for section, values in parse_overrides(overrides or []).items():
        base = raw.get(section)
        raw[section] = {**(base if isinstance(base, dict) else {}), **values}
        origins.update({f"{section}.{key}": "command line" for key in values})
    return config_from_dict(raw, where, origins)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (beside every checkpoint), atomically."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write(path, lambda fh: fh.write(text.encode()), "config")


def with_absolute_data_paths(cfg: Config) -> Config:
    """``cfg`` with ``data.root`` and ``data.attributes`` made absolute (resolved against the
    current working directory): what a run stores in its checkpoint and ``config.yaml``, so that
    ``eval`` and friends find the data from any other folder."""
    d = cfg.data
    attributes = str(Path(d.attributes).resolve()) if d.attributes else d.attributes
    schema = d.schema
    if schema and (schema.endswith((".yaml", ".yml")) or "/" in schema):
        schema = str(Path(schema).resolve())
    data = dataclasses.replace(
        d, root=str(Path(d.root).resolve()), attributes=attributes, schema=schema
    )
    return dataclasses.replace(cfg, data=data)

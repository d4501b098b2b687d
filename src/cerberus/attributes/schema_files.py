"""Schema files: reading and checking schema YAML, the shipped schemas (method §1, §6).

A schema file holds ``name``, an optional ``mat_key`` and a list of attributes; every error
names the file, the attribute's position and name. Checkpoints, feature files and indexes
carry the same data (:func:`schema_from_meta`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cerberus.attributes.schema import ATTRIBUTE_KINDS, GROUPS, Attribute, Schema
from cerberus.errors import CerberusError

SCHEMA_FILES = Path(__file__).parent / "schemas"
"""The schema files shipped with the package: ``<name>.yaml``."""

_ATTRIBUTE_KEYS = ("name", "group", "kind", "values", "phrases", "fields", "none")
_RESERVED = ("=", ",", ";", "|")
"""Characters of attribute queries (``name=value, ...``) and table cells (``red|white``)."""


def _names(raw: Any, where: str, what: str) -> tuple[str, ...]:
    """A list of non-empty strings (numbers are taken as text); YAML booleans are an error."""
    if not isinstance(raw, list):
        raise CerberusError(f"{where}: {what} must be a list, got {raw!r}")
    out = []
    for item in raw:
        if isinstance(item, bool):
            raise CerberusError(
                f"{where}: {what} holds the boolean {item!r}: YAML reads unquoted yes / no / "
                'true / false / on / off as booleans; quote the value ("yes")'
            )
        if not isinstance(item, str | int | float) or not str(item).strip():
            raise CerberusError(f"{where}: {what} holds {item!r}, not a name")
        out.append(str(item).strip())
    return tuple(out)


def _attribute_from_dict(raw: Any, where: str, *, none_first: bool = False) -> Attribute:
    """One attribute entry; ``none_first``: a colour without ``none`` takes its first value."""
    if not isinstance(raw, dict):
        raise CerberusError(f"{where}: an attribute must be a mapping with name, group, values")
    unknown = sorted(set(raw) - set(_ATTRIBUTE_KEYS))
    if unknown:
        raise CerberusError(
            f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(_ATTRIBUTE_KEYS)}"
        )
    for key in ("name", "group", "values"):
        if key not in raw:
            raise CerberusError(f"{where}: missing key {key!r}")
    name = str(raw["name"]).strip()
    if not name or any(c in name for c in _RESERVED) or name.lower() == "person_id":
        raise CerberusError(
            f"{where}: attribute name {raw['name']!r} is not allowed (no {' '.join(_RESERVED)}; "
            "not person_id)"
        )
    where = f"{where} ({name})"
    group = str(raw["group"]).strip().upper()
    if group not in GROUPS:
        raise CerberusError(
            f"{where}: group {raw['group']!r} is not one of {', '.join(GROUPS)} "
            "(head, upper body, lower body, identity, carrying)"
        )
    kind = str(raw.get("kind", "")).strip().lower().replace("colour", "color")
    if kind not in ATTRIBUTE_KINDS:
        raise CerberusError(
            f"{where}: kind {raw.get('kind')!r} is not one of {', '.join(ATTRIBUTE_KINDS)}"
        )
    values = _names(raw["values"], where, "values")
    for v in values:
        if any(c in v for c in _RESERVED):
            raise CerberusError(f"{where}: value {v!r} holds one of {' '.join(_RESERVED)}")
    phrases = _names(raw["phrases"], where, "phrases") if "phrases" in raw else ()
    fields = _names(raw["fields"], where, "fields") if "fields" in raw else ()
    if kind != "color" and len(fields) > 1:
        raise CerberusError(f"{where}: only a color attribute reads several .mat fields")
    none = ""
    if "none" in raw:
        none = _names([raw["none"]], where, "none")[0]
    elif kind == "color" and none_first:
        none = values[0]
    try:
        return Attribute(name, group, values, fields, phrases, kind, none)
    except CerberusError as exc:
        raise CerberusError(f"{where}: {exc}") from None


def schema_from_dict(raw: Any, where: str = "schema", *, none_first: bool = False) -> Schema:
    """A :class:`Schema` from schema-file data, checked; errors name ``where`` and the entry.

    The data: ``name``, optional ``mat_key`` (top-level key of a Lin ``.mat`` file) and
    ``attributes``, a list of ``{name, group, kind, values, phrases?, fields?, none?}``
    (``none``: required for a colour attribute; with ``none_first``, a colour without it takes
    its first value, the rule of files written before ``none`` was declared).
    """
    if not isinstance(raw, dict):
        raise CerberusError(f"{where}: a schema must be a mapping with name and attributes")
    unknown = sorted(set(raw) - {"name", "mat_key", "attributes"})
    if unknown:
        raise CerberusError(
            f"{where}: unknown key {unknown[0]!r}; valid: name, mat_key, attributes"
        )
    name = str(raw.get("name") or "").strip()
    if not name:
        raise CerberusError(f"{where}: missing key 'name'")
    attributes = raw.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        raise CerberusError(f"{where}: 'attributes' must be a non-empty list")
    attrs = tuple(
        _attribute_from_dict(a, f"{where}: attributes[{i + 1}]", none_first=none_first)
        for i, a in enumerate(attributes)
    )
    try:
        return Schema(name, str(raw.get("mat_key") or ""), attrs)
    except CerberusError as exc:
        raise CerberusError(f"{where}: {exc}") from None


def load_schema_file(path: str | Path) -> Schema:
    """Read and check a schema YAML file."""
    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: schema file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CerberusError(f"{path}: not UTF-8 text; is it a schema YAML file?") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise CerberusError(f"{path}: not valid YAML{at}") from None
    return schema_from_dict(raw, str(path))


def shipped_schemas() -> tuple[str, ...]:
    """Names of the schema files shipped with the package."""
    return tuple(sorted(p.stem for p in SCHEMA_FILES.glob("*.yaml")))


_SHIPPED: dict[str, Schema] = {}


def get_schema(name: str | Path) -> Schema:
    """A shipped schema by name (``"market1501"``), or a schema YAML file by path."""
    text = str(name)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return load_schema_file(text)
    if text not in _SHIPPED:
        path = SCHEMA_FILES / f"{text}.yaml"
        if not text or not path.is_file():
            raise CerberusError(
                f"unknown attribute schema {text!r}; valid: {', '.join(shipped_schemas())} "
                "or the path of a schema .yaml file"
            )
        _SHIPPED[text] = load_schema_file(path)
    return _SHIPPED[text]


def schema_from_meta(value: Any, where: str) -> Schema:
    """The schema a checkpoint, features or index file carries: its full content (a dict), or,
    in files written before schemas were data, the name of a shipped schema. A colour attribute
    without ``none`` (files written before it was declared) has its first value as none."""
    if isinstance(value, dict):
        return schema_from_dict(value, f"{where} [schema]", none_first=True)
    if isinstance(value, str) and value and "/" not in value and not value.endswith(".yaml"):
        return get_schema(value)
    raise CerberusError(f"{where}: no attribute schema in its metadata ({value!r})")


MARKET1501 = get_schema("market1501")
"""Market-1501 (Lin et al.): 27 binary-coded fields -> 12 attributes (method §6)."""

DUKEMTMC = get_schema("dukemtmc")
"""DukeMTMC-reID (Lin et al.): 23 binary-coded fields -> 10 attributes (method §6)."""

SCHEMAS: dict[str, Schema] = {s.name: s for s in (MARKET1501, DUKEMTMC)}
"""The schemas of the Lin et al. ``.mat`` files (found by their top-level key)."""

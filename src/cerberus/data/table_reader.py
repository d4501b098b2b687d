"""Reading the files of a table dataset: CSV / Parquet rows with their line numbers, headers,
integer cells, and problems named by file and line (used by :mod:`cerberus.data.table`); and
writing its attribute table (:func:`write_attribute_table`, also used by the synthetic footage).

The CSV rules, as spreadsheets write them:

- the separator is detected from the header line: ``,``, ``;`` or a tab, whichever it holds
  most (``,`` when none; a header that is then one column is one problem naming the separator);
  fields may be quoted with ``"``; a UTF-8 byte-order mark is skipped;
- a quoted field that runs over a line end (a stray ``"``) is a problem named at the line where
  the field opens, not where the file ends;
- column names are matched case-insensitively (``Path`` is ``path``); extra columns are ignored
  with one warning, unless a required column is missing (then they are named as likely
  misspellings);
- integers may be written as integral floats (``2.0``, as spreadsheets export them).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cerberus.attributes.schema import Schema
from cerberus.attributes.table import AttributeTable
from cerberus.errors import CerberusError
from cerberus.files import atomic_write

ATTRIBUTES = "attributes"
SCHEMA_FILE = "schema.yaml"
ALTERNATIVE_SEPARATOR = "|"
MAX_PROBLEMS = 50
"""Problems collected per file before the check gives up on it."""
SEPARATORS = (",", ";", "\t")
"""The CSV separators detected from the header line (in order of preference on a tie)."""
_UNREADABLE = "\0"
_INTEGRAL = re.compile(r"^[+-]?\d+(?:\.0*)?$")


@dataclass(frozen=True)
class Problem:
    """One problem of a table dataset: the file, the 1-based line (0: the file) and what."""

    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.message}"


class Collector:
    """Problems of one file, capped at :data:`MAX_PROBLEMS`."""

    def __init__(self, path: Path, out: list[Problem]):
        self.path, self.out, self.count = path, out, 0

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if self.count <= MAX_PROBLEMS:
            self.out.append(Problem(self.path, line, message))
        elif self.count == MAX_PROBLEMS + 1:
            self.out.append(Problem(self.path, 0, f"more than {MAX_PROBLEMS} problems; stopped"))

    @property
    def full(self) -> bool:
        return self.count > MAX_PROBLEMS


def table_file(root: Path, stem: str) -> Path:
    """``root/<stem>.csv``, else ``root/<stem>.parquet``; the CSV path when neither exists."""
    csv_path, parquet = root / f"{stem}.csv", root / f"{stem}.parquet"
    if not csv_path.is_file() and parquet.is_file():
        return parquet
    return csv_path


def cell_text(value: Any) -> str:
    """A table cell as text: ``None`` / NaN are empty, integral floats lose their ``.0``."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def integer(text: str) -> int | None:
    """``text`` as an integer (``"2"``, ``"2.0"``, ``"-1"``), ``None`` when it is not one."""
    return int(text.split(".", 1)[0]) if _INTEGRAL.match(text) else None


def integral_label(text: str) -> str:
    """A label with a spreadsheet's ``.0`` removed (``"40.0"`` -> ``"40"``); others as given."""
    return str(integer(text)) if "." in text and integer(text) is not None else text


def separator(first_line: str) -> str:
    """The CSV separator of a file whose header line is ``first_line`` (see module doc)."""
    counts = {s: first_line.count(s) for s in SEPARATORS}
    best = max(SEPARATORS, key=lambda s: (counts[s], -SEPARATORS.index(s)))
    return best if counts[best] else ","


def _parquet_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CerberusError(
            f"{path}: reading Parquet needs pyarrow (pip install 'cerberus-reid[parquet]'), "
            "or give the table as CSV"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for bad files
        raise CerberusError(f"{path}: not a readable Parquet file ({exc})") from None
    header = [str(c) for c in table.column_names]
    columns = [table.column(c).to_pylist() for c in header]
    rows = ([cell_text(col[i]) for col in columns] for i in range(table.num_rows))
    return header, ((i + 2, r) for i, r in enumerate(rows))


def read_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and ``(line, cells)`` of a CSV or Parquet table (Parquet: line = row + 1).

    An unreadable row ends the rows with ``(line, [message])``, the message marked by a leading
    ``"\\0"`` (see :func:`well_formed`).
    """
    if not path.is_file():
        raise CerberusError(f"{path}: table not found")
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CerberusError(f"{path}: not UTF-8 text; is it a CSV file?") from None
    reader = csv.reader(io.StringIO(text), delimiter=separator(text.split("\n", 1)[0]))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CerberusError(f"{path}: empty file (the first line is the header)") from None
    except csv.Error as exc:
        raise CerberusError(f"{path}:1: not a readable CSV header ({exc})") from None

    def body() -> Iterator[tuple[int, list[str]]]:
        last = reader.line_num
        try:
            for row in reader:
                start, last = last + 1, reader.line_num
                if last > start and any("\n" in c or "\r" in c for c in row):
                    before = next(i for i, c in enumerate(row) if "\n" in c or "\r" in c)
                    opens = start + sum(c.count("\n") for c in row[:before])
                    yield (
                        opens,
                        [
                            f'{_UNREADABLE}a quoted field opens on this line (a stray ")? and runs '
                            f"to line {last}: lines {opens}-{last} would be read as one value"
                        ],
                    )
                    return
                if any(c.strip() for c in row):
                    yield last, [c.strip() for c in row]
        except csv.Error as exc:
            yield reader.line_num, [f"{_UNREADABLE}not readable as CSV ({exc})"]

    return header, body()


def well_formed(
    header: list[str], body: Iterator[tuple[int, list[str]]], bad: Collector
) -> Iterator[tuple[int, list[str]]]:
    """The rows with as many cells as the header; the others are recorded in ``bad``. Stops at an
    unreadable row or when ``bad`` is full."""
    for line, cells in body:
        if bad.full:
            return
        if cells and cells[0].startswith(_UNREADABLE):
            bad.add(line, cells[0][1:])
            return
        if len(cells) != len(header):
            bad.add(line, f"{len(cells)} fields, the header has {len(header)}")
            continue
        yield line, cells


def match_header(
    header: list[str],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    bad: Collector,
    warnings: list[Problem],
) -> dict[str, int] | None:
    """``{column name as given in required / optional: index}`` of a header whose names are
    matched case-insensitively; ``None`` (problems recorded in ``bad``) when it is not usable.
    Columns that are neither are ignored with one warning, or named as problems when a required
    column is missing (likely misspellings)."""
    names = [h.strip().lower() for h in header]
    if len(header) == 1 and len(required) > 1:
        bad.add(
            1,
            f"the header is one column ({header[0][:60]!r}): separate the columns with a comma, "
            "a semicolon or a tab",
        )
        return None
    ok = True
    for name, n in Counter(names).items():
        if n > 1:
            bad.add(1, f"column {name!r} appears {n} times (names are case-insensitive)")
            ok = False
    valid = (*required, *optional)
    missing = [r for r in required if r.lower() not in names]
    for name in missing:
        bad.add(1, f"missing column {name!r} (columns: {', '.join(header)})")
        ok = False
    known = {v.lower() for v in valid}
    extra = [h for h, n in zip(header, names) if n not in known]
    if missing:
        for name in extra:
            bad.add(1, f"unknown column {name!r}; valid: {', '.join(valid)}")
    elif extra:
        shown = ", ".join(repr(h) for h in extra)
        warnings.append(Problem(bad.path, 1, f"columns not used (ignored): {shown}"))
    if not ok:
        return None
    return {v: names.index(v.lower()) for v in valid if v.lower() in names}


# ----------------------------------------------------------------------------- writing


def value_text(attr, value: int, alternatives: np.ndarray) -> str:
    """A cell of the attribute table: the value's name, alternatives after ``|``, empty when
    unknown."""
    if value < 0:
        return ""
    names = [attr.values[value]] + [attr.values[int(a)] for a in alternatives if a >= 0]
    return ALTERNATIVE_SEPARATOR.join(names)


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    """A CSV file's bytes: the header, then the rows (``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def write_attribute_table(
    out: str | Path, schema: Schema, tables: Sequence[AttributeTable]
) -> dict[str, Path]:
    """Write ``attributes.csv`` (person_id, then one column per attribute of ``schema``: values
    by name, empty when unknown, alternatives after ``|``; rows by person_id) and
    ``schema.yaml`` into ``out``, atomically each, as a table dataset has them."""
    out = Path(out)
    attr_rows = []
    for table in tables:
        for r, pid in enumerate(table.ids):
            cells = [
                value_text(a, int(table.values[r, j]), table.alt_values[r, :, j])
                for j, a in enumerate(schema.attributes)
            ]
            attr_rows.append([int(pid), *cells])
    attr_rows.sort(key=lambda r: r[0])
    attr_header = ["person_id"] + [a.name for a in schema.attributes]
    written = {ATTRIBUTES: out / f"{ATTRIBUTES}.csv"}
    atomic_write(
        written[ATTRIBUTES], lambda fh: fh.write(csv_bytes(attr_header, attr_rows)), "attributes"
    )
    text = yaml.safe_dump(schema.to_dict(), sort_keys=False, allow_unicode=True)
    written["schema"] = out / SCHEMA_FILE
    atomic_write(written["schema"], lambda fh: fh.write(text.encode()), "schema")
    return written

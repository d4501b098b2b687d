"""The code cites the method by sections of docs/method.md, never a file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
METHOD = ROOT / "docs" / "method.md"

CITATION = re.compile(r"§\s*(\d+(?:\.\d+)?)(?:\s*-\s*(\d+(?:\.\d+)?))?")
"""A citation of method §n or §n.m, or a range §n-m; every section number in it is checked."""

SPEC_REFERENCE = re.compile(r"SPEC\.md|\bSPEC\b(?:\s+sections?)?\s*\d|\bSPEC\b")
"""A reference to the external spec: "SPEC.md", "SPEC 3", "SPEC section 3", a bare "SPEC"."""


TEXT_SUFFIXES = {".py", ".yaml", ".md", ".txt", ".html", ".js", ".css"}


def _source_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)


def _headings(text: str) -> set[str]:
    """Section numbers of the ``## n. Title`` and ``### n.m Title`` headings of a page."""
    found = set()
    for line in text.splitlines():
        m = re.match(r"#{2,4}\s+(\d+(?:\.\d+)*)\.?\s+\S", line)
        if m:
            found.add(m.group(1))
    return found


def _citations(text: str) -> list[str]:
    out = []
    for m in CITATION.finditer(text):
        out += [g for g in m.groups() if g]
    return out


def test_method_page_has_sections_1_to_8():
    sections = _headings(METHOD.read_text(encoding="utf-8"))
    assert {str(n) for n in range(1, 9)} <= sections


def test_no_reference_to_the_external_spec_in_src():
    hits = []
    for path in _source_files():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SPEC_REFERENCE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not hits, "cite docs/method.md (method §n) instead:\n" + "\n".join(hits)


def test_every_method_citation_in_src_names_an_existing_section():
    sections = _headings(METHOD.read_text(encoding="utf-8"))
    cited, missing = 0, []
    for path in _source_files():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for number in _citations(line):
                cited += 1
                if number not in sections:
                    missing.append(f"{path.relative_to(ROOT)}:{no}: §{number}")
    assert cited > 50  # the code does cite the method page
    assert not missing, "no such heading in docs/method.md:\n" + "\n".join(missing)


def test_the_checks_catch_what_they_look_for():
    assert SPEC_REFERENCE.search("See SPEC.md for the method.")
    assert SPEC_REFERENCE.search("Alignment module, SPEC 2 (no parameters).")
    assert SPEC_REFERENCE.search("(SPEC section 6)")
    assert not SPEC_REFERENCE.search("method §6.1, spectral")
    assert _citations("method §2-4 and §1, §3.3") == ["2", "4", "1", "3.3"]
    assert _headings("## 3. Losses\n### 3.1 Semantic guidance\n#### x\n") == {"3", "3.1"}

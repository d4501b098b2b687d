"""The code cites the method by sections of docs/method.md, never a file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


# --- the README is a front door, the docs a site --------------------------------------

README = ROOT / "README.md"
README_MAX_LINES = 250
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
TEST_COUNT = re.compile(r"\b\d[\d,]*\s+(?:tests|passed|failed)\b", re.I)
CI_TIME = re.compile(
    r"(?:\.ci/run|\bCI\b|make test).{0,80}?\b\d+(?:\.\d+)?\s*(?:min|s\b|seconds)", re.I | re.S
)
"""A duration near the name of the CI or the test command (CI times and test counts go stale)."""


def _relative_links(text: str) -> list[str]:
    """The link targets of a Markdown text that are paths in the repository (no URL, no anchor)."""
    out = []
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def _load_gen_cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    assert not TEST_COUNT.search(text), TEST_COUNT.search(text).group(0)
    assert not CI_TIME.search(text), CI_TIME.search(text).group(0)


def test_every_relative_link_of_the_readme_is_a_file():
    links = _relative_links(README.read_text(encoding="utf-8"))
    assert len(links) > 10  # the README does link the docs pages
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_the_readme_links_every_docs_page():
    linked = {Path(link).name for link in _relative_links(README.read_text(encoding="utf-8"))}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def test_the_link_and_number_checks_catch_what_they_look_for():
    text = "[a](docs/a.md#x) ![p](docs/images/p.png) [u](https://x.org) [h](#y)"
    assert _relative_links(text) == ["docs/a.md", "docs/images/p.png"]
    assert TEST_COUNT.search("the suite itself, 980 tests, runs in")
    assert TEST_COUNT.search("1,024 passed in 6:25")
    assert CI_TIME.search("`.ci/run` runs both:\n8 min 24 s")
    assert CI_TIME.search("make test about 7.5 min")
    assert not TEST_COUNT.search("cerberus search --gallery G -k 10 --per-track")


def test_cli_reference_is_current():
    generated = _load_gen_cli().generate()
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == generated, "docs/cli.md is stale: PYTHONPATH=src python docs/gen_cli.py"


def test_cli_reference_names_every_command():
    import typer

    from cerberus.cli import app

    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert f"## `cerberus {name}`" in page
        for sub in getattr(command, "commands", {}):
            assert f"## `cerberus {name} {sub}`" in page


def test_mkdocs_build_strict(tmp_path):
    """The site builds with no warning: every nav page exists, every link and anchor resolves,
    every ``:::`` reference imports."""
    import os
    import subprocess
    import sys

    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    env = {**os.environ, "PYTHONPATH": str(SRC), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "cli" / "index.html").is_file()


def test_method_page_points_to_calibration_and_states_the_duke_test_sid_count():
    """§9.2's calibrated verdict lives in docs/calibration.md (§8 holds none); the DukeMTMC test
    split has 51 occurring SIDs where the paper says 33, said beside the Market check."""
    text = METHOD.read_text(encoding="utf-8")
    assert "calibrated verdict of §8" not in text
    assert "(calibration.md)" in text.split("### 9.2", 1)[1].split("### 9.3", 1)[0]
    section = text.split("### 1.3", 1)[1].split("### 1.4", 1)[0]
    assert "Market-1501 has 66" in section
    assert "51 in the test split" in section and "paper says 33" in section

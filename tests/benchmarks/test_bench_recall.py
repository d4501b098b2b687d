"""benchmarks/bench_recall.py and profile_build.py on small galleries: each kind's rows (photo
queries, and description queries for vectors with prototypes, answered from the SID columns at
recall 1), the build's figures, and the profile of a build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cerberus

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(cerberus.__file__).resolve().parents[1]  # the cerberus these tests run against


def run(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_recall_benchmark_reports_each_kind_of_query_and_the_build(tmp_path):
    out = tmp_path / "rows.json"
    got = run(
        "benchmarks/bench_recall.py", "--kind", "generator,lowrank", "--sizes", "5000",
        "--dim", "80", "--queries", "30", "--workdir", str(tmp_path / "w"), "--keep",
        "--out", str(out),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    rows = {r["kind"]: r for r in json.loads(out.read_text())}
    generator, lowrank = rows["generator"], rows["lowrank"]
    kinds = {(x["queries"], x["filter"]) for x in generator["rows"]}
    assert kinds == {(q, f) for q in ("photo", "description")
                     for f in ("all", "~90%", "~50%", "~10%", "narrow")}  # fmt: skip
    assert {x["queries"] for x in lowrank["rows"]} == {"photo"}  # no prototypes: no descriptions
    for x in generator["rows"]:
        assert x["recall10"] >= 0.95
        if x["queries"] == "description" and x["candidates"] > 2000:
            assert x["path"] == "sid 30" and x["recall10"] == 1.0
    assert generator["description_path"] == "sid columns"
    assert generator["description_recall10"] == 1.0
    assert generator["build_over_faiss"] > 0 and generator["nprobe"] >= 1
    assert "| generator | 5,000 x 80" in got.stdout
    prof = run("benchmarks/profile_build.py", str(tmp_path / "w" / "generator-5000-80"))
    assert prof.returncode == 0, prof.stderr
    assert "build_index" in prof.stdout and "faiss train + add" in prof.stdout

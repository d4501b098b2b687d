"""``cerberus demo``: the whole tool on the built-in synthetic benchmark, on CPU, in minutes.

Generates the benchmark (unless present), trains the CPU config, evaluates the three tasks,
indexes the gallery, and writes ``report.md`` with the results table and figures: a reID rank
list, a full and a partial attribute search (APS), attribute predictions (PAR) and the alignment
maps. Every step uses the same functions as the individual commands.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cerberus.attributes.schema import GROUP_NAMES
from cerberus.config import Config
from cerberus.data.datasets import ReIDDataset, read_dataset
from cerberus.data.synthetic.benchmark import generate_synthetic, make_contact_sheet
from cerberus.evaluation.calibration import calibration_after_training
from cerberus.evaluation.evaluate import evaluate_features, extract_with_config, format_report
from cerberus.evaluation.figures import (
    alignment_figure,
    model_alignment_maps,
    rank_list_from_rows,
    stack_figures,
)
from cerberus.experiments.ablations import format_percent as pct
from cerberus.files import atomic_write, atomic_write_json
from cerberus.inference.embed import InferenceModel, parse_attribute_query
from cerberus.inference.features import FeatureSet
from cerberus.inference.scoring import embed_features
from cerberus.search import Gallery, build_index
from cerberus.training.engine import train

logger = logging.getLogger(__name__)


def _step(name: str, t0: float) -> None:
    logger.info("demo: %s done at %.0fs", name, time.perf_counter() - t0)


def _markdown_table(metrics: dict[str, Any]) -> str:
    c = metrics.get("chance", {})

    r, cr = metrics["reid"], c.get("reid", {})
    lines = ["| task | metric | model | chance |", "|---|---|---|---|"]
    for key, label in (("map_score", "mAP"), ("rank1_score", "R-1"), ("rank10_score", "R-10")):
        lines.append(f"| reID | {label} | {pct(r[key])} | {pct(cr.get(key))} |")
    for name, a in metrics["aps"].items():
        title = "APS, full query" if name == "full" else f"APS, no {GROUP_NAMES[name[-1]]} group"
        chance = c.get("aps", {}) if name == "full" else {}
        for key, label in (("map_score", "mAP"), ("rank1_score", "R-1")):
            lines.append(f"| {title} | {label} | {pct(a[key])} | {pct(chance.get(key))} |")
    par, cp = metrics["par"], c.get("par", {})
    for key, label in PAR_METRICS:
        lines.append(f"| PAR | {label} | {pct(par.get(key))} | {pct(cp.get(key))} |")
    return "\n".join(lines)


PAR_METRICS = (
    ("mean_accuracy_score", "mA"),  # mean per-attribute accuracy, the paper's convention
    ("official_accuracy_score", "official (Lin et al.)"),
    ("label_mean_accuracy_score", "label-based mA"),
)

SEMANTIC_FORMS = {
    "hinge": "the hinge L_sem (method §3.1)",
    "softmax": "the discriminative softmax over each group's prototypes (method §8.1)",
}
DECISIONS = {
    "cosine": "the nearest prototype (method §5)",
    "posterior": "the prior-aware posterior (method §8.2)",
}


def _setting_sentence(semantic: str, decision: str) -> str:
    """Which semantic objective and SID decision the run used, next to the paper's."""
    form = SEMANTIC_FORMS[semantic]
    form += ", the paper's" if semantic == "hinge" else f" (the paper: {SEMANTIC_FORMS['hinge']})"
    rule = DECISIONS[decision]
    rule += ", the paper's rule" if decision == "cosine" else f" (the paper: {DECISIONS['cosine']})"
    return (
        f"Semantic objective: {form}. APS and PAR decide by {rule}. "
        "Why this setting: the semantic-objective table in `docs/results.md`."
    )


def _times(model: float, chance: float) -> str:
    return f"{model / chance:.0f}x" if chance > 0 else "far above"


def _in_words(metrics: dict[str, Any]) -> list[str]:
    """Each task's headline result against its chance level, as sentences."""
    c = metrics["chance"]
    reid, aps, par = metrics["reid"], metrics["aps"]["full"], metrics["par"]
    cr, ca, cp = c["reid"], c["aps"], c["par"]
    out = [
        f"- **reID**: mAP {pct(reid['map_score'])} against {pct(cr['map_score'])} for a random "
        f"ranking ({_times(reid['map_score'], cr['map_score'])}); the first result is the "
        f"person for {pct(reid['rank1_score'])}% of the queries (chance "
        f"{pct(cr['rank1_score'])}%).",
        f"- **APS** (a full description): mAP {pct(aps['map_score'])} against "
        f"{pct(ca['map_score'])} for a random ranking "
        f"({_times(aps['map_score'], ca['map_score'])}); rank-1 {pct(aps['rank1_score'])} "
        f"against {pct(ca['rank1_score'])}.",
    ]
    for key, label in PAR_METRICS:
        model, base = par.get(key), cp.get(key)
        if model is None or base is None:
            continue
        verdict = "above" if model > base else "NOT above"
        out.append(
            f"- **PAR**, {label}: {pct(model)}, {verdict} the {pct(base)} of always answering "
            "the most frequent training value."
        )
    return out


def _partial_query(dataset: ReIDDataset, values: np.ndarray) -> str:
    """A partial query from one identity: gender, top colour and backpack (three groups)."""
    schema = dataset.schema
    names = [
        n for n in ("gender", "upper.color", "backpack") if n in {a.name for a in schema.attributes}
    ]
    return ", ".join(
        f"{n}={schema.attributes[schema.index(n)].values[int(values[schema.index(n)])]}"
        for n in names
    )


def _sizes(dataset: ReIDDataset) -> str:
    """``"train: 12 identities, 96 images; query: ..."`` (without the name and root)."""
    parts = []
    for split in ("train", "query", "gallery"):
        s = getattr(dataset, split)
        ids = len(np.unique(s.pids[s.pids > 0]))
        parts.append(f"{split}: {ids} identities, {len(s)} images")
    return "; ".join(parts)


def par_table(
    names: list[str], predicted: list[dict[str, str]], annotated: list[dict[str, str]]
) -> list[str]:
    """A Markdown table, one row per image and one column per attribute: the predicted value,
    in bold with the annotated value after it where the two differ; ``right`` counts hits."""
    attrs = list(predicted[0]) if predicted else []
    lines = [
        "| image | right | " + " | ".join(attrs) + " |",
        "|---|---|" + "---|" * len(attrs),
    ]
    for name, pred, truth in zip(names, predicted, annotated):
        cells = [
            pred[a] if pred[a] == truth[a] else f"**{pred[a]}** (annotated: {truth[a]})"
            for a in attrs
        ]
        right = sum(pred[a] == truth[a] for a in attrs)
        lines.append(f"| `{name}` | {right}/{len(attrs)} | " + " | ".join(cells) + " |")
    return lines


def aps_caption(text: str, query, hits: int, gallery_values: np.ndarray, schema) -> str:
    """The caption of an APS figure: the query, how many of the top 10 match it and how many
    gallery crops carry exactly the given values; a word of explanation when none matches."""
    given = [(schema.index(n), v) for n, v in query.given.items()]
    match = np.ones(len(gallery_values), dtype=bool)
    for col, v in given:
        match &= gallery_values[:, col] == v
    caption = (
        f"`{text}`: {hits} of the top 10 match every given attribute "
        f"({int(match.sum())} gallery "
        f"{'crop is' if match.sum() == 1 else 'crops are'} annotated with exactly these values)."
    )
    if hits == 0:
        caption += (
            f" None of the 10 is right: a result counts only if all {len(given)} given "
            "attributes match at once, so one wrongly recognised attribute (often a colour) "
            "makes a crop wrong, and a rare combination leaves few crops that can be right"
            + (" (here none at all)." if not match.any() else ".")
        )
    return caption


def run_demo(
    cfg: Config,
    out_dir: str | Path,
    *,
    synth_seed: int = 0,
    regenerate: bool = False,
) -> Path:
    """Run the demo; returns the path of ``report.md``."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(cfg.data.root)
    if regenerate or not (data / "market_attribute.mat").is_file():
        summary = generate_synthetic(data, seed=synth_seed, overwrite=True)
        logger.info("demo: synthetic benchmark: %s", summary)
    make_contact_sheet(data, out / "synthetic_sheet.png")
    _step("data", t0)

    cfg = replace(cfg, train=replace(cfg.train, output_dir=str(out)))
    dataset = read_dataset(data, cfg.data.dataset, attributes=cfg.data.attributes)
    finish = calibration_after_training(cfg, dataset) if cfg.train.calibrate else None
    result = train(cfg, resume=False, dataset=dataset, on_finish=finish)
    _step("training", t0)

    # One model and one extraction serve the metrics, the gallery index and the figures.
    net = InferenceModel.from_checkpoint(result.checkpoint, device="cpu")
    feats = extract_with_config(net.model, dataset, cfg, device=net.device)
    metrics = evaluate_features(
        feats, dataset, decision=cfg.eval.decision, prior_scale=cfg.eval.prior_scale
    )
    atomic_write_json(out / "metrics.json", metrics, "metrics")
    print(format_report(metrics))
    _step("evaluation", t0)

    g = dataset.gallery
    index = build_index(
        FeatureSet(
            features=feats.gallery,
            paths=[str(Path(p).resolve()) for p in g.paths],  # usable from any folder
            pids=g.pids,
            camids=g.camids,
            values=g.values,
            prototypes=feats.prototypes,
            meta={
                "schema": dataset.schema.to_dict(),
                "fingerprint": net.fingerprint,
                "checkpoint": str(Path(result.checkpoint).resolve()),
                "height": net.height,
                "width": net.width,
                "dim": int(feats.gallery.shape[-1]),
            },
        )
    )
    index_path = index.save(out / "gallery_index.npz")
    _step("index", t0)

    schema = dataset.schema
    figures: list[tuple[str, str, str]] = []

    # reID: the first query image
    q = dataset.query
    qi = 0
    query_path = q.paths[qi]
    said = net.describe(feats.query[[qi]], index.info.prototypes)[0]
    searched = Gallery(index)  # the query's features are at hand: no model call
    rows = searched.ranked(
        searched.vector_top(embed_features(feats.query[[qi]])), 10, query_pid=int(q.pids[qi])
    )
    rank_list_from_rows(
        out / "reid_ranks.png",
        rows,
        query_image=query_path,
        query_text=said["phrases"],
        title=f"reID query {query_path.name}",
    )
    hits = sum(bool(r["correct"]) for r in rows)
    figures.append(
        (
            "reID",
            "reid_ranks.png",
            f"query `{query_path.name}`: {hits} of the top 10 are the person",
        )
    )

    # APS: full query = every attribute of that query's identity; partial = three groups of it
    true_values = q.values[qi]
    full_text = ", ".join(f"{k}={v}" for k, v in schema.describe(true_values).items())
    partial_text = _partial_query(dataset, true_values)
    for name, text, file in (
        ("APS, full query", full_text, "aps_full.png"),
        ("APS, partial query", partial_text, "aps_partial.png"),
    ):
        aq = parse_attribute_query(text, schema)
        rows = searched.by_attributes(aq, 10).rows
        rank_list_from_rows(out / file, rows, query_text=aq.describe(schema), title=name)
        hits = sum(bool(r["correct"]) for r in rows)
        figures.append((name, file, aps_caption(text, aq, hits, g.values, schema)))
    # the picture of docs/index.md: the photo query above the partial description
    stack_figures(out / "search.png", [out / "reid_ranks.png", out / "aps_partial.png"])

    # PAR: predicted vs annotated attributes of a few queries, one row per image
    picks = list(range(0, len(q), max(1, len(q) // 4)))[:4]
    described = net.describe(feats.query[picks], index.info.prototypes)
    par_lines = par_table(
        [q.paths[i].name for i in picks],
        [d["attributes"] for d in described],
        [schema.describe(q.values[i]) for i in picks],
    )

    heat, tops, bottoms = model_alignment_maps(
        net.model, [q.paths[i] for i in picks], height=net.height, width=net.width
    )
    alignment_figure(
        out / "alignment.png",
        [q.paths[i] for i in picks],
        heat,
        tops,
        bottoms,
        sigma=cfg.model.align_sigma,
    )
    _step("figures", t0)

    lines = [
        "# Cerberus demo report",
        "",
        f"Synthetic benchmark at `{data}` ({_sizes(dataset)}), config "
        f"`{cfg.model.backbone}` {cfg.data.height}x{cfg.data.width}, "
        f"{cfg.optim.iterations} iterations on {cfg.train.device}; "
        f"trained in {result.seconds:.0f}s, whole demo {time.perf_counter() - t0:.0f}s.",
        "",
        _setting_sentence(cfg.loss.semantic, cfg.eval.decision),
        "",
        "## Results in words",
        "",
        *_in_words(metrics),
        "",
        f"PAR is scored on the {metrics['par'].get('image_set', 'test images')} "
        "(the image set of Lin et al.'s official protocol).",
        "",
        "## Results (percent; chance = random ranking / majority class)",
        "",
        _markdown_table(metrics),
        "",
        f"Full table: `metrics.json`; gallery index: `{index_path.name}` "
        f"({index.count()} crops, exact search).",
        "",
        "## Searches",
        "",
        "Green border: correct (same person for reID; every given attribute right for APS); "
        "red: wrong. Under the reID query: its predicted attributes.",
        "",
    ]
    for name, file, caption in figures:
        lines += [f"### {name}", "", caption, "", f"![{name}]({file})", ""]
    lines += [
        "## Attribute recognition (PAR)",
        "",
        f"Predicted attributes of {len(picks)} query images, one row per image: a right value "
        "as predicted; a wrong one in bold, followed by the annotated value.",
        "",
        *par_lines,
        "",
        "## Alignment maps",
        "",
        "Per query image: the rows the alignment module keeps (boxed) and the heat map, the "
        "L2 norm of the local-branch feature map at each position; rows whose peak exceeds "
        f"sigma = {cfg.model.align_sigma} are kept, first to last.",
        "",
        "![alignment](alignment.png)",
        "",
        "## The benchmark",
        "",
        "![synthetic identities](synthetic_sheet.png)",
        "",
    ]
    report = out / "report.md"
    atomic_write(report, lambda fh: fh.write("\n".join(lines).encode()), "report")
    _step("report", t0)
    return report

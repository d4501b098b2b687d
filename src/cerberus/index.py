"""Gallery features and search, SPEC section 5.

Extraction embeds person crops into the five part representations f^H, f^U, f^L, f^I, f^C.
The retrieval vector of an image is the five parts, each L2-normalised, concatenated and divided
by sqrt(5); the inner product of two such vectors is the mean over groups of the cosines, the
reID similarity of SPEC 5. One faiss inner-product index over these vectors serves both tasks:

- reID: the query image's retrieval vector;
- APS: the query's SID prototypes in the given groups (normalised), zeros elsewhere, scaled by
  sqrt(5) / (number of given groups): its inner product with a gallery vector is the mean over
  the given groups of cos(p^G, f^G), SPEC 5.

A group can also be given in part ("gender=female" without an age): its score is then the best
cosine over the group's SIDs that agree with the given attributes (the max over the full
combinations); with whole groups this is exactly SPEC 5. The index searches every agreeing
combination and merges them, which keeps exact search exact.

Files (``.npz``, read with ``allow_pickle=False``: no code runs from them):

- features file (``cerberus extract``): ``features (N, 5, d)``, paths, identities and cameras
  when the file names tell them, attribute values when an attribute file was given, the SID
  prototypes and the model fingerprint;
- index file (``cerberus index``): the serialised faiss index and the same metadata, without the
  raw features.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cerberus.attributes import GROUPS, AttributeTable, Schema, get_schema
from cerberus.data.datasets import (
    FORMATS,
    ImageDataset,
    ImageSet,
    parse_filename,
)
from cerberus.data.transforms import build_transforms
from cerberus.errors import CerberusError
from cerberus.evaluation import describe_features, embed_features, l2_normalize
from cerberus.files import atomic_write
from cerberus.model import fuse_batchnorm

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
UNKNOWN = -1000
"""Identity / camera value of an image whose file name does not tell them."""
FILE_FORMAT_VERSION = 1
INDEX_KINDS = ("flat", "ivf", "ivf-sq8", "hnsw")


# --------------------------------------------------------------------------- extraction


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: ImageSet,
    *,
    height: int,
    width: int,
    batch_size: int = 128,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    flip: bool = False,
    progress: bool = False,
    desc: str = "extract",
    on_bad_image: str = "stop",
) -> np.ndarray:
    """The five representations f^H, f^U, f^L, f^I, f^C of every image.

    Args:
        model: a :class:`~cerberus.model.Cerberus` (put in eval mode here).
        images: the images to embed.
        height, width: network input size.
        flip: also embed the mirrored image and average (a common test-time option; off in
            the paper protocol).
        on_bad_image: ``"stop"``: an unreadable image raises :class:`CerberusError` naming it;
            ``"skip"``: its row is NaN and it is logged (see :func:`extract_folder`).

    Returns:
        Array of shape ``(N, 5, d)``, float32, not normalised.
    """
    if on_bad_image not in ("stop", "skip"):
        raise CerberusError(f"on_bad_image must be 'stop' or 'skip', not {on_bad_image!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    # channels_last: faster convolutions on CUDA and on CPU (oneDNN); results are unchanged
    model.to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(
        _SafeImages(
            images, build_transforms(height=height, width=width, train=False), height, width
        ),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    out = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), desc=desc, unit="img")
    try:
        for batch in loader:
            errors = [e for e in batch["error"] if e]
            if errors and on_bad_image == "stop":
                raise CerberusError(
                    f"{errors[0]} (use on_bad_image='skip' / --skip-bad to skip such files)"
                )
            x = batch["image"].to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            with amp:
                f = model(x)["features"].float()
                if flip:
                    f = (f + model(torch.flip(x, dims=[3]))["features"].float()) / 2
            f = f.cpu()
            for i, e in enumerate(batch["error"]):
                if e:
                    logger.warning("skipping %s", e)
                    f[i] = float("nan")
            out.append(f)
            if bar is not None:
                bar.update(len(x))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    if not out:
        return np.zeros((0, 5, 0), dtype=np.float32)
    return torch.cat(out).numpy()


class _SafeImages(ImageDataset):
    """Test-time dataset whose items carry the error of an unreadable file instead of raising."""

    def __init__(self, images: ImageSet, transform, height: int, width: int):
        super().__init__(images, transform)
        self._blank = torch.zeros(3, height, width)

    def __getitem__(self, item):  # type: ignore[override]
        try:
            out = super().__getitem__(item)
            out["error"] = ""
        except CerberusError as exc:
            out = {"image": self._blank, "index": item, "error": str(exc)}
            out.update(label=0, camid=0, sids=torch.full((5,), -1, dtype=torch.long))
        return out


def scan_images(folder: str | Path, schema: Schema) -> ImageSet:
    """Every image under ``folder`` (recursive, sorted), as an :class:`ImageSet`.

    Identities and cameras are read from Market-1501 / DukeMTMC-reID style file names when they
    parse, else :data:`UNKNOWN`. Attribute values are unknown (``-1``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CerberusError(f"{folder}: image folder not found")
    paths = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise CerberusError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return image_set(paths, schema)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's weights and buffers (names, shapes, bytes), hex.

    Two models with the same fingerprint give the same features; the index refuses queries
    embedded by a model with another fingerprint.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- feature files


@dataclass
class FeatureSet:
    """Extracted features of a set of crops with everything search needs besides the model.

    Attributes:
        features: ``(N, 5, d)`` raw representations.
        paths: image paths as strings, length N.
        pids, camids: ``(N,)``; :data:`UNKNOWN` where the file name does not tell.
        values: ``(N, num_attributes)`` ground-truth attribute values, ``-1`` where unknown.
        prototypes: ``{G: (S_G, d)}`` the model's SID prototypes.
        meta: ``schema``, ``fingerprint`` (of the model), ``checkpoint``, ``height``, ``width``.
    """

    features: np.ndarray
    paths: list[str]
    pids: np.ndarray
    camids: np.ndarray
    values: np.ndarray
    prototypes: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        return get_schema(self.meta["schema"])

    def save(self, path: str | Path) -> Path:
        arrays = {
            "features": self.features.astype(np.float32),
            **_common_arrays(self.paths, self.pids, self.camids, self.values, self.prototypes),
        }
        return _save_npz(path, arrays, {**self.meta, "kind": "features"}, "features file")

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        arrays, meta = _load_npz(path, "features", "features file")
        if "features" not in arrays:
            raise CerberusError(f"{path}: features file without a 'features' array")
        paths, pids, camids, values, prototypes = _read_common(arrays, path)
        return cls(arrays["features"], paths, pids, camids, values, prototypes, meta)


def _common_arrays(paths, pids, camids, values, prototypes) -> dict[str, np.ndarray]:
    out = {
        "paths": np.asarray([str(p) for p in paths], dtype=np.str_),
        "pids": np.asarray(pids, dtype=np.int64),
        "camids": np.asarray(camids, dtype=np.int64),
        "values": np.asarray(values, dtype=np.int64),
    }
    out.update({f"prototype_{g}": np.asarray(prototypes[g], np.float32) for g in GROUPS})
    return out


def _read_common(arrays: Mapping[str, np.ndarray], path) -> tuple:
    try:
        prototypes = {g: arrays[f"prototype_{g}"] for g in GROUPS}
        return (
            [str(p) for p in arrays["paths"]],
            arrays["pids"],
            arrays["camids"],
            arrays["values"],
            prototypes,
        )
    except KeyError as exc:
        raise CerberusError(f"{path}: missing array {exc.args[0]!r}") from None


def _save_npz(path: str | Path, arrays: dict[str, np.ndarray], meta: dict, what: str) -> Path:
    """Write arrays + JSON metadata atomically (temporary file, fsync, rename)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    meta = {**meta, "format": "cerberus", "version": FILE_FORMAT_VERSION}
    arrays = {**arrays, "meta": np.asarray(json.dumps(meta))}
    return atomic_write(path, lambda fh: np.savez(fh, **arrays), what)


def _load_npz(path: str | Path, kind: str, what: str) -> tuple[dict[str, np.ndarray], dict]:
    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: {what} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as exc:  # zip, npy and JSON errors of a damaged file
        raise CerberusError(f"{path}: not a readable Cerberus {what} ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "cerberus":
        raise CerberusError(f"{path}: not a Cerberus {what}")
    if meta.get("kind") != kind:
        raise CerberusError(f"{path}: a Cerberus {meta.get('kind')} file, not a {what}")
    if meta.get("version") != FILE_FORMAT_VERSION:
        raise CerberusError(f"{path}: {what} version {meta.get('version')} is not supported")
    return arrays, meta


def extract_folder(
    model: nn.Module,
    folder: str | Path,
    *,
    schema: Schema,
    height: int,
    width: int,
    checkpoint: str = "",
    fingerprint: str | None = None,
    attributes: AttributeTable | None = None,
    batch_size: int = 128,
    num_workers: int = 2,
    device: str = "cpu",
    skip_bad: bool = False,
    progress: bool = False,
) -> FeatureSet:
    """Features of every crop under ``folder``; unreadable files stop or are skipped (logged).

    ``attributes`` (e.g. from the dataset's ``.mat`` file) gives each identity's attribute
    values, stored as ground truth for figures and evaluation. ``fingerprint`` is that of the
    trained weights when ``model`` is a BN-folded copy (:func:`model_fingerprint` otherwise).
    """
    images = scan_images(folder, schema)
    feats = extract_features(
        model,
        images,
        height=height,
        width=width,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
        desc=Path(folder).name or "extract",
        on_bad_image="skip" if skip_bad else "stop",
    )
    ok = np.isfinite(feats).all(axis=(1, 2))
    if not ok.all():
        logger.warning("%s: skipped %d unreadable images of %d", folder, (~ok).sum(), len(ok))
        if not ok.any():
            raise CerberusError(f"{folder}: no readable image")
    values = attributes.lookup(images.pids) if attributes is not None else images.values
    keep = np.nonzero(ok)[0]
    return FeatureSet(
        features=feats[keep],
        paths=[str(images.paths[i]) for i in keep],
        pids=images.pids[keep],
        camids=images.camids[keep],
        values=values[keep],
        prototypes={g: p.detach().float().cpu().numpy() for g, p in model.prototypes.items()},
        meta={
            "schema": schema.name,
            "fingerprint": fingerprint or model_fingerprint(model),
            "checkpoint": str(checkpoint),
            "height": height,
            "width": width,
            "dim": int(feats.shape[-1]),
        },
    )


# --------------------------------------------------------------------------- vectors


@dataclass(frozen=True)
class AttributeQuery:
    """An attribute query compiled against a schema.

    Attributes:
        given: ``{attribute name: value code}`` as the user gave it.
        groups: the groups with at least one given attribute, GROUPS order.
        choices: per group in ``groups``, the SIDs that agree with the given attributes (one
            SID when the whole group is given).
    """

    given: dict[str, int]
    groups: tuple[str, ...]
    choices: tuple[tuple[int, ...], ...]

    @property
    def num_combinations(self) -> int:
        return int(np.prod([len(c) for c in self.choices]))

    def describe(self, schema: Schema) -> list[str]:
        return [
            f"{n}: {schema.attributes[schema.index(n)].values[v]}" for n, v in self.given.items()
        ]


def parse_attribute_query(
    text: str | Mapping[str, str], schema: Schema, *, max_combinations: int = 4096
) -> AttributeQuery:
    """``"gender=female, upper.color=red, backpack=yes"`` -> :class:`AttributeQuery`.

    Unknown attribute names or values raise :class:`CerberusError` listing the valid ones.
    """
    given = schema.parse_query(text)
    groups, choices = [], []
    for g in GROUPS:
        codec = schema.codecs[g]
        cols = schema.group_columns(g)
        names = [schema.attributes[c].name for c in cols]
        if not any(n in given for n in names):
            continue
        values = codec.decode(np.arange(codec.num_sids))  # (S, n_attrs)
        ok = np.ones(codec.num_sids, dtype=bool)
        for j, n in enumerate(names):
            if n in given:
                ok &= values[:, j] == given[n]
        groups.append(g)
        choices.append(tuple(int(s) for s in np.nonzero(ok)[0]))
    query = AttributeQuery(given, tuple(groups), tuple(choices))
    if query.num_combinations > max_combinations:
        raise CerberusError(
            f"attribute query matches {query.num_combinations} SID combinations (more than "
            f"{max_combinations}); give more attributes of the partly given groups"
        )
    return query


def attribute_query_vectors(
    query: AttributeQuery, prototypes: Mapping[str, np.ndarray]
) -> np.ndarray:
    """One search vector per agreeing SID combination, ``(num_combinations, 5 d)``.

    Group G given with SID s: the slot of G holds p_s / ||p_s||; groups not given hold 0; the
    vector is scaled by sqrt(5) / |given groups|, so its inner product with a retrieval vector
    is the mean over the given groups of cos(p^G, f^G) (SPEC 5).
    """
    d = next(iter(prototypes.values())).shape[1]
    unit = {g: l2_normalize(np.asarray(prototypes[g], np.float32)) for g in GROUPS}
    scale = np.sqrt(len(GROUPS), dtype=np.float32) / len(query.groups)
    combos = list(itertools.product(*query.choices))
    out = np.zeros((len(combos), len(GROUPS), d), dtype=np.float32)
    for i, combo in enumerate(combos):
        for g, s in zip(query.groups, combo):
            out[i, GROUPS.index(g)] = unit[g][s]
    return np.ascontiguousarray(out.reshape(len(combos), -1) * scale)


# --------------------------------------------------------------------------- faiss index


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise CerberusError("the gallery index needs faiss: pip install faiss-cpu") from None
    return faiss


@dataclass
class SearchResult:
    """Top-k of one query: ``indices`` into the gallery and ``scores`` (higher is better)."""

    indices: np.ndarray
    scores: np.ndarray


class GalleryIndex:
    """A faiss inner-product index over gallery retrieval vectors, with the gallery metadata.

    Build it with :meth:`build`; :meth:`save` / :meth:`load` a single ``.npz`` file.
    ``kind``: ``"flat"`` (exact, default), ``"ivf"`` (inverted lists, ``nlist`` cells,
    ``nprobe`` searched), ``"ivf-sq8"`` (the same over 8-bit codes, the best 4 k re-ranked with
    the exact vectors: the fastest at a million crops) or ``"hnsw"`` (graph, ``M`` links,
    ``ef_search``).
    """

    def __init__(self, index, *, paths, pids, camids, values, prototypes, meta):
        self.index = index
        self.paths = list(paths)
        self.pids = np.asarray(pids)
        self.camids = np.asarray(camids)
        self.values = np.asarray(values)
        self.prototypes = {g: np.asarray(p, np.float32) for g, p in prototypes.items()}
        self.meta = dict(meta)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def schema(self) -> Schema:
        return get_schema(self.meta["schema"])

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("fingerprint", ""))

    @classmethod
    def build(
        cls,
        features: FeatureSet,
        *,
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
        recall_queries: int = 1000,
        seed: int = 0,
    ) -> GalleryIndex:
        """Index a :class:`FeatureSet`. Approximate kinds also measure their recall@10.

        Recall@10 is measured against exact search with ``recall_queries`` gallery vectors as
        queries (each one's own entry excluded from both result lists); it is stored in
        ``meta["recall_at_10"]``.
        """
        raw = features.features  # (N, 5, d): turned into retrieval vectors chunk by chunk
        index = build_faiss_index(
            raw,
            kind=kind,
            nlist=nlist,
            nprobe=nprobe,
            hnsw_m=hnsw_m,
            ef_search=ef_search,
            seed=seed,
            transform=embed_features,
        )
        meta = {
            **features.meta,
            "index_kind": kind,
            "dim": int(index.d),
            "count": int(index.ntotal),
        }
        if kind.startswith("ivf"):
            ivf = _faiss().extract_index_ivf(index)
            meta.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
        if kind == "hnsw":
            meta.update(hnsw_m=hnsw_m, ef_search=ef_search)
        if kind != "flat":
            meta["recall_at_10"] = recall_at_k(
                index, raw, k=10, num_queries=recall_queries, seed=seed, transform=embed_features
            )
        return cls(
            index,
            paths=features.paths,
            pids=features.pids,
            camids=features.camids,
            values=features.values,
            prototypes=features.prototypes,
            meta=meta,
        )

    def save(self, path: str | Path) -> Path:
        faiss = _faiss()
        arrays = {
            "faiss_index": faiss.serialize_index(self.index),
            **_common_arrays(self.paths, self.pids, self.camids, self.values, self.prototypes),
        }
        return _save_npz(path, arrays, {**self.meta, "kind": "index"}, "index")

    @classmethod
    def load(cls, path: str | Path) -> GalleryIndex:
        faiss = _faiss()
        arrays, meta = _load_npz(path, "index", "index")
        paths, pids, camids, values, prototypes = _read_common(arrays, path)
        try:
            index = faiss.deserialize_index(arrays["faiss_index"])
        except Exception as exc:
            raise CerberusError(f"{path}: damaged faiss index ({exc})") from None
        if index.ntotal != len(paths):
            raise CerberusError(f"{path}: {index.ntotal} vectors for {len(paths)} paths")
        return cls(
            index,
            paths=paths,
            pids=pids,
            camids=camids,
            values=values,
            prototypes=prototypes,
            meta=meta,
        )

    def check_model(self, fingerprint: str, where: str) -> None:
        """Refuse queries embedded by another model than the one the gallery was indexed with."""
        if fingerprint != self.fingerprint:
            raise CerberusError(
                f"{where}: model {fingerprint[:12]} is not the model this index was built "
                f"with ({self.fingerprint[:12]}, "
                f"{self.meta.get('checkpoint') or 'unknown checkpoint'}); "
                "rebuild the index with this model"
            )

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products: ``(scores (Q, k), indices (Q, k))``, -1 indices past the end."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.index.d:
            raise CerberusError(
                f"query vectors of shape {q.shape} do not fit an index of dimension {self.index.d}"
            )
        return self.index.search(q, min(k, len(self)))

    def search_features(self, features: np.ndarray, k: int = 10) -> list[SearchResult]:
        """reID: the top-k gallery items of each query's ``(5, d)`` representations."""
        scores, idx = self.search_vectors(embed_features(features), k)
        return [SearchResult(i[i >= 0], s[i >= 0]) for s, i in zip(scores, idx)]

    def search_attributes(self, query: AttributeQuery, k: int = 10) -> SearchResult:
        """APS: the top-k gallery items for an attribute query (partial groups allowed).

        Every agreeing SID combination is searched; an item's score is its best score over the
        combinations. The merge is exact: an item of the true top-k is in the top-k of the
        combination that gives its best score.
        """
        vectors = attribute_query_vectors(query, self.prototypes)
        scores, idx = self.search_vectors(vectors, k)
        best: dict[int, float] = {}
        for s_row, i_row in zip(scores, idx):
            for s, i in zip(s_row, i_row):
                if i >= 0 and s > best.get(int(i), -np.inf):
                    best[int(i)] = float(s)
        order = sorted(best, key=lambda i: (-best[i], i))[:k]
        return SearchResult(
            np.asarray(order, dtype=np.int64),
            np.asarray([best[i] for i in order], dtype=np.float32),
        )


def build_faiss_index(
    vectors: np.ndarray,
    *,
    kind: str = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    chunk: int = 65536,
):
    """A faiss inner-product index of ``kind`` holding ``vectors`` (``(N, D)``).

    With ``transform``, the index holds ``transform(vectors[rows])`` (e.g. the retrieval vectors
    of raw ``(N, 5, d)`` features), computed ``chunk`` rows at a time: no second full-size copy.
    """
    faiss = _faiss()
    if kind not in INDEX_KINDS:
        raise CerberusError(f"unknown index kind {kind!r}; valid: {', '.join(INDEX_KINDS)}")
    n = len(vectors)
    if n == 0:
        raise CerberusError("cannot index an empty gallery")

    def rows_of(selection) -> np.ndarray:
        part = vectors[selection]
        part = transform(part) if transform is not None else part
        return np.ascontiguousarray(part, dtype=np.float32)

    d = rows_of(slice(0, 1)).shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
    else:
        # about sqrt(N) cells, k-means on at most 64 points per cell, 10 iterations: minutes
        # for 1M x 2560 on 2 cores, where 4 sqrt(N) cells and 256 points per cell take hours
        nlist = nlist or max(1, min(int(np.sqrt(n)), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(d)
        if kind == "ivf":
            ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:  # 8-bit codes scanned, the top k * k_factor re-ranked with the exact vectors
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        ivf.own_fields = True
        quantizer.this.disown()
        rng = np.random.default_rng(seed)
        sample = rows_of(
            slice(0, n) if n <= 64 * nlist else np.sort(rng.choice(n, 64 * nlist, replace=False))
        )
        ivf.cp.seed = seed
        ivf.cp.niter = 10
        ivf.train(sample)
        ivf.nprobe = min(nprobe, nlist)
        index = ivf
        if kind == "ivf-sq8":
            index = faiss.IndexRefineFlat(ivf)
            index.own_fields = True
            ivf.this.disown()
            index.k_factor = 4
    for start in range(0, n, chunk):
        index.add(rows_of(slice(start, start + chunk)))
    return index


def exact_top_k(
    gallery: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    chunk: int = 65536,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Indices ``(Q, k)`` of the k largest inner products, by chunked matrix products.

    Reads ``gallery`` in place, chunk by chunk (through ``transform`` if given): no second copy
    of a large gallery.
    """
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    best_s = torch.full((len(q), 0), -np.inf)
    best_i = torch.zeros((len(q), 0), dtype=torch.long)
    for start in range(0, len(gallery), chunk):
        part = gallery[start : start + chunk]
        part = transform(part) if transform is not None else part
        g = torch.from_numpy(np.ascontiguousarray(part, np.float32))
        s = q @ g.T
        top = s.topk(min(k, s.shape[1]), dim=1)
        best_s = torch.cat([best_s, top.values], 1)
        best_i = torch.cat([best_i, top.indices + start], 1)
        keep = best_s.topk(min(k, best_s.shape[1]), dim=1)
        best_s, best_i = keep.values, best_i.gather(1, keep.indices)
    return best_i.numpy()


def recall_at_k(
    index,
    vectors: np.ndarray,
    *,
    k: int = 10,
    num_queries: int = 1000,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> float:
    """Mean fraction of the exact top-k (inner product) that ``index`` returns.

    Queries are ``num_queries`` random rows of ``vectors`` (through ``transform`` if given, as in
    :func:`build_faiss_index`); each query's own row is left out of both lists.
    """
    n = len(vectors)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(num_queries, n), replace=False))
    queries = vectors[rows]
    queries = np.ascontiguousarray(
        transform(queries) if transform is not None else queries, dtype=np.float32
    )
    kk = min(k + 1, n)
    truth = exact_top_k(vectors, queries, kk, transform=transform)
    _, found = index.search(queries, kk)
    hits = []
    for r, t, f in zip(rows, truth, found):
        t = [i for i in t if i != r][:k]
        f = {i for i in f if i != r and i >= 0}
        if t:
            hits.append(len(f.intersection(t)) / len(t))
    return float(np.mean(hits)) if hits else 1.0


def image_set(paths: list[str | Path] | tuple[str | Path, ...], schema: Schema) -> ImageSet:
    """An :class:`ImageSet` of given files; identity and camera parsed from names when possible."""
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CerberusError(f"{missing[0]}: image not found")
    pids = np.full(len(paths), UNKNOWN, dtype=np.int64)
    cams = np.full(len(paths), UNKNOWN, dtype=np.int64)
    for i, p in enumerate(paths):
        for fmt in FORMATS.values():
            try:
                pids[i], cams[i] = parse_filename(p.name, fmt)
                break
            except CerberusError:
                continue
    values = np.full((len(paths), schema.num_attributes), -1, dtype=np.int64)
    return ImageSet(tuple(paths), pids, cams, pids.copy(), values, schema)


# --------------------------------------------------------------------------- inference helpers


@dataclass
class InferenceModel:
    """A trained model ready to embed crops: what ``extract``, ``search`` and ``describe`` use."""

    model: nn.Module
    schema: Schema
    height: int
    width: int
    checkpoint: str
    device: str
    batch_size: int = 64
    num_workers: int = 0
    _fingerprint: str = ""

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        num_workers: int | None = None,
        fuse_bn: bool = True,
    ) -> InferenceModel:
        """Load a checkpoint for inference; ``fuse_bn`` folds BatchNorm into the convolutions
        (:func:`~cerberus.model.fuse_batchnorm`: same features, faster)."""
        from cerberus.engine import load_model_from_checkpoint

        model, cfg, state = load_model_from_checkpoint(checkpoint)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        fingerprint = model_fingerprint(model)  # of the trained weights, before folding BN
        if fuse_bn:
            model = fuse_batchnorm(model)
        model.to(device).eval()
        return cls(
            model=model,
            schema=get_schema(state["meta"]["schema"]),
            height=cfg.data.height,
            width=cfg.data.width,
            checkpoint=str(checkpoint),
            device=device,
            batch_size=batch_size or cfg.eval.batch_size,
            num_workers=cfg.eval.num_workers if num_workers is None else num_workers,
            _fingerprint=fingerprint,
        )

    @property
    def fingerprint(self) -> str:
        if not self._fingerprint:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    @property
    def prototypes(self) -> dict[str, np.ndarray]:
        return {g: p.detach().float().cpu().numpy() for g, p in self.model.prototypes.items()}

    def features(self, paths: list[str | Path] | tuple[str | Path, ...]) -> np.ndarray:
        """``(N, 5, d)`` representations of image files; an unreadable file is an error."""
        images = image_set(paths, self.schema)
        return extract_features(
            self.model,
            images,
            height=self.height,
            width=self.width,
            batch_size=self.batch_size,
            num_workers=min(self.num_workers, max(len(images) // self.batch_size, 0)),
            device=self.device,
        )

    def extract_folder(self, folder: str | Path, **kwargs: Any) -> FeatureSet:
        return extract_folder(
            self.model,
            folder,
            schema=self.schema,
            height=self.height,
            width=self.width,
            checkpoint=self.checkpoint,
            fingerprint=self.fingerprint,
            device=self.device,
            batch_size=kwargs.pop("batch_size", self.batch_size),
            num_workers=kwargs.pop("num_workers", self.num_workers),
            **kwargs,
        )


def result_rows(
    index: GalleryIndex,
    result: SearchResult,
    *,
    query_pid: int = UNKNOWN,
    query_camid: int = UNKNOWN,
    attribute_query: AttributeQuery | None = None,
) -> list[dict[str, Any]]:
    """A ranked list as rows: rank, score, path, identity, camera and whether it is correct.

    ``correct`` is known for a reID query when both identities are known (same identity), and
    for an attribute query when the gallery item's attribute values are known (every given
    attribute equal); ``None`` otherwise.
    """
    schema = index.schema
    rows = []
    for rank, (i, s) in enumerate(zip(result.indices, result.scores), start=1):
        pid, cam = int(index.pids[i]), int(index.camids[i])
        correct: bool | None = None
        if attribute_query is None:
            if query_pid != UNKNOWN and pid != UNKNOWN:
                correct = pid == query_pid
        elif (index.values[i] >= 0).all():
            correct = all(
                int(index.values[i][schema.index(n)]) == v for n, v in attribute_query.given.items()
            )
        rows.append(
            {
                "rank": rank,
                "score": float(s),
                "path": index.paths[i],
                "pid": None if pid == UNKNOWN else pid,
                "camid": None if cam == UNKNOWN else cam,
                "correct": correct,
            }
        )
    return rows


def search_images(
    gallery: GalleryIndex, net: InferenceModel, paths: list[Path], k: int = 10
) -> list[tuple[list[dict[str, Any]], list[str]]]:
    """reID for image files: per query, its ranked :func:`result_rows` and its predicted
    attributes as phrases (PAR, SPEC 5). ``net`` must be the model the index was built with."""
    gallery.check_model(net.fingerprint, net.checkpoint)
    queries = image_set(paths, net.schema)
    features = net.features(paths)
    said = describe_features(features, gallery.prototypes, gallery.schema)
    return [
        (
            result_rows(gallery, r, query_pid=int(pid), query_camid=int(cam)),
            d["phrases"],
        )
        for r, d, pid, cam in zip(
            gallery.search_features(features, k), said, queries.pids, queries.camids
        )
    ]

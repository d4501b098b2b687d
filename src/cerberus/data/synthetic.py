"""The built-in synthetic benchmark: procedurally rendered pedestrians in the Market-1501 layout.

Every identity gets a row of Market-1501 attribute values (skewed like the real data) and
details no attribute names (skin tone, logo, stripe, shoe shade, colour tint, proportions), so
persons sharing every attribute are still distinguishable. Cameras differ in background clutter,
lighting, scale and vertical placement (some boxes show the person shifted, with empty margin:
what the alignment module corrects). The output is exactly the Market-1501 folder layout plus a
Lin-style ``market_attribute.mat``, so :func:`cerberus.data.datasets.read_dataset` loads it.

Everything is a pure function of ``(seed, identity, image)``: the same seed gives byte-identical
files whatever the number of worker processes.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cerberus.attributes import (
    GROUPS,
    MARKET1501,
    AttributeTable,
    load_attribute_mat,
    save_attribute_mat,
)
from cerberus.errors import CerberusError

logger = logging.getLogger(__name__)

SCHEMA = MARKET1501
COL = {a.name: i for i, a in enumerate(SCHEMA.attributes)}

# Colours of the Market values (index = value code; index 0 "none" is drawn as a pattern).
UPPER_RGB = [
    None,
    (25, 25, 28),
    (235, 235, 230),
    (200, 30, 35),
    (120, 50, 150),
    (230, 210, 40),
    (128, 128, 128),
    (40, 70, 180),
    (40, 140, 60),
]
LOWER_RGB = [
    None,
    (25, 25, 28),
    (235, 235, 230),
    (235, 140, 175),
    (120, 50, 150),
    (230, 210, 40),
    (128, 128, 128),
    (40, 70, 180),
    (40, 140, 60),
    (120, 80, 40),
]
SKIN = [(245, 210, 180), (225, 180, 140), (190, 140, 100), (140, 95, 65), (95, 65, 45)]
HAIR = [(20, 15, 10), (60, 40, 20), (120, 80, 40), (190, 160, 90)]
WHITE_HAIR = (235, 235, 230)  # every old person's
# Bags and hats: colours that stand out, drawn with a dark outline.
CARRY_RGB = [
    (35, 35, 40),
    (125, 70, 30),
    (180, 35, 45),
    (30, 55, 135),
    (210, 185, 135),
    (75, 105, 55),
]
HAT_RGB = [(200, 55, 40), (30, 50, 140), (215, 195, 150), (240, 240, 235), (85, 110, 50)]

# Marginal frequencies (value order as in the schema): skewed like Market-1501, yet every value
# common enough among a few hundred identities to be learnable: binary minorities >= 20%, every
# colour (and "none") >= 4%, every age class >= 15%.
PRIORS = {
    "hat": [0.75, 0.25],
    "upper.color": [0.08, 0.20, 0.18, 0.12, 0.06, 0.06, 0.12, 0.12, 0.06],
    "upper.sleeve": [0.35, 0.65],
    "lower.color": [0.05, 0.30, 0.07, 0.05, 0.04, 0.04, 0.12, 0.23, 0.04, 0.06],
    "lower.length": [0.7, 0.3],
    "gender": [0.5, 0.5],
    "age": [0.15, 0.25, 0.45, 0.15],
    "backpack": [0.7, 0.3],
    "bag": [0.75, 0.25],
    "handbag": [0.8, 0.2],
}
# Attributes that follow gender (index = gender code): P(long hair), P(dress).
LONG_HAIR = (0.1, 0.75)
DRESS = (0.0, 0.4)

# SIDs kept out of training (they appear only among test identities), so the benchmark has
# unseen SIDs like the real one: head "hat + long hair", identity "male + young".
RESERVED_FOR_TEST = ({"hat": 1, "hair": 1}, {"gender": 0, "age": 0})


@dataclass(frozen=True)
class Camera:
    """Rendering conditions of one camera."""

    background: tuple[int, int, int]
    clutter: int
    brightness: float
    contrast: float
    cast: tuple[float, float, float]
    scale: float
    placement: str  # "centre", "low" (empty margin above) or "high" (margin below)
    blur: float
    noise: float


def make_cameras(num_cameras: int, seed: int) -> list[Camera]:
    rng = np.random.default_rng([seed, 999_999])
    placements = ["centre", "low", "centre", "high", "centre", "low", "high", "centre"]
    cams = []
    for c in range(num_cameras):
        cams.append(
            Camera(
                background=tuple(int(v) for v in rng.integers(60, 200, 3)),
                clutter=int(rng.integers(2, 14)),
                brightness=float(rng.uniform(0.7, 1.2)),
                contrast=float(rng.uniform(0.75, 1.15)),
                cast=tuple(float(v) for v in rng.uniform(0.85, 1.15, 3)),
                scale=float(rng.uniform(0.8, 0.97)),
                placement=placements[c % len(placements)],
                blur=float(rng.uniform(0.0, 1.0)),
                noise=float(rng.uniform(2, 9)),
            )
        )
    return cams


@dataclass(frozen=True)
class IdentityDetails:
    """What no attribute names: it tells apart persons with identical attributes."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shoes: tuple[int, int, int]
    tint: tuple[int, int, int]
    logo: tuple[float, float, float, tuple[int, int, int]] | None  # x, y, size, colour
    stripe: tuple[float, float, tuple[int, int, int]] | None  # y, height, colour
    width: float
    height: float
    pattern: tuple[tuple[int, int, int], tuple[int, int, int]]
    carry_colour: tuple[int, int, int]
    hat_colour: tuple[int, int, int]


def sample_details(rng: np.random.Generator, values: np.ndarray) -> IdentityDetails:
    def colour(lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
        return tuple(int(v) for v in rng.integers(lo, hi, 3))

    old = values[COL["age"]] == 3
    return IdentityDetails(
        skin=SKIN[int(rng.integers(len(SKIN)))],
        hair=WHITE_HAIR if old else HAIR[int(rng.integers(len(HAIR)))],
        shoes=colour(10, 240),
        tint=tuple(int(v) for v in rng.integers(-18, 19, 3)),
        logo=(
            float(rng.uniform(0.3, 0.7)),
            float(rng.uniform(0.25, 0.7)),
            float(rng.uniform(0.12, 0.25)),
            colour(),
        )
        if rng.random() < 0.6
        else None,
        stripe=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.06, 0.15)), colour())
        if rng.random() < 0.5
        else None,
        width=float(rng.uniform(0.94, 1.06)),
        height=float(rng.uniform(0.97, 1.03)),
        pattern=(colour(60, 220), colour(60, 220)),
        carry_colour=CARRY_RGB[int(rng.integers(len(CARRY_RGB)))],
        hat_colour=HAT_RGB[int(rng.integers(len(HAT_RGB)))],
    )


def sample_attributes(n: int, rng: np.random.Generator, *, allow_reserved: bool) -> np.ndarray:
    """``n`` independent rows of Market attribute values drawn from :data:`PRIORS`.

    Reserved (test-only) SIDs are redrawn unless ``allow_reserved``. Used for distractors; the
    train and test identities use :func:`balanced_attributes`.
    """
    rows = np.zeros((n, SCHEMA.num_attributes), dtype=np.int64)
    for i in range(n):
        while True:
            v = np.zeros(SCHEMA.num_attributes, dtype=np.int64)
            for name, p in PRIORS.items():
                v[COL[name]] = rng.choice(len(p), p=p)
            g = int(v[COL["gender"]])
            v[COL["hair"]] = int(rng.random() < LONG_HAIR[g])
            v[COL["lower.clothes"]] = int(not rng.random() < DRESS[g])
            if allow_reserved or not _is_reserved(v):
                break
        rows[i] = v
    return rows


def _quota_column(n: int, p: list[float], rng: np.random.Generator) -> np.ndarray:
    """``n`` values with counts as close to ``n * p`` as integers allow, in random order."""
    want = np.asarray(p, dtype=np.float64) * n
    counts = np.floor(want).astype(np.int64)
    order = np.argsort(-(want - counts), kind="stable")  # largest remainders first
    counts[order[: n - int(counts.sum())]] += 1
    return rng.permutation(np.repeat(np.arange(len(p)), counts))


def balanced_attributes(n: int, rng: np.random.Generator, *, allow_reserved: bool) -> np.ndarray:
    """``n`` rows of Market attribute values whose value counts follow :data:`PRIORS` exactly.

    Each attribute is drawn as a shuffled column of quotas (hair length and dress within each
    gender), so every value reaches its share of the identities whatever the seed. Without
    ``allow_reserved``, a row showing a reserved SID swaps one attribute value with another row,
    which keeps every count and makes the reserved SIDs unseen.
    """
    rows = np.zeros((n, SCHEMA.num_attributes), dtype=np.int64)
    for name, p in PRIORS.items():
        rows[:, COL[name]] = _quota_column(n, p, rng)
    for g in (0, 1):
        members = np.flatnonzero(rows[:, COL["gender"]] == g)
        k = len(members)
        rows[members, COL["hair"]] = _quota_column(k, [1 - LONG_HAIR[g], LONG_HAIR[g]], rng)
        rows[members, COL["lower.clothes"]] = _quota_column(k, [DRESS[g], 1 - DRESS[g]], rng)
    if not allow_reserved:
        _check_reserved_fit(rows)
        _swap_out_reserved(rows, rng)
    return rows


def unavoidable_reserved_sids(rows: np.ndarray) -> list[str]:
    """The reserved SIDs that no swap can keep out of ``rows`` (n, A): value counts too high.

    Swaps keep the count of every value, and a row can hold at most ``k - 1`` of the ``k``
    values of a reserved SID, so the SID can be absent only if those values occur at most
    ``(k - 1) * n`` times in all. :func:`_swap_out_reserved` succeeds whenever they do. The
    counts of :func:`balanced_attributes` depend on ``n`` alone, not on the seed.
    """
    n = len(rows)
    return [
        "+".join(f"{k}={SCHEMA.attributes[COL[k]].values[x]}" for k, x in reserved.items())
        for reserved in RESERVED_FOR_TEST
        if sum(int((rows[:, COL[k]] == x).sum()) for k, x in reserved.items())
        > (len(reserved) - 1) * n
    ]


def _check_reserved_fit(rows: np.ndarray) -> None:
    if crowded := unavoidable_reserved_sids(rows):
        raise CerberusError(
            f"synthetic: {len(rows)} training identities cannot avoid the test-only SID "
            f"{', '.join(crowded)} (its values are too common at this size); choose another size"
        )


def _swap_out_reserved(rows: np.ndarray, rng: np.random.Generator) -> None:
    """Remove reserved SIDs in place by swapping single attribute values between rows.

    A row loses its reserved SIDs one at a time: a row can show two at once (a boy with a hat
    and long hair is in both), and no single swap clears both. For the SID at hand, each of its
    attributes in turn is swapped with the rows holding another value (in random order). The
    first swap after which row ``i`` shows none of the reserved SIDs it did not still have to
    lose, and the partner row none at all, is kept. Failing that, the first after which neither
    row shows a reserved SID it did not show before (a partner row that is itself still to be
    cleared). Swaps keep every value count; the second rule always finds a partner when the
    counts allow the reserved SIDs to be absent at all (:func:`unavoidable_reserved_sids`).
    """
    for i in range(len(rows)):
        for r, reserved in enumerate(RESERVED_FOR_TEST):
            if _matches(rows[i], reserved) and not _swap_one(rows, i, r, rng):
                raise CerberusError(
                    f"synthetic: cannot keep {reserved} out of {len(rows)} rows "
                    "(too few rows with other values to swap with)"
                )


def _shown(v: np.ndarray) -> set[int]:
    """Indices (in :data:`RESERVED_FOR_TEST`) of the reserved SIDs row ``v`` shows."""
    return {r for r, reserved in enumerate(RESERVED_FOR_TEST) if _matches(v, reserved)}


def _swap_one(rows: np.ndarray, i: int, r: int, rng: np.random.Generator) -> bool:
    """Clear reserved SID ``r`` from row ``i`` by one swap with another row (rules above)."""
    still = _shown(rows[i]) - {r}
    tried = []
    for name in RESERVED_FOR_TEST[r]:
        c = COL[name]
        order = rng.permutation(len(rows))
        tried.append((c, order))
        for j in order:
            if rows[j, c] == rows[i, c]:
                continue
            rows[[i, j], c] = rows[[j, i], c]
            if _shown(rows[i]) <= still and not _shown(rows[j]):
                return True
            rows[[i, j], c] = rows[[j, i], c]  # undo
    for c, order in tried:  # a partner that still has reserved SIDs of its own to lose
        for j in order:
            if rows[j, c] == rows[i, c]:
                continue
            before = _shown(rows[j])
            rows[[i, j], c] = rows[[j, i], c]
            if _shown(rows[i]) <= still and _shown(rows[j]) <= before:
                return True
            rows[[i, j], c] = rows[[j, i], c]
    return False


def _matches(v: np.ndarray, reserved: dict[str, int]) -> bool:
    return all(v[COL[k]] == x for k, x in reserved.items())


def _is_reserved(v: np.ndarray) -> bool:
    return any(_matches(v, r) for r in RESERVED_FOR_TEST)


def _identity_rows(num_train: int, num_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Attribute values (Market schema order) of the train and test identities, (n, A) each.

    A pure function of its arguments. The training rows show no reserved SID; the test rows
    show each of them (given at least two test identities).
    """
    rng = np.random.default_rng([seed, 424_242])
    train = balanced_attributes(num_train, rng, allow_reserved=False)
    test = balanced_attributes(num_test, rng, allow_reserved=True)
    # Make sure each reserved SID really occurs in the test split (row j shows SID j if not).
    for j, reserved in enumerate(RESERVED_FOR_TEST):
        if num_test > j and not any(_matches(r, reserved) for r in test):
            for k, x in reserved.items():
                test[j, COL[k]] = x
    return train, test


# --------------------------------------------------------------------------- rendering


def _shade(rgb: tuple[int, int, int], tint: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + t, 0, 255)) for c, t in zip(rgb, tint))


@dataclass(frozen=True)
class _Build:
    """Body proportions of an age class, as fractions of the person's height (scale-free)."""

    height: float  # of an adult's height: children stay small in any camera
    head: float  # head radius
    shoulder: float  # shoulder width (x the gender's)
    waist: float  # where the legs start
    stoop: float  # forward shift of head and shoulders


AGE_BUILD = (
    _Build(height=0.66, head=0.115, shoulder=0.9, waist=0.57, stoop=0.0),  # young: big head
    _Build(height=0.95, head=0.068, shoulder=0.72, waist=0.47, stoop=0.0),  # teen: lanky
    _Build(height=1.0, head=0.065, shoulder=1.0, waist=0.52, stoop=0.0),  # adult
    _Build(height=0.94, head=0.066, shoulder=1.0, waist=0.54, stoop=0.08),  # old: stooped
)


@dataclass(frozen=True)
class _Figure:
    """Where the body parts of one rendered person are, in canvas pixels."""

    cx: float
    top: float
    ph: float
    neck: float
    waist: float
    shoulder: float
    hip: float
    head_r: float
    lean: float  # horizontal offset of the shoulders (stoop)
    arm_w: float

    def y(self, f: float) -> float:
        """Canvas row of height fraction ``f`` (0 = top of head, 1 = soles)."""
        return self.top + f * self.ph

    def t(self, f: float) -> float:
        """Canvas row of torso fraction ``f`` (0 = shoulders, 1 = waist)."""
        return self.neck + f * (self.waist - self.neck)

    def hand(self, side: int) -> tuple[float, float]:
        """Lower end of the arm on ``side`` (-1 back, +1 front)."""
        x = self.cx + self.lean * 0.5 + side * (self.shoulder / 2 + self.arm_w * 0.4)
        return x, self.t(0.95)


def _figure(v: dict[str, int], details: IdentityDetails, camera: Camera, H: int, W: int, rng):
    build = AGE_BUILD[v["age"]]
    ph = H * camera.scale * details.height * build.height * float(rng.uniform(0.97, 1.03))
    if camera.placement == "low":
        top = H - ph * 1.02 + float(rng.uniform(-2, 6)) * 2
    elif camera.placement == "high":
        top = float(rng.uniform(0.0, 0.04)) * H
        ph *= 0.82
    else:
        top = (H - ph) / 2 + float(rng.uniform(-3, 3)) * 2
    female = v["gender"] == 1
    shoulder = ph * (0.30 if female else 0.36) * details.width * build.shoulder
    neck = top + ph * (2 * build.head + 0.03)
    return _Figure(
        cx=W / 2 + float(rng.uniform(-4, 4)) * 2,
        top=top,
        ph=ph,
        neck=neck,
        waist=top + ph * build.waist,
        shoulder=shoulder,
        hip=ph * (0.26 if female else 0.24) * details.width * min(1.0, build.shoulder + 0.1),
        head_r=ph * build.head,
        lean=ph * build.stoop,
        arm_w=shoulder * 0.2,
    )


def _outline(fig: _Figure) -> int:
    return max(3, int(fig.ph * 0.016))


def _draw_background(d: ImageDraw.ImageDraw, camera: Camera, rng, H: int, W: int) -> None:
    for _ in range(camera.clutter):  # boxes and poles, then a ground band
        x0, y0 = int(rng.integers(0, W)), int(rng.integers(0, H))
        x1, y1 = x0 + int(rng.integers(4, W // 2)), y0 + int(rng.integers(4, H // 3))
        d.rectangle([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(30, 230, 3)))
    d.rectangle([0, int(H * 0.85), W, H], fill=tuple(int(c * 0.7) for c in camera.background))


def _draw_backpack(d: ImageDraw.ImageDraw, f: _Figure, colour) -> None:
    """A pack on the back (the -x side), sticking out past the arm, with a carry loop."""
    x1 = f.cx + f.lean * 0.5 - f.shoulder * 0.1
    x0 = f.cx + f.lean * 0.5 - f.shoulder / 2 - f.arm_w - f.ph * 0.085
    y0, y1 = f.t(0.02), f.t(0.72)
    w = _outline(f)
    d.arc(
        [x0 + f.ph * 0.02, y0 - f.ph * 0.04, x0 + f.ph * 0.08, y0 + f.ph * 0.03],
        180,
        360,
        fill=(15, 15, 15),
        width=w,
    )
    d.rounded_rectangle(
        [x0, y0, x1, y1], radius=int(f.ph * 0.035), fill=colour, outline=(15, 15, 15), width=w
    )
    d.line([(x0 + w, (y0 + y1) / 2), (x0 + f.ph * 0.08, (y0 + y1) / 2)], fill=(15, 15, 15), width=w)


def _draw_straps(d: ImageDraw.ImageDraw, f: _Figure, v: dict[str, int]) -> None:
    w = max(3, int(f.ph * 0.022))
    x = f.cx + f.lean * 0.5
    if v["backpack"]:  # two dark straps over the chest
        for side in (-1, 1):
            sx = x + side * f.shoulder * 0.28
            d.line(
                [(sx, f.t(0.0)), (sx - side * f.ph * 0.01, f.t(0.62))], fill=(15, 15, 15), width=w
            )
    if v["bag"]:  # one light strap across the chest, from the back shoulder to the front hip
        d.line(
            [(x - f.shoulder * 0.42, f.t(0.0)), (x + f.hip * 0.5, f.t(0.82))],
            fill=(245, 245, 240),
            width=w,
        )
        d.line(
            [(x - f.shoulder * 0.42, f.t(0.0)), (x + f.hip * 0.5, f.t(0.82))],
            fill=(15, 15, 15),
            width=max(1, w // 3),
        )


def _draw_bag(d: ImageDraw.ImageDraw, f: _Figure, colour) -> None:
    """A flat shoulder bag on the front hip, over the arm."""
    x0 = f.cx + f.lean * 0.3 + f.hip * 0.3
    d.rectangle(
        [x0, f.t(0.78), x0 + f.ph * 0.15, f.t(0.78) + f.ph * 0.12],
        fill=colour,
        outline=(15, 15, 15),
        width=_outline(f),
    )
    d.line(
        [(x0, f.t(0.78) + f.ph * 0.04), (x0 + f.ph * 0.15, f.t(0.78) + f.ph * 0.04)],
        fill=(15, 15, 15),
        width=_outline(f),
    )


def _draw_handbag(d: ImageDraw.ImageDraw, f: _Figure, colour) -> None:
    """A bag hanging from the back hand by a handle, beside the thigh."""
    hx, hy = f.hand(-1)
    w = _outline(f)
    top, bottom = hy + f.ph * 0.05, hy + f.ph * 0.15
    half_t, half_b = f.ph * 0.045, f.ph * 0.07
    cx = hx - f.ph * 0.03
    d.arc(
        [cx - half_t * 0.8, hy - f.ph * 0.01, cx + half_t * 0.8, top + f.ph * 0.05],
        180,
        360,
        fill=(15, 15, 15),
        width=w,
    )
    d.polygon(
        [(cx - half_t, top), (cx + half_t, top), (cx + half_b, bottom), (cx - half_b, bottom)],
        fill=colour,
        outline=(15, 15, 15),
        width=w,
    )


def _draw_lower(d: ImageDraw.ImageDraw, f: _Figure, v, details, stride: float) -> None:
    colour = _shade(LOWER_RGB[v["lower.color"]] or details.pattern[1], details.tint)
    leg_w = f.hip * 0.42
    for side in (-1, 1):
        lx = f.cx + side * (f.hip * 0.25 + stride * 0.3)
        d.rectangle([lx - leg_w / 2, f.waist, lx + leg_w / 2, f.y(0.95)], fill=details.skin)
        if v["lower.clothes"] == 1:  # pants, down to the knee when short
            knee = f.waist + 0.4 * (f.y(0.95) - f.waist)
            bottom = knee if v["lower.length"] == 1 else f.y(0.94)
            d.rectangle([lx - leg_w / 2 - 1, f.waist - 2, lx + leg_w / 2 + 1, bottom], fill=colour)
            if not v["lower.color"]:  # no single colour: two-tone bands
                _bands(d, f, lx - leg_w / 2 - 1, lx + leg_w / 2 + 1, bottom, details.pattern[0])
        d.ellipse([lx - leg_w * 0.7, f.y(0.94), lx + leg_w * 0.7, f.y(1.0)], fill=details.shoes)
    if v["lower.clothes"] == 0:  # dress: a trapezoid skirt
        legs = f.y(0.95) - f.waist
        hem = f.waist + legs * (0.4 if v["lower.length"] == 1 else 0.8)
        x = f.cx
        d.polygon(
            [
                (x - f.hip * 0.55, f.waist - 4),
                (x + f.hip * 0.55, f.waist - 4),
                (x + f.hip * 0.95, hem),
                (x - f.hip * 0.95, hem),
            ],
            fill=colour,
        )
        if not v["lower.color"]:
            _bands(d, f, x - f.hip * 0.7, x + f.hip * 0.7, hem, details.pattern[0])


def _bands(d: ImageDraw.ImageDraw, f: _Figure, x0: float, x1: float, bottom: float, colour) -> None:
    """Horizontal bands from the waist down to ``bottom``: the look of a garment with no colour."""
    step = max(4, int(f.ph * 0.04))
    for yy in range(int(f.waist), int(bottom) - step, step * 2):
        d.rectangle([x0, yy, x1, yy + step], fill=colour)


def _draw_upper(d: ImageDraw.ImageDraw, f: _Figure, v, details) -> None:
    upper = UPPER_RGB[v["upper.color"]]
    top_colour = _shade(upper, details.tint) if upper else details.pattern[0]
    sx = f.cx + f.lean  # the shoulders lean forward when stooped
    d.polygon(
        [
            (sx - f.shoulder / 2, f.neck),
            (sx + f.shoulder / 2, f.neck),
            (f.cx + f.hip / 2, f.waist),
            (f.cx - f.hip / 2, f.waist),
        ],
        fill=top_colour,
    )
    if upper is None:  # no single colour: a two-tone check
        step = max(4, int(f.ph * 0.05))
        for yy in range(int(f.neck), int(f.waist), step * 2):
            xa = sx + (f.cx - sx) * (yy - f.neck) / (f.waist - f.neck)
            d.rectangle([xa - f.hip / 2, yy, xa + f.hip / 2, yy + step], fill=details.pattern[1])
    if details.stripe is not None:
        sy, sh, sc = details.stripe
        y0 = f.t(sy)
        d.rectangle([f.cx - f.hip / 2, y0, f.cx + f.hip / 2, y0 + sh * (f.waist - f.neck)], fill=sc)
    if details.logo is not None:
        lx, ly, ls, lc = details.logo
        x0 = f.cx - f.hip / 2 + lx * f.hip
        y0 = f.t(ly)
        d.rectangle([x0, y0, x0 + ls * f.hip, y0 + ls * f.hip], fill=lc)
    for side in (-1, 1):  # arms: skin, then the sleeve in the top's colour
        hx, hy = f.hand(side)
        ax = hx
        d.rectangle([ax - f.arm_w / 2, f.t(0.02), ax + f.arm_w / 2, hy], fill=details.skin)
        sleeve_end = f.t(0.3) if v["upper.sleeve"] == 1 else f.t(0.88)
        d.rectangle(
            [ax - f.arm_w / 2 - 1, f.neck, ax + f.arm_w / 2 + 1, sleeve_end], fill=top_colour
        )


def _draw_head(d: ImageDraw.ImageDraw, f: _Figure, v, details) -> None:
    r = f.head_r
    hx, hy = _head_centre(f)
    d.rectangle([hx - r * 0.4, hy, hx + r * 0.4, f.neck + 2], fill=details.skin)  # neck
    d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=details.skin)
    d.chord([hx - r * 1.05, hy - r * 1.1, hx + r * 1.05, hy + r * 0.5], 180, 360, fill=details.hair)
    if v["age"] == 3:  # grey sideburns / beard line make the white hair readable under a hat
        d.rectangle([hx - r * 1.05, hy - r * 0.2, hx - r * 0.6, hy + r * 0.5], fill=details.hair)
    if v["hat"]:  # a crown and a wide brim, outlined
        w = max(2, int(f.ph * 0.01))
        hc = details.hat_colour
        d.ellipse(
            [hx - r * 1.05, hy - r * 1.6, hx + r * 1.05, hy + r * 0.1],
            fill=hc,
            outline=(15, 15, 15),
            width=w,
        )
        d.rectangle(
            [hx - r * 1.7, hy - r * 0.45, hx + r * 1.7, hy - r * 0.1],
            fill=hc,
            outline=(15, 15, 15),
            width=w,
        )


def _head_centre(f: _Figure) -> tuple[float, float]:
    return f.cx + f.lean * 1.6, f.top + f.head_r + f.lean * 0.5


def _draw_long_hair(d: ImageDraw.ImageDraw, f: _Figure, details) -> None:
    """Long hair falls behind the shoulders (drawn before the torso)."""
    hx, hy = _head_centre(f)
    r = f.head_r
    d.rectangle([hx - r * 1.2, hy - r * 0.3, hx + r * 1.2, f.neck + f.ph * 0.06], fill=details.hair)


def _draw_cane(d: ImageDraw.ImageDraw, f: _Figure) -> None:
    hx, hy = f.hand(1)
    w = max(3, int(f.ph * 0.02))
    d.line([(hx, hy - f.ph * 0.02), (hx + f.ph * 0.08, f.y(1.0))], fill=(70, 40, 20), width=w)
    d.line(
        [(hx - f.ph * 0.04, hy - f.ph * 0.02), (hx + f.ph * 0.01, hy - f.ph * 0.02)],
        fill=(70, 40, 20),
        width=w,
    )


def render_person(
    values: np.ndarray,
    details: IdentityDetails,
    camera: Camera,
    rng: np.random.Generator,
    *,
    height: int = 128,
    width: int = 64,
) -> Image.Image:
    """Draw one pedestrian crop following the attribute ``values`` (Market schema order).

    Age shows in proportions the camera scale does not change (a child's large head and short
    body, a teenager's narrow shoulders and long legs, an old person's stoop, white hair and
    cane); bags are outlined shapes at fixed places on the body (a pack on the back, a flat bag
    on the front hip with a strap across the chest, a handbag hanging from the back hand).
    """
    s = 2  # draw at twice the size, then downsample (anti-aliasing)
    H, W = height * s, width * s
    img = Image.new("RGB", (W, H), camera.background)
    d = ImageDraw.Draw(img)
    _draw_background(d, camera, rng, H, W)
    v = {a.name: int(values[i]) for i, a in enumerate(SCHEMA.attributes)}
    fig = _figure(v, details, camera, H, W, rng)
    stride = float(rng.uniform(0.0, 0.08)) * fig.ph
    if v["backpack"]:
        _draw_backpack(d, fig, details.carry_colour)
    if v["hair"]:
        _draw_long_hair(d, fig, details)
    _draw_lower(d, fig, v, details, stride)
    _draw_upper(d, fig, v, details)
    _draw_straps(d, fig, v)
    if v["bag"]:
        _draw_bag(d, fig, _shade(details.carry_colour, (25, 10, -15)))
    if v["handbag"]:
        _draw_handbag(d, fig, _shade(details.carry_colour, (-25, 15, 30)))
    if v["age"] == 3:
        _draw_cane(d, fig)
    _draw_head(d, fig, v, details)

    if rng.random() < 0.5:  # facing the other way
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    if camera.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(camera.blur))
    a = np.asarray(img, dtype=np.float32)
    a = (a - 128) * camera.contrast + 128
    a = a * camera.brightness * np.asarray(camera.cast, dtype=np.float32)
    a = a + rng.normal(0, camera.noise, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def render_junk(camera: Camera, rng: np.random.Generator, *, height: int, width: int):
    """A junk box: background with a fragment of a body (what Market marks -1)."""
    v = sample_attributes(1, rng, allow_reserved=True)[0]
    full = render_person(v, sample_details(rng, v), camera, rng, height=height * 3, width=width)
    y = int(rng.integers(0, height * 2))
    return full.crop((0, y, width, y + height))


# --------------------------------------------------------------------------- benchmark


@dataclass
class SyntheticSummary:
    """What :func:`generate_synthetic` wrote."""

    root: Path
    train_ids: int
    test_ids: int
    images: dict[str, int] = field(default_factory=dict)
    unseen_test_sids: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.images.items())
        return (
            f"{self.train_ids} train / {self.test_ids} test identities; images: {parts}; "
            f"{self.unseen_test_sids} test SIDs unseen in training; {self.seconds:.1f}s"
        )


_KIND_CODE = {"person": 0, "distractor": 1, "junk": 2}


@dataclass(frozen=True)
class _Job:
    pid: int
    values: tuple[int, ...]
    split: str  # "train" or "test"
    kind: str = "person"  # "person", "distractor", "junk"


def _plan(job: _Job, seed: int, num_cameras: int) -> list[tuple[str, int, int]]:
    """``(folder, camera, frame)`` of every image of one identity."""
    rng = np.random.default_rng([seed, job.pid, 1, _KIND_CODE[job.kind]])
    if job.kind != "person":
        return [("bounding_box_test", int(rng.integers(num_cameras)), 0)]
    n_cams = int(rng.integers(2, min(4, num_cameras) + 1))
    cams = sorted(rng.choice(num_cameras, size=n_cams, replace=False).tolist())
    out = []
    for i, c in enumerate(cams):
        n = int(rng.integers(2, 6))
        for k in range(n):
            frame = 100 * i + k
            if job.split == "train":
                out.append(("bounding_box_train", c, frame))
            elif k == 0 and i < 2:
                out.append(("query", c, frame))
            else:
                out.append(("bounding_box_test", c, frame))
    return out


def _render_job(args: tuple[_Job, int, int, int, int, str]) -> list[str]:
    job, seed, num_cameras, height, width, out_dir = args
    cams = make_cameras(num_cameras, seed)
    root = Path(out_dir)
    values = np.asarray(job.values)
    det_rng = np.random.default_rng([seed, job.pid, 2, _KIND_CODE[job.kind]])
    details = sample_details(det_rng, values)
    written = []
    for n, (folder, cam, frame) in enumerate(_plan(job, seed, num_cameras)):
        rng = np.random.default_rng([seed, job.pid, 3, n, _KIND_CODE[job.kind]])
        if job.kind == "junk":
            img = render_junk(cams[cam], rng, height=height, width=width)
            pid_text = "-1"
        else:
            img = render_person(values, details, cams[cam], rng, height=height, width=width)
            pid_text = "0000" if job.kind == "distractor" else f"{job.pid:04d}"
        box = (job.pid % 90) + 1 if job.kind != "person" else 1
        frame_no = frame * 25 + (job.pid if job.kind != "person" else 0) * 1000
        name = f"{pid_text}_c{cam + 1}s1_{frame_no:06d}_{box:02d}.jpg"
        path = root / folder / name
        img.save(path, quality=92)
        written.append(folder)
    return written


MARKER = ".cerberus-synthetic"
"""Written into every generated benchmark: ``overwrite`` only ever replaces folders holding it."""

MAX_TRAIN_IDS, MAX_TEST_IDS = 4999, 5000
"""Train identities are numbered 2, 4, ..., test identities 1, 3, ...: 4 digits in Market names."""


def _check_arguments(
    *,
    num_train_ids: int,
    num_test_ids: int,
    num_cameras: int,
    num_distractors: int,
    num_junk: int,
    height: int,
    width: int,
    seed: int,
    data_format: str,
) -> None:
    """Refuse, before anything is written, every argument the benchmark cannot be made with."""
    if num_train_ids < 2 or num_test_ids < 2:
        raise CerberusError(
            f"synthetic: need at least 2 train and 2 test identities, got "
            f"{num_train_ids} / {num_test_ids}"
        )
    if num_train_ids > MAX_TRAIN_IDS or num_test_ids > MAX_TEST_IDS:
        raise CerberusError(
            f"synthetic: at most {MAX_TRAIN_IDS} train and {MAX_TEST_IDS} test identities "
            f"(4-digit Market identities), got {num_train_ids} / {num_test_ids}"
        )
    if num_train_ids + num_test_ids > 9000:
        raise CerberusError("synthetic: at most 9000 identities (4-digit Market identities)")
    if not 2 <= num_cameras <= 6:
        raise CerberusError(f"synthetic: num_cameras must be 2..6 (Market), got {num_cameras}")
    if not (0 <= num_distractors <= 999 and 0 <= num_junk <= 999):
        raise CerberusError(
            f"synthetic: distractors and junk images must be 0..999 each (Market frame "
            f"numbers), got {num_distractors} / {num_junk}"
        )
    if height < 32 or width < 16:
        raise CerberusError(f"synthetic: image size {height}x{width} is too small (min 32x16)")
    if seed < 0:
        raise CerberusError(f"synthetic: seed {seed}: must be at least 0")
    if data_format not in ("market", "table"):
        raise CerberusError(f"synthetic: format {data_format!r}: must be market or table")


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse an output folder that is neither absent, empty nor (with ``overwrite``) ours."""
    if out.exists() and not out.is_dir():
        raise CerberusError(f"{out}: exists and is not a folder")
    try:
        if not out.exists() or not any(out.iterdir()):
            return
    except OSError as exc:
        raise CerberusError(f"{out}: cannot read the folder ({exc.strerror or exc})") from None
    if not (out / MARKER).is_file():
        raise CerberusError(
            f"{out}: output folder exists and is not empty and holds no synthetic benchmark "
            f"written by cerberus (no {MARKER} file); refusing to delete it, choose a new folder"
        )
    if not overwrite:
        raise CerberusError(
            f"{out}: output folder exists and is not empty (a synthetic benchmark; "
            "add --overwrite to replace it)"
        )


def _start_folder(out: Path) -> tuple[Path, Path | None]:
    """A new hidden folder beside ``out`` to write into, and the first parent folder made for it.

    Returns ``(folder, made)``; ``made`` (or None) is removed again when generation fails.
    """
    made = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise CerberusError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    return tmp, (made if made != out else None)


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``out``; an old benchmark there goes only after that."""
    _check_output(out, overwrite)  # again: something may have appeared meanwhile
    old = None
    try:
        if out.is_dir() and any(out.iterdir()):
            old = out.with_name(f"{tmp.name}.old")
            out.rename(old)
        elif out.is_dir():
            out.rmdir()
        tmp.rename(out)
    except OSError as exc:
        if old is not None and not out.exists():
            old.rename(out)
        reason = exc.strerror or exc
        raise CerberusError(f"{out}: cannot put the benchmark there ({reason})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _to_table(root: Path, cameras: bool) -> None:
    """Turn the Market layout in ``root`` into a table dataset (README: Your own data)."""
    from cerberus.data.datasets import read_dataset
    from cerberus.data.table import write_table_dataset

    write_table_dataset(read_dataset(root, "market1501"), root, cameras=cameras)
    (root / "market_attribute.mat").unlink()


def generate_synthetic(
    out_dir: str | Path,
    *,
    num_train_ids: int = 200,
    num_test_ids: int = 200,
    num_cameras: int = 6,
    num_distractors: int = 60,
    num_junk: int = 30,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
    num_workers: int = 2,
    overwrite: bool = False,
    data_format: str = "market",
    camera_column: bool = True,
) -> SyntheticSummary:
    """Write the synthetic benchmark (Market-1501 layout + ``market_attribute.mat``).

    Train identities are numbered 2, 4, 6, ..., test identities 1, 3, 5, ...; every test
    identity has queries in up to two of its cameras and gallery images in all of them.
    ``data_format="table"`` writes the same crops as a table dataset instead (images.csv,
    attributes.csv, schema.yaml; ``camera_column=False`` leaves the cameras out).

    Bad arguments are refused before anything is written. The files are written into a hidden
    folder beside ``out_dir`` and renamed to it when complete, so a failed or interrupted run
    leaves no output (and, with ``overwrite``, the previous benchmark in place).
    """
    out = Path(out_dir)
    _check_arguments(
        num_train_ids=num_train_ids,
        num_test_ids=num_test_ids,
        num_cameras=num_cameras,
        num_distractors=num_distractors,
        num_junk=num_junk,
        height=height,
        width=width,
        seed=seed,
        data_format=data_format,
    )
    _check_output(out, overwrite)
    train_rows, test_rows = _identity_rows(num_train_ids, num_test_ids, seed)
    t0 = time.perf_counter()
    tmp, made = _start_folder(out)
    try:
        summary = _write_benchmark(
            tmp,
            train_rows,
            test_rows,
            num_cameras=num_cameras,
            num_distractors=num_distractors,
            num_junk=num_junk,
            size=(height, width),
            seed=seed,
            num_workers=num_workers,
        )
        if data_format == "table":
            _to_table(tmp, camera_column)
        _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)  # only empty folders made for the output
        raise
    summary.root = out
    summary.seconds = time.perf_counter() - t0
    return summary


def _write_benchmark(
    out: Path,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    num_cameras: int,
    num_distractors: int,
    num_junk: int,
    size: tuple[int, int],
    seed: int,
    num_workers: int,
) -> SyntheticSummary:
    """Render every image and write ``market_attribute.mat`` into the (new, empty) ``out``.

    ``train_rows`` / ``test_rows``: (n, A) attribute values; ``size``: (height, width).
    """
    height, width = size
    try:
        for folder in ("bounding_box_train", "bounding_box_test", "query"):
            (out / folder).mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("synthetic benchmark written by cerberus synth\n")
    except OSError as exc:
        raise CerberusError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    num_train_ids, num_test_ids = len(train_rows), len(test_rows)
    train_ids = np.arange(num_train_ids) * 2 + 2
    test_ids = np.arange(num_test_ids) * 2 + 1
    jobs = [_Job(int(p), tuple(int(x) for x in r), "train") for p, r in zip(train_ids, train_rows)]
    jobs += [_Job(int(p), tuple(int(x) for x in r), "test") for p, r in zip(test_ids, test_rows)]
    extra_rng = np.random.default_rng([seed, 31_337])
    extra = sample_attributes(num_distractors, extra_rng, allow_reserved=True)
    jobs += [_Job(i, tuple(int(x) for x in r), "test", "distractor") for i, r in enumerate(extra)]
    jobs += [_Job(i, tuple([0] * SCHEMA.num_attributes), "test", "junk") for i in range(num_junk)]
    args = [(j, seed, num_cameras, height, width, str(out)) for j in jobs]
    if num_workers > 1:
        with ProcessPoolExecutor(num_workers) as pool:
            results = list(pool.map(_render_job, args, chunksize=8))
    else:
        results = [_render_job(a) for a in args]
    counts: dict[str, int] = {}
    for folders in results:
        for f in folders:
            counts[f] = counts.get(f, 0) + 1
    tables = {
        "train": AttributeTable(SCHEMA, train_ids, train_rows),
        "test": AttributeTable(SCHEMA, test_ids, test_rows),
    }
    save_attribute_mat(out / "market_attribute.mat", tables)
    unseen = sum(
        len(set(tables["test"].sids[:, k]) - set(tables["train"].sids[:, k]))
        for k in range(len(GROUPS))
    )
    return SyntheticSummary(
        root=out,
        train_ids=num_train_ids,
        test_ids=num_test_ids,
        images={k: counts.get(k, 0) for k in ("bounding_box_train", "query", "bounding_box_test")},
        unseen_test_sids=unseen,
    )


def describe_values(values: np.ndarray) -> str:
    """A short caption: "female adult, red short-sleeve top, blue long pants, backpack"."""
    v = SCHEMA.describe(values)
    # Colour "none" (no colour field set) is drawn as a two-colour pattern (see UPPER_RGB).
    upper, lower_colour = (
        "patterned" if v[k] == SCHEMA.attributes[COL[k]].none else v[k]
        for k in ("upper.color", "lower.color")
    )
    carry = [k for k in ("backpack", "bag", "handbag") if v[k] == "yes"]
    lower = "dress" if v["lower.clothes"] == "dress" else "pants"
    text = (
        f"{v['gender']} {v['age']}{', hat' if v['hat'] == 'yes' else ''}, {v['hair']} hair; "
        f"{upper} {v['upper.sleeve']}-sleeve top; {lower_colour} {v['lower.length']} {lower}"
    )
    return text + (f"; {', '.join(carry)}" if carry else "")


def _train_attributes(root: Path) -> AttributeTable:
    """The training identities' attributes of a generated benchmark, in either format."""
    from cerberus.data.table import is_table_dataset, read_table_dataset

    if is_table_dataset(root):
        return read_table_dataset(root).train_attributes
    return load_attribute_mat(root / "market_attribute.mat")["train"]


def make_contact_sheet(
    root: str | Path, out_png: str | Path, *, num_ids: int = 10, per_id: int = 8
) -> Path:
    """A PNG grid: one row per training identity (its images across cameras) and a caption."""
    from cerberus.files import atomic_write

    root = Path(root)
    table = _train_attributes(root)
    files = sorted((root / "bounding_box_train").glob("*.jpg"))
    if not files:
        raise CerberusError(f"{root}: no training images for a contact sheet")
    first = Image.open(files[0])
    w, h = first.size
    cap = 14
    sheet = Image.new("RGB", (max(per_id * (w + 2), 420), num_ids * (h + cap + 4)), "white")
    d = ImageDraw.Draw(sheet)
    for row, (pid, values) in enumerate(zip(table.ids[:num_ids], table.values[:num_ids])):
        y = row * (h + cap + 4)
        d.text((2, y), f"{int(pid):04d}: {describe_values(values)}", fill=(0, 0, 0))
        mine = [f for f in files if f.name.startswith(f"{int(pid):04d}_")][:per_id]
        for col, f in enumerate(mine):
            sheet.paste(Image.open(f).convert("RGB"), (col * (w + 2), y + cap))
    return atomic_write(out_png, lambda fh: sheet.save(fh, format="PNG"), "contact sheet")


def make_value_sheet(
    root: str | Path,
    out_png: str | Path,
    *,
    per_value: int = 8,
    crop: tuple[int, int] | None = (96, 48),
) -> Path:
    """A PNG grid with one row per attribute value (``age=old``, ``upper.color=red``, ...).

    Each row shows one training image of each of up to ``per_value`` identities having that
    value, resized to ``crop`` (height, width; the CPU config's input size) so it shows what the
    model sees; ``None`` keeps the stored size. Written atomically.
    """
    from cerberus.files import atomic_write

    root = Path(root)
    table = _train_attributes(root)
    first: dict[int, Path] = {}
    for f in sorted((root / "bounding_box_train").glob("*.jpg")):
        first.setdefault(int(f.name[:4]), f)
    if not first:
        raise CerberusError(f"{root}: no training images for a value sheet")
    h, w = crop or Image.open(next(iter(first.values()))).size[::-1]
    label_w, gap = 150, 2
    rows = [(a, k) for a in SCHEMA.attributes for k in range(len(a.values))]
    sheet = Image.new("RGB", (label_w + per_value * (w + gap), len(rows) * (h + gap)), "white")
    d = ImageDraw.Draw(sheet)
    for r, (attr, k) in enumerate(rows):
        y = r * (h + gap)
        ids = table.ids[table.values[:, COL[attr.name]] == k]
        d.text((4, y + h // 2 - 6), f"{attr.name}={attr.values[k]} ({len(ids)})", fill=(0, 0, 0))
        files = [first[int(p)] for p in ids if int(p) in first][:per_value]
        for c, f in enumerate(files):
            img = Image.open(f).convert("RGB")
            if crop is not None:
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            sheet.paste(img, (label_w + c * (w + gap), y))
    return atomic_write(out_png, lambda fh: sheet.save(fh, format="PNG"), "value sheet")

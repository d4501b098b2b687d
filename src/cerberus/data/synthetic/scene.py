"""Where and when the synthetic pedestrians of the footage walk: cameras, paths and schedule.

A pure function of the settings (:class:`FootageSpec`): no drawing here, only numbers, so the
plan of a run can be inspected and tested on its own (:mod:`cerberus.data.synthetic.footage`
draws it).

- Time runs in *ticks* of one frame (``1 / fps`` s) on a clock shared by all cameras; camera
  ``c`` records ticks ``offset[c] .. offset[c] + frames - 1`` (its frames ``1 .. frames``).
- A person's size follows where the feet are (a flat ground seen from above the heads): the
  height of an adult is :func:`person_height` of the foot row, about 17% of the frame height on
  the far edge of the walkable ground (half-way down the frame) and 44% at the bottom edge.
- A *visit* is one walk through one camera's view: from outside one border (left, right or
  bottom) to outside another, on a gently curved path (a quadratic Bezier curve), at a walking
  pace measured in body heights per second, so it looks the same at any frame size.
- Every person makes one to three visits, in different cameras, in time order, with a transit
  gap between them: the same person reappears in another camera at a known later time.
- Encounters: a visit may be timed to meet an earlier visit in the same camera head on (the
  opposite direction, about the same distance from the camera), so people occlude each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

FAR, NEAR = 0.5, 1.0
"""Foot rows (fractions of the frame height) of the far edge of the ground and the bottom edge."""
FAR_HEIGHT, NEAR_HEIGHT = 0.17, 0.44
"""Adult height (fraction of the frame height) with the feet at :data:`FAR` and :data:`NEAR`."""
PACE = (0.65, 1.0)
"""Walking pace, body heights per second (1.1 to 1.7 m/s for a 1.7 m person)."""
STEP = 0.2
"""Walked distance (body heights) per phase of the walk cycle."""
PHASES = 4
"""Phases of the walk cycle: legs together, apart, wide apart, apart."""
TRANSIT = (1.0, 5.0)
"""Seconds between leaving one camera's view and entering the next one's."""
DEFAULT_START = datetime(2025, 6, 2, 8, 0, 0, tzinfo=timezone.utc)
"""Wall-clock time of the shared clock's tick 0 unless ``--start`` says otherwise."""


@dataclass(frozen=True)
class FootageSpec:
    """Settings of a synthetic footage set (validated by ``check_spec`` in synthetic_footage).

    ``train_ids`` / ``test_ids``: the synthetic benchmark whose test identities walk here
    (``cerberus synth --train-ids --test-ids --seed`` with the same numbers draws the same
    people); ``people`` of them (the first ones) appear.
    """

    cameras: int = 3
    seconds: float = 40.0
    people: int = 30
    width: int = 640
    height: int = 360
    fps: int = 10
    seed: int = 0
    start: datetime = DEFAULT_START
    train_ids: int = 200
    test_ids: int = 200

    @property
    def frames(self) -> int:
        """Frames per camera."""
        return max(1, round(self.seconds * self.fps))


@dataclass
class Visit:
    """One walk of one person through one camera's view.

    Attributes:
        pid: the person (benchmark test identity, odd).
        camera: camera index (0-based).
        start: shared-clock tick of ``feet[0]``.
        feet: (n, 2) float foot point (x, y) in frame pixels, one row per tick.
        heights: (n,) float height in pixels the person's adult body has at each tick.
        phases: (n,) int walk-cycle phase (0 .. PHASES - 1) at each tick.
        facing: +1 walking towards +x (drawn as rendered), -1 towards -x (mirrored).
        sides: (entry, exit) borders, each "left", "right" or "bottom".
        sprite_seed: seed of the body's drawing (the same in every phase of this visit).
    """

    pid: int
    camera: int
    start: int
    feet: np.ndarray
    heights: np.ndarray
    phases: np.ndarray
    facing: int
    sides: tuple[str, str]
    sprite_seed: tuple[int, ...]

    @property
    def end(self) -> int:
        """Tick after the last one."""
        return self.start + len(self.feet)

    @property
    def middle(self) -> int:
        """Tick at which half of the path is walked."""
        return self.start + len(self.feet) // 2


@dataclass
class Plan:
    """Everything that happens: camera clock offsets (ticks) and every visit, by start tick."""

    spec: FootageSpec
    offsets: list[int]
    visits: list[Visit] = field(default_factory=list)

    def window(self, camera: int) -> tuple[int, int]:
        """Shared-clock ticks ``[first, last + 1)`` that ``camera`` records."""
        return self.offsets[camera], self.offsets[camera] + self.spec.frames


def person_height(foot_y: np.ndarray | float, frame_height: int) -> np.ndarray:
    """Adult height in pixels with the feet on row ``foot_y`` (capped below the bottom edge)."""
    rows = np.asarray(foot_y, dtype=np.float64) / frame_height
    rel = np.clip((rows - FAR) / (NEAR - FAR), 0, 1.1)
    return frame_height * (FAR_HEIGHT + (NEAR_HEIGHT - FAR_HEIGHT) * rel)


def _border_point(side: str, foot_y: float, x: float, spec: FootageSpec) -> np.ndarray:
    """A foot point from which a person on ``side`` is just out of view."""
    W, H = spec.width, spec.height
    if side == "bottom":
        return np.array([x, H + float(person_height(H * 1.2, H)) + 2.0])
    half = 0.45 * float(person_height(foot_y, H)) + 2.0  # half a body width, bags included
    return np.array([-half if side == "left" else W + half, foot_y])


_ROUTES = (
    ("left", "right"),
    ("right", "left"),
    ("left", "bottom"),
    ("bottom", "left"),
    ("right", "bottom"),
    ("bottom", "right"),
)
_ROUTE_P = (0.32, 0.32, 0.09, 0.09, 0.09, 0.09)


def _ground_row(rng: np.random.Generator, spec: FootageSpec) -> float:
    return float(rng.uniform(0.58, 0.97)) * spec.height


def _path(
    rng: np.random.Generator,
    spec: FootageSpec,
    sides: tuple[str, str],
    rows: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feet, heights and phases, one per tick, of a walk from border ``sides[0]`` to
    ``sides[1]``; ``rows``: the foot rows at the two ends (drawn when None)."""
    W, H = spec.width, spec.height
    y0, y1 = rows if rows is not None else (_ground_row(rng, spec), _ground_row(rng, spec))
    a = _border_point(sides[0], y0, float(rng.uniform(0.15, 0.85)) * W, spec)
    b = _border_point(sides[1], y1, float(rng.uniform(0.15, 0.85)) * W, spec)
    normal = np.array([-(b - a)[1], (b - a)[0]]) / max(float(np.linalg.norm(b - a)), 1.0)
    bend = float(rng.uniform(-0.12, 0.12)) * float(np.linalg.norm(b - a))
    ctrl = (a + b) / 2 + bend * normal
    ctrl[1] = float(np.clip(ctrl[1], 0.56 * H, 1.1 * H))
    t = np.linspace(0.0, 1.0, 512)[:, None]
    curve = (1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t**2 * b
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    pace = float(rng.uniform(*PACE))
    walked, s, feet = 0.0, 0.0, []
    steps = []
    while s <= arc[-1]:
        x = np.interp(s, arc, curve[:, 0])
        y = np.interp(s, arc, curve[:, 1])
        feet.append((x, y))
        h = float(person_height(y, H))
        steps.append(int(walked / STEP) % PHASES)
        advance = pace * h / spec.fps
        s += advance
        walked += advance / h
    feet_a = np.asarray(feet, dtype=np.float64)
    return feet_a, person_height(feet_a[:, 1], H), np.asarray(steps, dtype=np.int64)


def _new_visit(
    rng: np.random.Generator,
    spec: FootageSpec,
    pid: int,
    camera: int,
    number: int,
    like: Visit | None = None,
) -> Visit:
    """A visit without its start tick; ``like``: walk head on against that visit."""
    if like is None:
        sides = _ROUTES[int(rng.choice(len(_ROUTES), p=_ROUTE_P))]
        feet, heights, phases = _path(rng, spec, sides)
    else:
        sides = (like.sides[1], like.sides[0])
        jitter = rng.uniform(-0.04, 0.04, 2) * spec.height
        ends = like.feet[-1, 1] + jitter[0], like.feet[0, 1] + jitter[1]
        rows = tuple(
            float(np.clip(y, 0.58 * spec.height, 0.97 * spec.height)) if side != "bottom" else y
            for y, side in zip(ends, sides)
        )
        feet, heights, phases = _path(rng, spec, sides, rows)  # type: ignore[arg-type]
    facing = 1 if feet[-1, 0] >= feet[0, 0] else -1
    return Visit(
        pid=pid,
        camera=camera,
        start=0,
        feet=feet,
        heights=heights,
        phases=phases,
        facing=facing,
        sides=sides,
        sprite_seed=(spec.seed, pid, 7, camera, number),
    )


def _inside(tick: int, window: tuple[int, int]) -> bool:
    return window[0] <= tick < window[1]


def _seen(visit: Visit, window: tuple[int, int], need: int) -> bool:
    """Whether ``visit`` spends at least ``need`` ticks (or all of it) in ``window``."""
    overlap = min(visit.end, window[1]) - max(visit.start, window[0])
    return overlap >= min(need, len(visit.feet))


def plan_footage(spec: FootageSpec) -> Plan:
    """Camera offsets and every person's visits (a pure function of ``spec``).

    Person ``k`` (benchmark test identity ``2k + 1``) wants one to three visits in different
    cameras, the first in camera ``k`` while ``k`` is below the number of cameras (every
    camera sees someone). The first visit is half-way through at a random tick of its camera's
    recording or, for half of the later people, meets an earlier visit head on, both half-way
    through, in that visit's camera; each next visit starts a transit gap after the previous
    one ends. A chain is kept when every visit spends at least a second (or all of itself) in
    its camera's recording; else it is drawn again, with fewer visits after a few tries.
    """
    rng = np.random.default_rng([spec.seed, 0xF007])
    frames, fps = spec.frames, spec.fps
    top = min(3 * fps, frames // 4)
    offsets = [0] + [int(rng.integers(0, top + 1)) for _ in range(spec.cameras - 1)]
    plan = Plan(spec=spec, offsets=offsets)
    need = max(1, min(fps, frames))
    for k in range(spec.people):
        pid = 2 * k + 1
        prng = np.random.default_rng([spec.seed, pid, 0xF007])
        want = min(spec.cameras, 1 + int(prng.choice(3, p=(0.25, 0.5, 0.25))))
        order = [int(c) for c in prng.permutation(spec.cameras)]
        if k < spec.cameras:  # every camera sees someone: person k starts in camera k
            order.remove(k)
            order.insert(0, k)
        cams = order[:want]
        chain = None
        for tries in range(60):
            n = max(1, want - tries // 20)
            meet = k >= spec.cameras and prng.random() < 0.5
            chain = _chain(prng, plan, pid, cams[:n], need, encounter=meet)
            if chain is not None:
                break
        if chain is None:  # cannot happen (a single visit placed in its window), kept safe
            chain = _chain(prng, plan, pid, cams[:1], need, encounter=False, anywhere=True)
        assert chain is not None
        plan.visits.extend(chain)
    plan.visits.sort(key=lambda v: (v.start, v.pid))
    return plan


def _chain(
    rng: np.random.Generator,
    plan: Plan,
    pid: int,
    cams: list[int],
    need: int,
    *,
    encounter: bool,
    anywhere: bool = False,
) -> list[Visit] | None:
    """One try at placing the visits of ``pid`` in ``cams`` (None when one is not seen)."""
    spec = plan.spec
    # an earlier visit, met half-way, whose middle its camera records
    others = [v for v in plan.visits if _inside(v.middle, plan.window(v.camera))]
    like = others[int(rng.integers(len(others)))] if encounter and others else None
    if like is not None and like.camera != cams[0]:
        rest = [c for c in cams if c != like.camera]
        cams = [like.camera, *rest[: len(cams) - 1]]
    first = _new_visit(rng, spec, pid, cams[0], 0, like)
    lo, hi = plan.window(cams[0])
    if like is not None:
        first.start = like.middle - len(first.feet) // 2
    else:  # the middle of the walk in the recording
        half = len(first.feet) // 2
        first.start = int(rng.integers(lo - half, hi - half))
    chain = [first]
    for number, cam in enumerate(cams[1:], start=1):
        visit = _new_visit(rng, spec, pid, cam, number)
        visit.start = chain[-1].end + round(float(rng.uniform(*TRANSIT)) * spec.fps)
        chain.append(visit)
    if anywhere or all(_seen(v, plan.window(v.camera), need) for v in chain):
        return chain
    return None

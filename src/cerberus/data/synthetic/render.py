"""Drawing the synthetic pedestrians: cameras, identity details and one crop (method §1).

Attributes show as visible cues (colours, sleeves, bags at fixed places on the body, age in
proportions); identity details no attribute names (skin, logo, stripe, tint, proportions)
tell apart persons with identical attributes; cameras differ in background clutter,
lighting, scale and vertical placement. Pure functions of the given random generators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cerberus.data.synthetic.attributes import COL, SCHEMA, sample_attributes

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
    stride: float | None = None,
    flip: bool | None = None,
) -> Image.Image:
    """Draw one pedestrian crop following the attribute ``values`` (Market schema order).

    ``stride`` (legs apart, a fraction of the person's height, 0..0.08 when drawn) and ``flip``
    (facing -x instead of +x) are drawn from ``rng`` unless given; the generator is used the same
    way either way, so a given ``rng`` state draws the same body whatever is fixed.

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
    drawn_stride = float(rng.uniform(0.0, 0.08))
    stride_px = (drawn_stride if stride is None else stride) * fig.ph
    if v["backpack"]:
        _draw_backpack(d, fig, details.carry_colour)
    if v["hair"]:
        _draw_long_hair(d, fig, details)
    _draw_lower(d, fig, v, details, stride_px)
    _draw_upper(d, fig, v, details)
    _draw_straps(d, fig, v)
    if v["bag"]:
        _draw_bag(d, fig, _shade(details.carry_colour, (25, 10, -15)))
    if v["handbag"]:
        _draw_handbag(d, fig, _shade(details.carry_colour, (-25, 15, 30)))
    if v["age"] == 3:
        _draw_cane(d, fig)
    _draw_head(d, fig, v, details)

    flipped = rng.random() < 0.5
    if flipped if flip is None else flip:  # facing the other way (-x)
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

"""A busy counter as its camera films it: the frames a motion gate has to get right.

A generated, reproducible stream of 640x480 Y planes at 15 fps, with what a
counter camera sees in a shop: a cluttered counter, people walking past
behind the customer (some stop and queue, swaying; their clothes patterned), light that flickers
(mains-driven lamps beating with the frame rate) and now and then dims, glare
(a reflection flashing up on the counter), sensor noise — and a customer
showing a member card about every 20 s: brought up from below (moving, so
blurred), held 1-2 s with a trembling hand, taken away. Some cards are held
close (QR modules 4-6 px), some far (2-3 px), tilted, some with glare on them.

Each frame comes with the truth about it (:class:`Shot`): which card is in
view, and since when it has been held still, so a test or benchmark can ask
whether the card was read, and how soon after it was still. Cards are held in
:data:`CARD_AREA` of the frame, the middle of the view, where a customer holds
a card up to a counter camera.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kiosk.ops.cards import qr_card

SIZE = (640, 480)
FPS = 15.0
CARD_AREA = (0.25, 0.15, 0.75, 0.85)
"""Where customers hold their cards (left, top, right, bottom as shares of the frame)."""


@dataclass(frozen=True)
class Shot:
    """One frame and the truth about it."""

    at: float
    """Seconds since the stream began."""
    plane: np.ndarray
    code: str
    """The card in view ("" when none)."""
    showing: int
    """Which showing the card belongs to (-1: none in view)."""
    still_since: float | None
    """When the card in view came to rest (None: none, or still moving)."""


@dataclass
class _Walker:
    x: float
    speed: float  # pixels a frame
    top: int
    width: int
    height: int
    shade: int
    clothes: np.ndarray  # the pattern of their clothes, out of focus
    pause_at: float | None  # where (x) a queuing customer stops, if they do
    pause_s: float
    paused_since: float | None = None


@dataclass
class _Showing:
    code: str
    start: float
    raise_s: float
    hold_s: float
    lower_s: float
    card: np.ndarray  # grey card image
    mask: np.ndarray  # where the card is (after tilting)
    at: tuple[int, int]  # top-left where it is held
    glare: bool
    tremor: list[tuple[int, int]] = field(default_factory=list)

    @property
    def still_from(self) -> float:
        return self.start + self.raise_s

    @property
    def end(self) -> float:
        return self.start + self.raise_s + self.hold_s + self.lower_s


class CounterFootage:
    """``seconds`` of a busy counter, made frame by frame (reproducible from ``seed``)."""

    def __init__(self, seconds: float, seed: int = 0, card_every_s: float = 20.0,
                 walkers_per_s: float = 0.5) -> None:
        self.seconds = seconds
        self._rng = np.random.default_rng(seed)
        self._background = self._counter()
        self._noise = [self._rng.normal(0, 2.5, (SIZE[1], SIZE[0])).astype(np.float32)
                       for _ in range(8)]
        self._walkers: list[_Walker] = []
        self._walkers_per_s = walkers_per_s
        self.showings = self._plan_showings(card_every_s)
        self._glares = self._plan_glares()
        self._dims = self._plan_dims()

    @property
    def frames(self) -> int:
        """How many frames the stream has."""
        return int(self.seconds * FPS)

    def __iter__(self) -> Iterator[Shot]:
        rng = self._rng
        for n in range(self.frames):
            t = n / FPS
            image = self._background.copy()
            if rng.random() < self._walkers_per_s / FPS:
                self._walkers.append(self._walker())
            self._walk(image, t)
            for x, y, radius, start, length in self._glares:
                if start <= t < start + length:
                    _glare(image, x, y, radius)
            code, showing, still_since = self._card(image, t, n)
            image *= self._light(t)
            image += self._noise[n % len(self._noise)]
            plane = np.clip(image, 0, 255).astype(np.uint8)
            yield Shot(t, plane, code, showing, still_since)

    # --- the scene ---------------------------------------------------------------------------

    def _counter(self) -> np.ndarray:
        """A counter seen from the till: shelves stocked with goods and price labels behind,
        clutter on the counter top, a little out of focus (the camera focuses at arm's
        length, where cards are held)."""
        rng = self._rng
        width, height = SIZE
        canvas = Image.new("L", SIZE, 150)
        draw = ImageDraw.Draw(canvas)
        for _ in range(40):  # shelving, posters, a fridge door
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height * 2 // 3))
            w, h = int(rng.integers(20, 160)), int(rng.integers(10, 90))
            draw.rectangle((x, y, x + w, y + h), fill=int(rng.integers(60, 230)))
        for _ in range(260):  # packets and tins on the shelves
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height * 3 // 4))
            w, h = int(rng.integers(6, 30)), int(rng.integers(10, 40))
            draw.rectangle((x, y, x + w, y + h), fill=int(rng.integers(20, 250)))
        draw.rectangle((0, height * 3 // 4, width, height), fill=175)  # the counter top
        for _ in range(40):  # receipts, a pen, a card terminal, coins
            x, y = int(rng.integers(0, width)), int(rng.integers(height * 3 // 4, height))
            w, h = int(rng.integers(4, 90)), int(rng.integers(4, 40))
            draw.rectangle((x, y, x + w, y + h), fill=int(rng.integers(30, 250)))
        for _ in range(60):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            draw.text((x, y), "OFFER 2.99", fill=int(rng.integers(0, 90)))
        canvas = canvas.filter(ImageFilter.GaussianBlur(0.8))
        return np.asarray(canvas, dtype=np.float32)

    def _light(self, t: float) -> float:
        """Lamps beating with the frame rate (a few per cent, about 1.3 Hz) and now and then
        the light dimming or brightening by a tenth (a cloud, a lamp switched)."""
        level = 1.0 + 0.04 * math.sin(2 * math.pi * 1.3 * t) + 0.02 * math.sin(7.1 * t)
        for start, change in self._dims:
            if t >= start:
                level *= 1.0 + change * min(1.0, (t - start) / 2.0)
        return level

    def _plan_dims(self) -> list[tuple[float, float]]:
        rng = self._rng
        return [(float(rng.uniform(0, self.seconds)), float(rng.choice([-0.1, 0.1])))
                for _ in range(max(1, int(self.seconds / 40)))]

    def _plan_glares(self) -> list[tuple[int, int, int, float, float]]:
        """Reflections flashing up (a door, a car outside): about one every 10 s."""
        rng = self._rng
        glares = []
        for _ in range(int(self.seconds / 10)):
            glares.append((int(rng.integers(40, SIZE[0] - 40)), int(rng.integers(40, SIZE[1] - 40)),
                           int(rng.integers(15, 45)), float(rng.uniform(0, self.seconds)),
                           float(rng.uniform(0.3, 1.5))))
        return glares

    # --- people walking past -----------------------------------------------------------------

    def _walker(self) -> _Walker:
        rng = self._rng
        width = int(rng.integers(70, 150))
        leftwards = rng.random() < 0.5
        pause_at = float(rng.uniform(100, SIZE[0] - 100)) if rng.random() < 0.25 else None
        return _Walker(x=SIZE[0] + width if leftwards else -width,
                       speed=float(rng.uniform(10, 28)) * (-1 if leftwards else 1),
                       top=int(rng.integers(10, 170)), width=width,
                       height=int(rng.integers(250, 420)), shade=int(rng.integers(25, 120)),
                       clothes=_clothes(rng), pause_at=pause_at,
                       pause_s=float(rng.uniform(1.0, 4.0)))

    def _walk(self, image: np.ndarray, t: float) -> None:
        for walker in list(self._walkers):
            if walker.pause_at is not None and walker.paused_since is None \
                    and abs(walker.x - walker.pause_at) < abs(walker.speed):
                walker.paused_since = t  # a customer queuing: stands, sways a little
            if walker.paused_since is not None and t - walker.paused_since < walker.pause_s:
                sway = 2.0 * math.sin(2 * math.pi * 0.7 * (t - walker.paused_since))
                _person(image, walker, walker.x + sway)
                continue
            if walker.paused_since is not None:
                walker.pause_at = None
            walker.x += walker.speed
            if walker.x < -walker.width - 10 or walker.x > SIZE[0] + walker.width + 10:
                self._walkers.remove(walker)
                continue
            _person(image, walker, walker.x)

    # --- customers showing cards -------------------------------------------------------------

    def _plan_showings(self, every_s: float) -> list[_Showing]:
        rng = self._rng
        showings = []
        start = float(rng.uniform(3.0, 8.0))
        n = 0
        while start + 4.0 < self.seconds:
            far = n % 3 == 2
            module = int(rng.integers(2, 4)) if far else int(rng.integers(4, 7))
            code = f"LOY-FOOT{n:04d}"
            card = qr_card(code, module_px=module).convert("L")
            angle = float(rng.uniform(-25, 25))
            mask = Image.new("L", card.size, 255).rotate(angle, expand=True, fillcolor=0)
            card = card.rotate(angle, expand=True, fillcolor=0)
            left, top, right, bottom = CARD_AREA
            x = int(rng.uniform(left * SIZE[0], right * SIZE[0] - card.width))
            y = int(rng.uniform(top * SIZE[1], bottom * SIZE[1] - card.height))
            showing = _Showing(code, start, raise_s=float(rng.uniform(0.3, 0.6)),
                               hold_s=float(rng.uniform(1.0, 2.0)), lower_s=0.4,
                               card=np.asarray(card, dtype=np.float32),
                               mask=np.asarray(mask) > 127, at=(x, y),
                               glare=bool(rng.random() < 0.3))
            showing.tremor = [(int(rng.integers(-1, 2)), int(rng.integers(-1, 2)))
                              for _ in range(int(showing.hold_s * FPS) + 2)]
            showings.append(showing)
            start += every_s + float(rng.uniform(-4.0, 4.0))
            n += 1
        return showings

    def _card(self, image: np.ndarray, t: float, n: int) -> tuple[str, int, float | None]:
        for index, showing in enumerate(self.showings):
            if not showing.start <= t < showing.end:
                continue
            x, y = showing.at
            blur = 0.0
            still_since: float | None = None
            if t < showing.still_from:  # brought up from below the frame
                left = (showing.still_from - t) / showing.raise_s
                y += int(left * (SIZE[1] - y))
                blur = 3.0 * left + 1.0
            elif t < showing.still_from + showing.hold_s:  # held, trembling
                dx, dy = showing.tremor[int((t - showing.still_from) * FPS)]
                x, y = x + dx, y + dy
                still_since = showing.still_from
            else:  # taken away, down
                gone = (t - showing.still_from - showing.hold_s) / showing.lower_s
                y += int(gone * (SIZE[1] - y))
                blur = 3.0 * gone + 1.0
            _paste_card(image, showing, x, y, blur)
            return showing.code, index, still_since
        return "", -1, None


def _person(image: np.ndarray, walker: _Walker, x: float) -> None:
    """A person some metres behind the counter: a head and a body, out of focus."""
    left, width = int(x), walker.width
    head = width // 3
    body_top = walker.top + head
    _fill(image, left + width // 2 - head // 2, walker.top, head, head, walker.shade + 40)
    _fill(image, left, body_top, width, walker.height - head, walker.shade)
    y0, y1 = max(0, body_top), min(SIZE[1], body_top + walker.height - head)
    x0, x1 = max(0, left), min(SIZE[0], left + width)
    if x0 < x1 and y0 < y1:
        pattern = walker.clothes[y0 - body_top:y1 - body_top, x0 - left:x1 - left]
        image[y0:y1, x0:x1] += pattern[:y1 - y0, :x1 - x0]


def _clothes(rng: np.random.Generator) -> np.ndarray:
    """Checks, prints or creases: a pattern of patches, blurred as a person metres behind
    the focus is."""
    patches = Image.fromarray(rng.integers(0, 60, (48, 16), dtype=np.uint8)).resize(
        (160, 480), Image.Resampling.NEAREST)
    return np.asarray(patches.filter(ImageFilter.GaussianBlur(2.5)), dtype=np.float32) - 30


def _fill(image: np.ndarray, x: int, y: int, width: int, height: int, shade: float) -> None:
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(SIZE[0], x + width), min(SIZE[1], y + height)
    if x0 < x1 and y0 < y1:
        image[y0:y1, x0:x1] = shade


def _glare(image: np.ndarray, x: int, y: int, radius: int) -> None:
    """A soft saturated spot: light reflected off glass or a glossy counter."""
    y0, y1 = max(0, y - 2 * radius), min(SIZE[1], y + 2 * radius)
    x0, x1 = max(0, x - 2 * radius), min(SIZE[0], x + 2 * radius)
    ys, xs = np.ogrid[y0:y1, x0:x1]
    spot = 255.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2.0 * radius ** 2))
    image[y0:y1, x0:x1] = np.maximum(image[y0:y1, x0:x1], spot)


def _paste_card(image: np.ndarray, showing: _Showing, x: int, y: int, blur: float) -> None:
    card, mask = showing.card, showing.mask
    if blur:
        card = np.asarray(Image.fromarray(card.astype(np.uint8)).filter(
            ImageFilter.BoxBlur(blur)), dtype=np.float32)
    height, width = card.shape
    y1, x1 = min(SIZE[1], y + height), min(SIZE[0], x + width)
    if y >= y1 or x >= x1:
        return
    card, mask = card[:y1 - y, :x1 - x], mask[:y1 - y, :x1 - x]
    hand_top = y + height * 2 // 3  # the fingers below the card
    _fill(image, x + width // 4, hand_top, width // 2, height // 2 + 40, 165)
    region = image[y:y1, x:x1]
    region[mask] = card[mask] * 0.9 + 15  # a printed card: never quite black or white
    if showing.glare:  # a glossy card catching the light across one corner
        ys, xs = np.ogrid[0:y1 - y, 0:x1 - x]
        shine = 70.0 * np.clip(1.0 - (xs + ys) / (0.6 * (width + height)), 0, 1)
        region[mask] = np.minimum(255.0, region[mask] + np.broadcast_to(shine, mask.shape)[mask])

"""Makes the README's pictures of the screens from the real renderer.

    .venv/bin/python tools/screenshots.py [--out docs/screens]

For each layout and language: a contact sheet of every sample screen
(``sheet-<layout>-<locale>.png``, pixels scaled up so they can be seen), and
for the 128x64 and 128x128 layouts an animated GIF of a reply's story
(``story-<layout>-<locale>.gif``) played frame by frame as the presenter does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from kiosk.counter.screens import Sync, Welcome
from kiosk.ui.catalogue import LOCALES
from kiosk.ui.layouts import Layout
from kiosk.ui.render import render
from kiosk.ui.samples import ALICE, LAYOUTS, SCREENS, SETTLED_FRAME, STORE
from kiosk.ui.story import story

SCALE = 2
GAP = 6
LABEL = 12
OFF_GLASS = (24, 24, 32)


def _shown(image: Image.Image, scale: int = SCALE) -> Image.Image:
    """A frame as the panel shows it: lit mono pixels in OLED white-blue, scaled up."""
    if image.mode == "1":
        image = Image.merge("RGB", [image.convert("L").point(lambda v, c=c: c if v else 0)
                                    for c in (200, 230, 255)])
    return image.convert("RGB").resize((image.width * scale, image.height * scale),
                                       Image.Resampling.NEAREST)


def sheet(layout: Layout, locale: str) -> Image.Image:
    """Every sample screen in ``layout``, labelled, four to a row."""
    columns = 4 if layout.width <= 128 else 2
    cell_w, cell_h = layout.width * SCALE + GAP, layout.height * SCALE + GAP + LABEL
    rows = -(-len(SCREENS) // columns)
    out = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), (60, 60, 80))
    draw = ImageDraw.Draw(out)
    for index, (name, screen) in enumerate(SCREENS.items()):
        x = GAP + index % columns * cell_w
        y = GAP + index // columns * cell_h
        draw.text((x, y), name, fill=(220, 220, 220))
        out.paste(_shown(render(screen, layout, locale=locale, store=STORE,
                                frame=SETTLED_FRAME)), (x, y + LABEL))
    return out


def story_gif(layout: Layout, locale: str, path: Path, step_s: float = 0.1) -> None:
    """A reply's story as an animated GIF, at the presenter's moments and frame rates."""
    frames = []
    for moment in story(Welcome(ALICE, Sync.SYNCED)):
        seconds = moment.seconds if moment.seconds is not None else 2.0
        for tick in range(round(seconds / step_s)):
            frame = int(tick * step_s / moment.frame_s) if moment.frame_s else 0
            frames.append(_shown(render(moment.screen, layout, locale=locale, store=STORE,
                                        frame=frame), 3))
    frames[0].save(path, save_all=True, append_images=frames[1:],
                   duration=round(step_s * 1000), loop=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screens")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, layout in LAYOUTS.items():
        for locale in LOCALES:
            sheet(layout, locale).save(out / f"sheet-{name}-{locale}.png", optimize=True)
            if name in ("mono-128x64", "colour-128x128"):
                story_gif(layout, locale, out / f"story-{name}-{locale}.gif")
    print(f"screens written to {out}/")


if __name__ == "__main__":
    main()

"""Every stored figure shows something: no image output, and no framed panel in one, is a flat colour.

A figure whose text says "black: yes" over a panel that is blank white tells the reader the
opposite of what the page computed (``imshow`` of an all-True array auto-scales it to the
colormap's lowest colour). nbval does not compare images, so this reads every PNG stored in
chapters/ and solutions/ and fails on

- an image that is a single colour, and
- a panel inside it that is: a box drawn by the axes' dark spines whose whole interior is one
  colour other than the spines' own (a blank white ``imshow`` or an empty plot).
"""

from __future__ import annotations

import base64
import io

import matplotlib.image
import nbformat
import numpy as np
import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted([*ROOT.glob("chapters/**/*.ipynb"), *ROOT.glob("solutions/*.ipynb")])
FLAT = 3 / 255  # the largest max - min, per channel, that still counts as one colour
MIN_SIDE = 20  # pixels: smaller boxes (legend markers, colour swatches) are not panels


def _relative(path) -> str:
    return path.relative_to(ROOT).as_posix()


def _images(path):
    """(cell index, RGB float array (H, W, 3) in [0, 1]) for every PNG output of the notebook."""
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            png = output.get("data", {}).get("image/png")
            if png:
                pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(png)), format="png")
                yield index, np.asarray(pixels, dtype=float)[..., :3]


def _is_flat(pixels) -> bool:
    return bool((pixels.reshape(-1, 3).max(0) - pixels.reshape(-1, 3).min(0)).max() <= FLAT)


def _runs(line):
    """(start, stop) of each run of True in a 1-d bool array that is at least MIN_SIDE long."""
    padded = np.concatenate([[False], line, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= MIN_SIDE]


def flat_panels(pixels) -> list[tuple[int, int, int, int]]:
    """Boxes (top, left, bottom, right) framed by dark lines whose interior is one colour.

    A spine is a straight run of dark, neutral pixels (matplotlib's black axes frame); a panel is
    a rectangle with such a run on all four sides. Its interior, one pixel in from the frame to
    leave out antialiasing, is flat when it is one colour that differs from the frame's (so the
    inside of a black region of an image, bounded by black, is not mistaken for a blank panel).
    """
    grey = pixels.mean(-1)
    dark = (pixels.max(-1) < 0.35) & (pixels.max(-1) - pixels.min(-1) < 0.1)
    found = []
    horizontal = {y: _runs(dark[y]) for y in range(dark.shape[0])}
    for top, runs in horizontal.items():
        for left, right in runs:
            for bottom in range(top + MIN_SIDE, dark.shape[0]):
                if not any(abs(a - left) <= 1 and abs(b - right) <= 1 for a, b in horizontal[bottom]):
                    continue
                r = right - 1
                if not (dark[top:bottom + 1, left].all() and dark[top:bottom + 1, r].all()):
                    continue
                inside = pixels[top + 2:bottom - 1, left + 2:r - 1]
                if inside.size and _is_flat(inside) and abs(grey[top + 2:bottom - 1, left + 2:r - 1].mean()
                                                             - grey[top, left:right].mean()) > 0.2:
                    found.append((int(top), int(left), int(bottom), int(r)))
                break  # the nearest matching bottom edge closes this box
    return found


def test_flat_panels_finds_a_blank_panel_and_passes_a_drawn_one():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def render(arrays, **imshow):
        fig, axes = plt.subplots(1, len(arrays), figsize=(2 * len(arrays), 2), dpi=80)
        for ax, array in zip(np.atleast_1d(axes), arrays, strict=True):
            ax.imshow(array, cmap="Greys", **imshow)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return np.asarray(matplotlib.image.imread(io.BytesIO(buffer.getvalue()), format="png"), dtype=float)[..., :3]

    all_true = np.ones((8, 8), dtype=bool)
    triangle = np.tril(all_true)
    assert len(flat_panels(render([all_true, triangle]))) == 1  # the auto-scaled all-True panel is blank
    assert flat_panels(render([all_true, triangle], vmin=0, vmax=1)) == []  # fixed scale: black, as the legend says
    assert _is_flat(np.ones((5, 5, 3))) and not _is_flat(render([triangle]))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_relative)
def test_no_stored_image_is_a_flat_colour(path):
    flat = [index for index, pixels in _images(path) if _is_flat(pixels)]
    assert not flat, f"cells {flat} store an image that is a single flat colour"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_relative)
def test_no_panel_of_a_stored_figure_is_blank(path):
    blank = [(index, box) for index, pixels in _images(path) for box in flat_panels(pixels)]
    assert not blank, f"(cell, panel box top/left/bottom/right) blank, a single colour inside its frame: {blank}"

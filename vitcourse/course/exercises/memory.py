"""Exercise 09 (memory): the attention maps of windowed attention, and the largest grid a memory
budget allows.

The chapter page (*What attention costs*) prints the bytes of the attention maps a backward pass
keeps for global attention, ``T * H * L^2 * b``. The exercise asks for what it does not print:

- ``windowed_map_bytes(depth, heads, grid, window, bytes_per_element=4)``: the maps kept when each
  token attends only within its ``window x window`` window of the ``(rows, cols)`` patch grid
  (Swin's local attention): ``rows * cols / window^2`` windows per head, each a ``window^2 x
  window^2`` map;
- ``largest_square_grid(budget_bytes, depth, heads, window=None, bytes_per_element=4)``: the
  largest side ``s`` of a square grid whose maps fit in ``budget_bytes``, global attention when
  ``window`` is None, otherwise windowed (``s`` a multiple of ``window``); 0 when none fits.
"""

from __future__ import annotations

import math

from ...validation import check_int_pair, check_positive_int
from ..contracts import Contract, draw_int
from ..expectations import expect_number, expect_raises

__all__ = ["CONTRACT", "windowed_map_bytes", "largest_square_grid"]

CONTRACT = Contract(
    "09_memory",
    "the attention maps of windowed attention; the largest grid a memory budget allows",
    names={
        "windowed_map_bytes": "(depth, heads, grid, window, bytes_per_element=4)",
        "largest_square_grid": "(budget_bytes, depth, heads, window=None, bytes_per_element=4)",
    },
    reference_answers={
        "windowed_map_bytes": "vitcourse.course.exercises.memory.windowed_map_bytes",
        "largest_square_grid": "vitcourse.course.exercises.memory.largest_square_grid",
    },
)


# ---- the references ------------------------------------------------------------------------------


def windowed_map_bytes(depth: int, heads: int, grid, window: int, bytes_per_element: int = 4) -> int:
    """Bytes of the attention maps of windowed attention, an exact int:
    ``depth * heads * (rows * cols / window^2) * window^4 * b = depth * heads * rows * cols *
    window^2 * b``. Raises ``ValueError`` for non-positive ints or a grid the windows do not tile."""
    for name, value in (("depth", depth), ("heads", heads), ("window", window), ("bytes_per_element", bytes_per_element)):
        check_positive_int(value, name)
    rows, cols = check_int_pair(grid, "grid")
    if rows % window or cols % window:
        raise ValueError(f"window {window} does not tile the grid {(rows, cols)}")
    windows = (rows // window) * (cols // window)
    return depth * heads * windows * (window * window) ** 2 * bytes_per_element


def largest_square_grid(budget_bytes: int, depth: int, heads: int, window: int | None = None,
                        bytes_per_element: int = 4) -> int:
    """The largest side ``s`` (a multiple of ``window`` when given) of a square grid whose attention
    maps fit in ``budget_bytes``: ``T H s^4 b`` for global attention, :func:`windowed_map_bytes`
    otherwise; 0 when none fits. Exact integer arithmetic."""
    for name, value in (("budget_bytes", budget_bytes), ("depth", depth), ("heads", heads),
                        ("bytes_per_element", bytes_per_element)):
        check_positive_int(value, name)
    if window is None:
        tokens = math.isqrt(budget_bytes // (depth * heads * bytes_per_element))  # L with L^2 <= ...
        return math.isqrt(tokens)
    check_positive_int(window, "window")
    tokens = budget_bytes // (depth * heads * window * window * bytes_per_element)  # s^2 <= tokens
    return math.isqrt(tokens) // window * window


# ---- windowed_map_bytes: 5 points -----------------------------------------------------------------


@CONTRACT.clause("windowed_map_bytes", points=2)
def windowed_maps(student, rng):
    """A square grid tiled by windows: T * H * windows * (window^2)^2 * b bytes, an int."""
    window, k = draw_int(rng, 2, 8), draw_int(rng, 2, 9)
    k += k * k == window  # k^2 = w would give rows * cols = w^3: one window's w^4 and w tokens agree
    side = window * k
    args = (draw_int(rng, 1, 24), draw_int(rng, 1, 16), (side, side), window, draw_int(rng, 1, 4))
    expect_number(student.call("windowed_map_bytes", *args), windowed_map_bytes(*args), exact_int=True,
                  name=f"windowed_map_bytes{args}")


@CONTRACT.clause("windowed_map_bytes", points=1)
def non_square_grid(student, rng):
    """A non-square grid (rows != cols), with the default 4 bytes per number."""
    window, a, b = draw_int(rng, 2, 7), draw_int(rng, 1, 4), draw_int(rng, 5, 9)
    b += a * b == window  # rows * cols = w^3 would make two mistakes agree
    grid = (window * a, window * b)
    args = (draw_int(rng, 1, 12), draw_int(rng, 1, 12), grid, window)
    expect_number(student.call("windowed_map_bytes", *args), windowed_map_bytes(*args), exact_int=True,
                  name=f"windowed_map_bytes{args}")


@CONTRACT.clause("windowed_map_bytes", points=1)
def one_window_is_global_attention(student, rng):
    """A window as large as the grid is global attention: T * H * L^2 * b."""
    side = draw_int(rng, 2, 40)
    depth, heads = draw_int(rng, 1, 24), draw_int(rng, 1, 16)
    expected = depth * heads * (side * side) ** 2 * 2
    expect_number(student.call("windowed_map_bytes", depth, heads, (side, side), side, 2), expected, exact_int=True,
                  name=f"windowed_map_bytes({depth}, {heads}, {(side, side)}, {side}, 2)")


@CONTRACT.clause("windowed_map_bytes", points=1)
def rejects_windows_that_do_not_tile(student, rng):
    """A grid the windows do not tile, or a window below 1, raises ValueError."""
    window = draw_int(rng, 3, 7)
    grid = (window * 2, window * 3 + 1)
    expect_raises(lambda: student.call("windowed_map_bytes", 2, 2, grid, window), "ValueError",
                  name=f"windowed_map_bytes(2, 2, {grid}, {window})")
    expect_raises(lambda: student.call("windowed_map_bytes", 2, 2, (4, 4), 0), "ValueError",
                  name="windowed_map_bytes(2, 2, (4, 4), 0)")


# ---- largest_square_grid: 6 points ----------------------------------------------------------------


@CONTRACT.clause("largest_square_grid", points=2)
def largest_windowed_grid(student, rng):
    """Windowed: the largest multiple of the window whose maps fit a random budget."""
    depth, heads, window = draw_int(rng, 1, 24), draw_int(rng, 1, 16), draw_int(rng, 2, 12)
    budget = draw_int(rng, 10**6, 10**10)
    args = (budget, depth, heads, window)
    expected = largest_square_grid(*args)
    assert windowed_map_bytes(depth, heads, (expected,) * 2, window) <= budget if expected else True
    assert windowed_map_bytes(depth, heads, (expected + window,) * 2, window) > budget
    expect_number(student.call("largest_square_grid", *args), expected, exact_int=True,
                  name=f"largest_square_grid{args}")


@CONTRACT.clause("largest_square_grid", points=2)
def largest_global_grid(student, rng):
    """Global attention (window=None): the largest side s with T * H * s^4 * b within the budget."""
    depth, heads, b = draw_int(rng, 1, 24), draw_int(rng, 1, 16), draw_int(rng, 1, 4)
    budget = draw_int(rng, 10**6, 10**12)
    expected = largest_square_grid(budget, depth, heads, None, b)
    assert depth * heads * expected**4 * b <= budget < depth * heads * (expected + 1) ** 4 * b
    expect_number(student.call("largest_square_grid", budget, depth, heads, None, b), expected, exact_int=True,
                  name=f"largest_square_grid({budget}, {depth}, {heads}, None, {b})")


@CONTRACT.clause("largest_square_grid", points=1)
def a_budget_that_fits_exactly(student, rng):
    """A budget equal to the maps of a grid: that grid fits; one byte below global maps beyond 2**53 bytes (floats round there): it does not."""
    depth, heads, window = draw_int(rng, 1, 12), draw_int(rng, 1, 12), draw_int(rng, 2, 8)
    side = window * draw_int(rng, 2, 20)
    budget = windowed_map_bytes(depth, heads, (side, side), window)
    expect_number(student.call("largest_square_grid", budget, depth, heads, window), side, exact_int=True,
                  name=f"largest_square_grid({budget}, {depth}, {heads}, {window}) (the maps of a {side} x {side} grid)")
    budget = depth * heads * side**4 * 4
    expect_number(student.call("largest_square_grid", budget, depth, heads), side, exact_int=True,
                  name=f"largest_square_grid({budget}, {depth}, {heads}) (the global maps of a {side} x {side} grid)")
    # "exact for any budget": past 2**53 a float cannot tell the maps of a grid from one byte less,
    # so a side solved in floats still fits the grid that no longer does. Global attention only:
    # a windowed grid that large has ~10^10 windows, and a correct loop over windows never ends
    depth, heads = draw_int(rng, 12, 24), draw_int(rng, 12, 24)
    side = draw_int(rng, 20_000, 60_000)
    budget = depth * heads * side**4 * 4 - 1
    assert budget > 2**53
    expect_number(student.call("largest_square_grid", budget, depth, heads), side - 1, exact_int=True,
                  name=f"largest_square_grid({budget}, {depth}, {heads}) (one byte below the global maps of a {side} x {side} grid)")


@CONTRACT.clause("largest_square_grid", points=1)
def nothing_fits(student, rng):
    """A budget below the smallest grid's maps gives 0."""
    depth, heads, window = draw_int(rng, 2, 12), draw_int(rng, 2, 12), draw_int(rng, 2, 8)
    budget = windowed_map_bytes(depth, heads, (window, window), window) - 1
    expect_number(student.call("largest_square_grid", budget, depth, heads, window), 0, exact_int=True,
                  name=f"largest_square_grid({budget}, {depth}, {heads}, {window})")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _tiled(grid, window):
    rows, cols = grid
    if window < 1 or rows % window or cols % window:
        raise ValueError("the windows do not tile the grid")
    return rows, cols


@CONTRACT.mistake("windowed_map_bytes", """this is the global attention's count, (rows * cols)^2
    per head: the window seems ignored. With windows, a token attends only to the window^2 tokens
    of its own window.""")
def window_ignored(depth, heads, grid, window, bytes_per_element=4):
    rows, cols = _tiled(grid, window)
    return depth * heads * (rows * cols) ** 2 * bytes_per_element


@CONTRACT.mistake("windowed_map_bytes", """this counts one window's map per head. There are
    (rows / window) * (cols / window) windows, each with its own window^2 x window^2 map.""")
def one_window_only(depth, heads, grid, window, bytes_per_element=4):
    _tiled(grid, window)
    return depth * heads * window**4 * bytes_per_element


@CONTRACT.mistake("windowed_map_bytes", """each query seems to attend to window keys, not
    window^2. A window is window x window tokens: every query in it scores all window^2 of them.""")
def window_side_as_token_count(depth, heads, grid, window, bytes_per_element=4):
    rows, cols = _tiled(grid, window)
    return depth * heads * rows * cols * window * bytes_per_element


@CONTRACT.mistake("largest_square_grid", """this is one step too large: the first side that no
    longer fits. Return the largest side whose maps are at most the budget.""")
def one_step_too_far(budget_bytes, depth, heads, window=None, bytes_per_element=4):
    if min(budget_bytes, depth, heads, bytes_per_element) < 1:
        raise ValueError("not positive")
    step = window or 1
    per_token = depth * heads * bytes_per_element * (window * window if window else 1)
    side = 0
    while True:
        tokens = (side + step) ** 2
        if (tokens * per_token if window else tokens**2 * per_token) > budget_bytes:
            return side + step
        side += step


@CONTRACT.mistake("largest_square_grid", """the side seems solved in floating point (a ** 0.25 or
    math.sqrt): past 2**53 bytes a float rounds the budget, and a grid one byte too large still
    seems to fit. Stay in integers: math.isqrt, or a search that compares exact int byte counts.""")
def float_root(budget_bytes, depth, heads, window=None, bytes_per_element=4):
    if min(budget_bytes, depth, heads, bytes_per_element) < 1:
        raise ValueError("not positive")
    if window is None:
        return int((budget_bytes / (depth * heads * bytes_per_element)) ** 0.25)
    return int((budget_bytes / (depth * heads * window * window * bytes_per_element)) ** 0.5) // window * window


@CONTRACT.mistake("largest_square_grid", """the side is not a multiple of the window: windows must
    tile the grid, so round the side down to a multiple of window.""")
def not_a_multiple_of_the_window(budget_bytes, depth, heads, window=None, bytes_per_element=4):
    if min(budget_bytes, depth, heads, bytes_per_element) < 1:
        raise ValueError("not positive")
    if window is None:
        return math.isqrt(math.isqrt(budget_bytes // (depth * heads * bytes_per_element)))
    return math.isqrt(budget_bytes // (depth * heads * window * window * bytes_per_element))


@CONTRACT.mistake("largest_square_grid", """for global attention the side seems solved from
    s^2 (the tokens) instead of L^2 = s^4 (the map of L = s^2 tokens). The global map of an
    s x s grid has (s^2)^2 entries per head.""")
def global_tokens_not_squared(budget_bytes, depth, heads, window=None, bytes_per_element=4):
    if min(budget_bytes, depth, heads, bytes_per_element) < 1:
        raise ValueError("not positive")
    if window is None:
        return math.isqrt(budget_bytes // (depth * heads * bytes_per_element))
    tokens = budget_bytes // (depth * heads * window * window * bytes_per_element)
    return math.isqrt(tokens) // window * window

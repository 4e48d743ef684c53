"""A page's conclusions, checked in code on every run: ``claim(holds, "what the page concludes")``.

Float results differ between CPUs (Intel or AMD, AVX-512 or AVX2), between CPU and GPU, and
training runs amplify the difference. So a page does not argue from the last digits of its
stored outputs; it states each conclusion as a claim that is checked wherever the notebook runs
(the book's build machine, CI, a student's Colab):

- :func:`claim` -- any condition, e.g. ``claim(pre_ln.min() > post_ln.max(), "Pre-LN trains
  where Post-LN does not", pre_ln=pre_ln, post_ln=post_ln)``;
- :func:`claim_below` / :func:`claim_above` -- a measured value against a bound, printed as the
  bound (``max |row sum - 1| < 1e-12``), never as its last digits;
- :func:`claim_separated` -- one method beats another on every seed, by a margin.

A claim that holds prints one line that is the same on every machine (``✓ statement``), so nbval
compares it; a claim that fails raises :class:`ClaimFailed` naming the claim and the measured
values, so a re-run where the effect is absent stops on that cell instead of printing a page
whose text is no longer true. :func:`seed_summary` formats results over seeds as
``mean ± spread (per seed: ...)``; the nbval sanitizer (tests/nbval_sanitize.cfg) masks exactly
that format, so such a line is compared for its words and backed by a claim for its numbers.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "ClaimFailed",
    "MIN_SEEDS",
    "claim",
    "claim_above",
    "claim_below",
    "claim_separated",
    "seed_summary",
]

MIN_SEEDS = 3  # the fewest runs a result argued from over seeds may rest on
CHECK_MARK = "✓"


class ClaimFailed(AssertionError):
    """A conclusion the page draws does not hold on this run; the message names it and the values."""


def _as_float(value, name: str) -> float:
    """A real number from a Python, numpy or 0-dim torch scalar; anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        item = getattr(value, "item", None)
        if item is None or getattr(value, "ndim", 0) != 0:
            raise TypeError(f"{name} must be a real number (a float, or a numpy/torch scalar), got {value!r}")
        value = item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _as_truth(value) -> bool:
    """``holds`` as a bool; a number or a tensor with several elements is a mistake, not a truth."""
    if isinstance(value, bool):
        return value
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", None) == 0 and "bool" in str(getattr(value, "dtype", "")):
        return bool(item())
    raise TypeError(f"holds must be a bool (a comparison's result), got {type(value).__name__} {value!r}")


def _as_values(values, name: str) -> list[float]:
    """A list of floats from a sequence, numpy array or 1-dim tensor of per-seed results."""
    if isinstance(values, str) or not hasattr(values, "__len__") or getattr(values, "ndim", 1) != 1:
        raise TypeError(f"{name} must be a 1-dim sequence of per-seed results, got {values!r}")
    return [_as_float(v, f"{name}[{i}]") for i, v in enumerate(values)]


def _check_statement(statement) -> str:
    if not isinstance(statement, str) or not statement.strip():
        raise TypeError(f"statement must be a non-empty str saying what the page concludes, got {statement!r}")
    return statement.strip()


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    tolist = getattr(value, "tolist", None)
    return _format(tolist()) if tolist is not None else repr(value)


def claim(holds, statement: str, **measured) -> None:
    """Check one conclusion of the page; print it when it holds, raise :class:`ClaimFailed` otherwise.

    ``holds`` is the condition (a bool, or a 0-dim bool numpy/torch value); ``statement`` says in
    words what it means; ``measured`` are the values it was computed from, reported when it
    fails (never printed when it holds, so the printed line is the same on every machine).
    """
    statement = _check_statement(statement)
    if not _as_truth(holds):
        details = ", ".join(f"{key}={_format(value)}" for key, value in measured.items())
        raise ClaimFailed(f"claim failed: {statement}" + (f"\n  measured: {details}" if details else ""))
    print(f"{CHECK_MARK} {statement}")


def claim_below(value, bound, what: str) -> None:
    """Claim ``value < bound`` and print ``{what} < {bound}``: a residual as a bound, not its digits.

    ``value`` is a real number (a max |difference|, an error); NaN never passes.
    """
    value, bound = _as_float(value, "value"), _as_float(bound, "bound")
    what = _check_statement(what)
    claim(value < bound, f"{what} < {bound:g}", value=value)


def claim_above(value, bound, what: str) -> None:
    """Claim ``value > bound`` and print ``{what} > {bound}``; NaN never passes."""
    value, bound = _as_float(value, "value"), _as_float(bound, "bound")
    what = _check_statement(what)
    claim(value > bound, f"{what} > {bound:g}", value=value)


def claim_separated(higher, lower, statement: str, margin: float = 0.0) -> None:
    """Claim that every seed of ``higher`` beats every seed of ``lower`` by more than ``margin``.

    ``higher`` and ``lower`` are per-seed results (at least :data:`MIN_SEEDS` each), or one of
    them a fixed number (chance level, a closed form). The test is ``min(higher) - max(lower) >
    margin``: stricter than comparing means, so that a claim passing here does not hang on the
    luck of one seed, and the effect it states is larger than the spread between runs.
    """
    statement = _check_statement(statement)
    margin = _as_float(margin, "margin")
    if margin < 0 or math.isnan(margin):
        raise ValueError(f"margin must be >= 0, got {margin}")
    sides = {}
    for name, values in (("higher", higher), ("lower", lower)):
        if isinstance(values, numbers.Real) and not isinstance(values, bool):
            sides[name] = [float(values)]
            continue
        sides[name] = _as_values(values, name)
        if len(sides[name]) < MIN_SEEDS:
            raise ValueError(f"{name} must hold at least {MIN_SEEDS} per-seed results, got {len(sides[name])}")
    gap = min(sides["higher"]) - max(sides["lower"])
    claim(gap > margin, statement, higher=sides["higher"], lower=sides["lower"], gap=gap, margin=margin)


def seed_summary(values, digits: int = 3, percent: bool = False) -> str:
    """``"0.821 ± 0.012 (per seed: 0.805 0.822 0.836)"``: the mean, the spread and every run.

    The spread is the sample standard deviation (``ddof=1``). ``percent=True`` multiplies by 100
    and appends ``%`` to the mean and spread. Needs at least :data:`MIN_SEEDS` values.
    """
    values = _as_values(values, "values")
    if len(values) < MIN_SEEDS:
        raise ValueError(f"values must hold at least {MIN_SEEDS} per-seed results, got {len(values)}")
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise TypeError(f"digits must be an int >= 0, got {digits!r}")
    scale, unit = (100.0, "%") if percent else (1.0, "")
    scaled = [v * scale for v in values]
    mean = sum(scaled) / len(scaled)
    spread = math.sqrt(sum((v - mean) ** 2 for v in scaled) / (len(scaled) - 1))
    runs = " ".join(f"{v:.{digits}f}" for v in scaled)
    return f"{mean:.{digits}f}{unit} ± {spread:.{digits}f}{unit} (per seed: {runs})"

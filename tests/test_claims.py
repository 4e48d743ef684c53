"""Claims: a page's conclusions checked in code. Each kind prints one machine-independent line
when it holds, and fails loudly, naming the claim and the values, on a broken variant."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from vitcourse.course.claims import (
    ClaimFailed,
    claim,
    claim_above,
    claim_below,
    claim_separated,
    seed_summary,
)


def test_claim_prints_the_statement_and_nothing_measured(capsys):
    claim(0.9 > 0.1, "the model beats chance", accuracy=0.9)
    assert capsys.readouterr().out == "✓ the model beats chance\n"


@pytest.mark.parametrize("holds", [np.float64(2.0) > 1.0, torch.tensor(2.0) > 1.0, True])
def test_claim_takes_numpy_and_torch_truths(holds, capsys):
    claim(holds, "two exceeds one")
    assert capsys.readouterr().out.startswith("✓")


def test_a_failed_claim_names_itself_and_the_values():
    accuracies = [0.31, 0.29, 0.30]
    with pytest.raises(ClaimFailed) as failure:
        claim(min(accuracies) > 0.5, "Pre-LN trains at this learning rate", accuracy=accuracies)
    message = str(failure.value)
    assert "Pre-LN trains at this learning rate" in message
    assert "accuracy=[0.31, 0.29, 0.3]" in message
    assert isinstance(failure.value, AssertionError)  # pytest and nbval report it as a failure


@pytest.mark.parametrize("holds", [1.0, torch.tensor([True, True]), "yes", None])
def test_claim_refuses_what_is_not_a_truth(holds):
    with pytest.raises(TypeError, match="holds must be a bool"):
        claim(holds, "something")


@pytest.mark.parametrize("statement", ["", "   ", None, 3])
def test_claim_needs_a_statement(statement):
    with pytest.raises(TypeError, match="statement"):
        claim(True, statement)


def test_bound_prints_the_bound_not_the_digits(capsys):
    # The same residual measured on two CPUs differs in its last digits; the line does not.
    for residual in (2.2e-16, 4.4e-16):
        claim_below(residual, 1e-12, "max |row sum - 1|")
    assert capsys.readouterr().out == "✓ max |row sum - 1| < 1e-12\n" * 2


def test_bound_fails_on_a_broken_variant():
    # A softmax that forgets to normalise: rows no longer sum to one.
    scores = torch.randn(4, 7, dtype=torch.float64)
    broken = scores.exp()
    with pytest.raises(ClaimFailed, match=r"max \|row sum - 1\| < 1e-12"):
        claim_below((broken.sum(dim=1) - 1).abs().max(), 1e-12, "max |row sum - 1|")


def test_bounds_take_tensors_and_refuse_nan_and_non_numbers(capsys):
    claim_above(torch.tensor(0.8), 0.5, "accuracy")
    assert capsys.readouterr().out == "✓ accuracy > 0.5\n"
    with pytest.raises(ClaimFailed, match="value=nan"):
        claim_below(math.nan, 1.0, "error")
    with pytest.raises(ClaimFailed):
        claim_above(math.nan, 1.0, "accuracy")
    with pytest.raises(TypeError, match="value must be a real number"):
        claim_below(torch.ones(3), 1.0, "error")
    with pytest.raises(TypeError, match="bound must be a real number"):
        claim_below(0.1, "1e-3", "error")


def test_separated_holds_only_when_every_seed_beats_every_seed(capsys):
    claim_separated([0.80, 0.83, 0.85], [0.10, 0.11, 0.09], "Pre-LN beats Post-LN on every seed", margin=0.3)
    claim_separated(np.array([0.5, 0.6, 0.7]), 0.1, "every seed beats chance")
    assert capsys.readouterr().out.count("✓") == 2
    # Broken variant: the means differ, but one seed of each overlaps.
    with pytest.raises(ClaimFailed, match="gap=-0.05"):
        claim_separated([0.9, 0.9, 0.6], [0.65, 0.3, 0.3], "A beats B on every seed")
    # Broken variant: separated, but by less than the margin asked for.
    with pytest.raises(ClaimFailed, match="margin=0.1"):
        claim_separated([0.55, 0.56, 0.57], [0.50, 0.51, 0.52], "A beats B by ten points", margin=0.1)


def test_separated_needs_enough_seeds_and_a_valid_margin():
    with pytest.raises(ValueError, match="at least 3 per-seed results"):
        claim_separated([0.9, 0.8], [0.1, 0.2, 0.3], "A beats B")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        claim_separated([0.9, 0.8, 0.7], [0.1, 0.2, 0.3], "A beats B", margin=-1)
    with pytest.raises(TypeError, match="higher must be a 1-dim sequence"):
        claim_separated("0.9", [0.1, 0.2, 0.3], "A beats B")


def test_seed_summary_against_numpy():
    values = [0.805, 0.822, 0.836]
    mean, spread = np.mean(values), np.std(values, ddof=1)
    assert seed_summary(values) == f"{mean:.3f} ± {spread:.3f} (per seed: 0.805 0.822 0.836)"
    assert seed_summary(values, digits=1, percent=True) == (
        f"{100 * mean:.1f}% ± {100 * spread:.1f}% (per seed: 80.5 82.2 83.6)"
    )
    with pytest.raises(ValueError, match="at least 3"):
        seed_summary([0.1, 0.2])


def _sanitizers() -> list[tuple[re.Pattern, str]]:
    """The nbval sanitizer's patterns, parsed from its config file by nbval itself."""
    from nbval.plugin import get_sanitize_patterns

    text = (ROOT / "tests" / "nbval_sanitize.cfg").read_text()
    return [(re.compile(regex), replace) for regex, replace in get_sanitize_patterns(text)]


def _sanitize(text: str) -> str:
    for pattern, replacement in _sanitizers():
        text = pattern.sub(replacement, text)
    return text


def test_the_sanitizer_masks_seed_summaries_and_nothing_else():
    """Two machines' summaries of the same experiment compare equal after sanitising; the words
    around them, and numbers printed in any other form, still compare."""
    here = f"Pre-LN accuracy {seed_summary([0.41, 0.44, 0.39])}, Post-LN {seed_summary([0.1, 0.1, 0.1])}"
    there = f"Pre-LN accuracy {seed_summary([0.25, 0.47, 0.40])}, Post-LN {seed_summary([0.1, 0.1, 0.1])}"
    assert here != there and _sanitize(here) == _sanitize(there)
    percent_here = f"soft: {seed_summary([0.709, 0.69, 0.72], digits=1, percent=True)}"
    percent_there = f"soft: {seed_summary([0.701, 0.68, 0.73], digits=1, percent=True)}"
    assert _sanitize(percent_here) == _sanitize(percent_there)
    assert _sanitize("Post-LN accuracy") != _sanitize("Pre-LN accuracy")
    assert _sanitize("test accuracy 0.436") != _sanitize("test accuracy 0.247")

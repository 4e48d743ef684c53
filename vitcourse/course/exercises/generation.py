"""Exercise 16 (generation): the attention mask of any generation order, in blocks, and the
next-token distribution with a temperature and top-k.

The chapter page (*Generation and the "next patch"*) generates the 16 codes of a digit one at a
time in raster order, through the package's causal attention (``is_causal=True``), and samples
each code from ``softmax(logits / temperature)``. The exercise asks for what generalises both,
which the page does not print:

- ``generation_mask(order, block_size=1)``: ``order`` a permutation of ``range(N)``, ``order[t]``
  the position generated at step ``t``; the steps are grouped into blocks of ``block_size``
  consecutive steps, generated together (the last block may be shorter). The ``(N, N)`` bool mask,
  rows and columns in *position* order, is True where position ``p`` may attend to position ``q``
  (the convention of ``scaled_dot_product_attention``'s boolean ``attn_mask``): when ``q``'s block
  comes no later than ``p``'s. Raster order with blocks of one is the usual causal mask.
  ``ValueError`` when ``order`` is not a permutation of ``range(N)`` or ``block_size < 1``;
- ``next_token_probs(logits, temperature=1.0, top_k=None)``: from ``(B, V)`` logits, the ``(B, V)``
  probabilities to sample the next token from: ``softmax(logits / temperature)`` over the
  ``top_k`` largest logits of each row (the others exactly 0), all of them when ``top_k`` is None
  or at least ``V``; ``temperature == 0`` is greedy decoding, one-hot at each row's largest logit.
  In the logits' dtype. ``ValueError`` for a negative temperature or ``top_k < 1``.
"""

from __future__ import annotations

import math

import torch

from ...validation import check_int, check_real, check_tensor
from ..contracts import Contract, draw_float, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "generation_mask", "next_token_probs"]

CONTRACT = Contract(
    "16_generation",
    "the attention mask of any generation order in blocks; next-token probabilities with temperature and top-k",
    names={
        "generation_mask": "(order, block_size=1)",
        "next_token_probs": "(logits, temperature=1.0, top_k=None)",
    },
    reference_answers={
        "generation_mask": "vitcourse.course.exercises.generation.generation_mask",
        "next_token_probs": "vitcourse.course.exercises.generation.next_token_probs",
    },
)


# ---- the references ------------------------------------------------------------------------------


def generation_mask(order: torch.Tensor, block_size: int = 1) -> torch.Tensor:
    """``order`` ``(N,)``, a permutation of ``range(N)`` (``order[t]``: the position generated at
    step ``t``) -> ``(N, N)`` bool, True where position ``p`` (row) may attend to position ``q``
    (column): ``step(q) // block_size <= step(p) // block_size``, ``step`` the inverse of
    ``order``. Raises ``ValueError`` for an ``order`` that is not a permutation or a
    ``block_size < 1``."""
    check_tensor(order, "order")
    block_size = check_int(block_size, "block_size", "an int >= 1", lambda k: k >= 1)
    n = len(order)
    if order.dim() != 1 or order.is_floating_point() or not torch.equal(order.sort().values, torch.arange(n)):
        raise ValueError(f"order must be a permutation of range({n}), got {order.tolist()}")
    step = torch.empty(n, dtype=torch.long)
    step[order] = torch.arange(n)  # step[p]: when position p is generated
    block = step // block_size
    return block[None, :] <= block[:, None]


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """``(B, V)`` logits -> ``(B, V)`` probabilities in their dtype: ``softmax(logits /
    temperature)`` over each row's ``top_k`` largest logits (0 elsewhere; all when ``top_k`` is
    None or ``>= V``); ``temperature == 0``: one-hot at the row's largest logit. Raises
    ``ValueError`` for ``temperature < 0`` or ``top_k < 1``."""
    check_tensor(logits, "logits")
    temperature = check_real(temperature, "temperature", "a number >= 0", lambda t: t >= 0)
    if top_k is not None:
        top_k = check_int(top_k, "top_k", "None or an int >= 1", lambda k: k >= 1)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    if temperature == 0 or top_k == 1:
        return torch.zeros_like(logits).scatter_(1, logits.argmax(dim=1, keepdim=True), 1.0)
    scaled = logits / temperature
    if top_k is not None and top_k < logits.shape[1]:
        kth = scaled.topk(top_k, dim=1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    return scaled.softmax(dim=1)


# ---- drawing the inputs ---------------------------------------------------------------------------


def _permutation(rng, n):
    return torch.randperm(n, generator=rng)


def _mask_label(order, block_size):
    return f"generation_mask(order={order.tolist()}, block_size={block_size})"


def _logits(rng, dtype=torch.float32):
    """Distinct random logits (no ties), batch 2-5, vocabulary 6-12."""
    batch, vocab = draw_int(rng, 2, 5), draw_int(rng, 6, 12)
    return (3 * torch.randn(batch, vocab, generator=rng, dtype=torch.float64)).to(dtype)


def _probs_label(logits, temperature, top_k):
    return (f"next_token_probs(logits of shape {tuple(logits.shape)} and dtype {logits.dtype}, "
            f"temperature={temperature}, top_k={top_k})")


def _softmax64(logits, temperature, keep=None):
    """softmax(logits / T) in float64 over the entries ``keep`` (bool) of each row, by hand."""
    z = logits.double() / temperature
    if keep is not None:
        z = torch.where(keep, z, torch.tensor(-math.inf, dtype=torch.float64))
    e = (z - z.max(dim=1, keepdim=True).values).exp()
    return (e / e.sum(dim=1, keepdim=True)).to(logits.dtype)


# ---- generation_mask: 7 points --------------------------------------------------------------------


@CONTRACT.clause("generation_mask", points=3)
def random_order(student, rng):
    """A random order, one token per step: p attends to q when q is generated no later than p."""
    order = _permutation(rng, draw_int(rng, 6, 12))
    expected = generation_mask(order)
    rank = {int(p): t for t, p in enumerate(order)}  # independent: pair by pair
    assert expected.tolist() == [[rank[q] <= rank[p] for q in range(len(order))] for p in range(len(order))]
    expect_tensor(student.call("generation_mask", order), expected, name=_mask_label(order, 1))


@CONTRACT.clause("generation_mask", points=2)
def blocks_of_steps(student, rng):
    """A random order in blocks of 2-4 steps (the last may be shorter): whole earlier blocks and the own block."""
    n, block_size = draw_int(rng, 7, 12), draw_int(rng, 2, 4)
    order = _permutation(rng, n)
    got = student.call("generation_mask", order, block_size)
    expect_tensor(got, generation_mask(order, block_size), name=_mask_label(order, block_size))


@CONTRACT.clause("generation_mask", points=1)
def raster_order_is_causal(student, rng):
    """Raster order with blocks of one: the lower triangle, diagonal included (the page's causal mask)."""
    n = draw_int(rng, 3, 10)
    order = torch.arange(n)
    expected = torch.ones(n, n, dtype=torch.bool).tril()
    expect_tensor(student.call("generation_mask", order, 1), expected, name=_mask_label(order, 1))


@CONTRACT.clause("generation_mask", points=1)
def rejects_bad_order_or_block(student, rng):
    """An order that is not a permutation of range(N), or block_size 0, raises ValueError."""
    order = _permutation(rng, draw_int(rng, 4, 8))
    repeated = order.clone()
    repeated[draw_int(rng, 1, len(order) - 1)] = order[0]
    expect_raises(lambda: student.call("generation_mask", repeated, 1), "ValueError", name=_mask_label(repeated, 1))
    expect_raises(lambda: student.call("generation_mask", order, 0), "ValueError", name=_mask_label(order, 0))


# ---- next_token_probs: 7 points -------------------------------------------------------------------


@CONTRACT.clause("next_token_probs", points=3)
def temperature_and_top_k(student, rng):
    """Random logits, temperature and top_k: softmax(logits / T) over each row's k largest, 0 elsewhere."""
    logits = _logits(rng)
    temperature, top_k = draw_float(rng, 0.3, 2.0, digits=2), draw_int(rng, 2, logits.shape[1] - 2)
    expected = next_token_probs(logits, temperature, top_k)
    keep = logits >= logits.sort(dim=1, descending=True).values[:, top_k - 1:top_k]
    expect_tensor(expected, _softmax64(logits, temperature, keep), name="contract bug: reference")
    expect_tensor(student.call("next_token_probs", logits, temperature, top_k), expected,
                  name=_probs_label(logits, temperature, top_k))


@CONTRACT.clause("next_token_probs", points=1)
def temperature_only(student, rng):
    """top_k=None keeps every token: softmax(logits / T)."""
    logits, temperature = _logits(rng), draw_float(rng, 0.3, 3.0, digits=2)
    got = student.call("next_token_probs", logits, temperature, None)
    expect_tensor(got, _softmax64(logits, temperature), name=_probs_label(logits, temperature, None))


@CONTRACT.clause("next_token_probs", points=1)
def greedy(student, rng):
    """temperature 0, or top_k 1 at any temperature: one-hot at each row's largest logit."""
    logits = _logits(rng)
    one_hot = torch.nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1]).float()
    expect_tensor(student.call("next_token_probs", logits, 0.0, None), one_hot, name=_probs_label(logits, 0.0, None))
    temperature = draw_float(rng, 0.5, 2.0, digits=2)
    expect_tensor(student.call("next_token_probs", logits, temperature, 1), one_hot,
                  name=_probs_label(logits, temperature, 1))


@CONTRACT.clause("next_token_probs", points=1)
def float64_and_large_top_k(student, rng):
    """float64 logits keep their dtype; a top_k of V or more keeps every token; the defaults are T=1, no top-k."""
    logits = _logits(rng, torch.float64)
    temperature, top_k = draw_float(rng, 0.5, 2.0, digits=2), logits.shape[1] + draw_int(rng, 0, 3)
    expect_tensor(student.call("next_token_probs", logits, temperature, top_k), next_token_probs(logits, temperature),
                  name=_probs_label(logits, temperature, top_k))
    expect_tensor(student.call("next_token_probs", logits), next_token_probs(logits), name=f"next_token_probs(logits "
                  f"of shape {tuple(logits.shape)} and dtype float64) with the default temperature and top_k")


@CONTRACT.clause("next_token_probs", points=1)
def rejects_bad_temperature_or_top_k(student, rng):
    """A negative temperature, or top_k 0, raises ValueError."""
    logits = _logits(rng)
    temperature = -draw_float(rng, 0.1, 2.0, digits=2)
    expect_raises(lambda: student.call("next_token_probs", logits, temperature, None), "ValueError",
                  name=_probs_label(logits, temperature, None))
    expect_raises(lambda: student.call("next_token_probs", logits, 1.0, 0), "ValueError",
                  name=_probs_label(logits, 1.0, 0))


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _steps(order, block_size):
    """The mistakes' input checks (as the contract asks) and each position's step."""
    n = len(order)
    if block_size < 1 or sorted(order.tolist()) != list(range(n)):
        raise ValueError("order must be a permutation and block_size >= 1")
    step = torch.empty(n, dtype=torch.long)
    step[order] = torch.arange(n)
    return step


@CONTRACT.mistake("generation_mask", """the mask is inverted: True where attention is blocked.
    With scaled_dot_product_attention's boolean attn_mask, True means "may attend" (note that
    nn.MultiheadAttention's bool mask means the opposite).""")
def mask_inverted(order, block_size=1):
    block = _steps(order, block_size) // block_size
    return block[None, :] > block[:, None]


@CONTRACT.mistake("generation_mask", """a position cannot attend to itself or to its own block:
    the comparison is strict. Position p holds a token that is already known when p is read (the
    input is shifted by one), so it may attend to its own block, diagonal included.""")
def own_block_excluded(order, block_size=1):
    block = _steps(order, block_size) // block_size
    return block[None, :] < block[:, None]


@CONTRACT.mistake("generation_mask", """order is used as if order[p] were the step of position p.
    order[t] is the position generated at step t; the step of each position is the inverse
    permutation.""")
def order_not_inverted(order, block_size=1):
    _steps(order, block_size)
    block = order // block_size
    return block[None, :] <= block[:, None]


@CONTRACT.mistake("generation_mask", """the mask is transposed: row p allows the positions
    generated at or *after* p. Rows are the attending positions (queries), columns the attended
    ones (keys).""")
def transposed(order, block_size=1):
    block = _steps(order, block_size) // block_size
    return block[:, None] <= block[None, :]


@CONTRACT.mistake("generation_mask", """the order is ignored: this is the raster-order mask. The
    rows and columns are positions, and whether p may attend to q depends on when each is
    generated, order's inverse.""")
def order_ignored(order, block_size=1):
    _steps(order, block_size)
    block = torch.arange(len(order)) // block_size
    return block[None, :] <= block[:, None]


@CONTRACT.mistake("generation_mask", """block_size is ignored: each step is its own block. The
    tokens of one block are generated together, so each attends to the whole block.""")
def block_size_ignored(order, block_size=1):
    step = _steps(order, block_size)
    return step[None, :] <= step[:, None]


def _checked(logits, temperature, top_k):
    if temperature < 0 or (top_k is not None and top_k < 1):
        raise ValueError("temperature must be >= 0 and top_k >= 1")


def _top_k_filter(scaled, top_k):
    if top_k is None or top_k >= scaled.shape[1]:
        return scaled
    kth = scaled.topk(top_k, dim=1).values[:, -1:]
    return scaled.masked_fill(scaled < kth, -math.inf)


def _greedy(logits):
    return torch.zeros_like(logits).scatter_(1, logits.argmax(dim=1, keepdim=True), 1.0)


@CONTRACT.mistake("next_token_probs", """the temperature is applied after the softmax (the
    probabilities divided by T, then normalised again). It divides the logits, before the
    softmax: softmax(logits / T).""")
def temperature_after_softmax(logits, temperature=1.0, top_k=None):
    _checked(logits, temperature, top_k)
    if temperature == 0 or top_k == 1:
        return _greedy(logits)
    return (_top_k_filter(logits, top_k).softmax(dim=1) / temperature).softmax(dim=1)


@CONTRACT.mistake("next_token_probs", """the logits are multiplied by the temperature. A high
    temperature flattens the distribution: divide the logits by T.""")
def temperature_multiplied(logits, temperature=1.0, top_k=None):
    _checked(logits, temperature, top_k)
    if temperature == 0 or top_k == 1:
        return _greedy(logits)
    return _top_k_filter(logits * temperature, top_k).softmax(dim=1)


@CONTRACT.mistake("next_token_probs", """the probabilities outside the top k are set to 0 after
    the softmax over all tokens, so a row sums to less than 1. Remove the other tokens before the
    softmax (a logit of -inf), or renormalise.""")
def top_k_not_renormalised(logits, temperature=1.0, top_k=None):
    _checked(logits, temperature, top_k)
    if temperature == 0 or top_k == 1:
        return _greedy(logits)
    probs = (logits / temperature).softmax(dim=1)
    return torch.where(torch.isinf(_top_k_filter(logits / temperature, top_k)), 0.0, probs)


@CONTRACT.mistake("next_token_probs", """the k *smallest* logits are kept. top_k keeps the k most
    likely tokens, the largest logits of each row (topk's default, largest=True).""")
def top_k_smallest(logits, temperature=1.0, top_k=None):
    _checked(logits, temperature, top_k)
    if temperature == 0 or top_k == 1:
        return _greedy(logits)
    scaled = logits / temperature
    if top_k is not None and top_k < scaled.shape[1]:
        kth = scaled.topk(top_k, dim=1, largest=False).values[:, -1:]
        scaled = scaled.masked_fill(scaled > kth, -math.inf)
    return scaled.softmax(dim=1)


@CONTRACT.mistake("next_token_probs", """one token too many is kept (k + 1): the k-th largest
    logit is the last one kept. Keep the logits at least as large as the k-th largest.""")
def top_k_plus_one(logits, temperature=1.0, top_k=None):
    _checked(logits, temperature, top_k)
    if temperature == 0:
        return _greedy(logits)
    return _top_k_filter(logits / temperature, None if top_k is None else top_k + 1).softmax(dim=1)


@CONTRACT.mistake("next_token_probs", """temperature 0 is not handled: logits / 0 gives inf and
    nan. At temperature 0 the distribution is one-hot at the largest logit (greedy decoding), the
    limit of softmax(logits / T) as T goes to 0.""")
def greedy_not_handled(logits, temperature=1.0, top_k=None):
    _checked(logits, temperature, top_k)
    if top_k == 1:
        return _greedy(logits)
    return _top_k_filter(logits / temperature, top_k).softmax(dim=1)

"""Exercise 07 (long range): pairing far-apart halves, as one attention layer can.

In ``two_halves_counting`` (the package's long-range task, question 5 of *ViT and CNNs: who sees
what*) an object is two cells far apart painted with the same identifier, a distractor a lone
cell whose identifier no other cell carries, and the label is the number of complete objects. A
window that sees one cell cannot tell a half from a distractor; attention compares every token
with every other in one step. With tokens reduced to their identifiers, ``ids`` ``(B, N)`` int64
(0 for background), the exercise asks for:

- ``same_object_mask(ids)``: ``(B, N, N)`` bool, True where both tokens carry the same non-zero
  identifier (the diagonal included): the attention pattern that pairs the halves;
- ``count_pairs(ids)``: ``(B,)`` int64, the number of complete objects, identifiers carried by at
  least two tokens; lone tokens (distractors) and background are not objects. Each token of an
  object counts ``1 / n`` with ``n`` its mask row's sum, so that an object adds up to one: what
  an attention layer's normalisation computes.

Both raise ``ValueError`` when ``ids`` is not a 2-D int64 tensor or holds negative values.
"""

from __future__ import annotations

import torch

from ..contracts import Contract, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "same_object_mask", "count_pairs"]

CONTRACT = Contract(
    "07_long_range",
    "pairing far-apart halves: the same-object mask and the count of complete objects",
    names={"same_object_mask": "(ids)", "count_pairs": "(ids)"},
    reference_answers={
        "same_object_mask": "vitcourse.course.exercises.long_range.same_object_mask",
        "count_pairs": "vitcourse.course.exercises.long_range.count_pairs",
    },
)


# ---- the references ------------------------------------------------------------------------------


def _check_ids(ids) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.int64:
        what = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a (B, N) int64 tensor, got {what}")
    if bool((ids < 0).any()):
        raise ValueError("ids must be >= 0 (0 is background)")


def same_object_mask(ids: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` int64 ids -> ``(B, N, N)`` bool, True where both ids are equal and non-zero."""
    _check_ids(ids)
    return (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] != 0)


def count_pairs(ids: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` int64 ids -> ``(B,)`` int64: the non-zero ids carried by two tokens or more."""
    _check_ids(ids)
    counts = [sum(1 for value, n in zip(*row.unique(return_counts=True), strict=True) if value > 0 and n > 1)
              for row in ids]
    return torch.tensor(counts, dtype=torch.int64)


# ---- helpers of the clauses ------------------------------------------------------------------------


def _scene(rng, batch: int, tokens: int) -> torch.Tensor:
    """(batch, tokens) ids: per image some objects of 2-3 tokens, at least one lone id and two
    background tokens, at random places, with arbitrary (non-consecutive) ids."""
    rows = []
    for _ in range(batch):
        sizes = [draw_int(rng, 2, 3) for _ in range(draw_int(rng, 1, 3))] + [1] * draw_int(rng, 1, 3)
        while sum(sizes) > tokens - 2:
            sizes.pop(0)
        labels = torch.randperm(40, generator=rng)[: len(sizes)] + 1
        row = torch.zeros(tokens, dtype=torch.int64)
        places = torch.randperm(tokens, generator=rng)
        start = 0
        for label, size in zip(labels.tolist(), sizes, strict=True):
            row[places[start:start + size]] = label
            start += size
        rows.append(row)
    return torch.stack(rows)


def _telling_apart(rng, tokens: int) -> torch.Tensor:
    """Two images on which the common counting mistakes all give different counts: an object of 3
    tokens with 3 lone ones, and an object of 2 with 4 lone ones, at random places."""
    rows = torch.zeros(2, tokens, dtype=torch.int64)
    for row, sizes in zip(rows, ([3, 1, 1, 1], [2, 1, 1, 1, 1]), strict=True):
        labels, places, start = torch.randperm(40, generator=rng) + 1, torch.randperm(tokens, generator=rng), 0
        for label, size in zip(labels.tolist(), sizes, strict=False):
            row[places[start:start + size]] = label
            start += size
    return rows


def _shape(ids) -> str:
    return f"ids of shape {tuple(ids.shape)}" if ids.numel() > 24 else f"ids {ids.tolist()}"


# ---- same_object_mask: 5 points ---------------------------------------------------------------------


@CONTRACT.clause("same_object_mask", points=3)
def mask_of_random_scenes(student, rng):
    """Objects of 2-3 tokens, lone tokens and background at random places: True exactly within an object."""
    ids = _scene(rng, draw_int(rng, 1, 3), draw_int(rng, 9, 16))
    expected = same_object_mask(ids)
    loops = torch.tensor([[[bool(a == b != 0) for b in row] for a in row] for row in ids.tolist()])
    assert torch.equal(expected, loops)
    expect_tensor(student.call("same_object_mask", ids), expected, name=f"same_object_mask({_shape(ids)})")


@CONTRACT.clause("same_object_mask", points=1)
def mask_of_background(student, rng):
    """An image of background only, next to one with a lone token: no pair at all but the lone token with itself."""
    tokens = draw_int(rng, 3, 8)
    ids = torch.zeros(2, tokens, dtype=torch.int64)
    ids[1, draw_int(rng, 0, tokens - 1)] = draw_int(rng, 1, 9)
    expect_tensor(student.call("same_object_mask", ids), same_object_mask(ids), name=f"same_object_mask({_shape(ids)})")


@CONTRACT.clause("same_object_mask", points=1)
def mask_rejects_bad_ids(student, rng):
    """Float ids, or negative ids, raise ValueError."""
    ids = _scene(rng, 1, 6)
    expect_raises(lambda: student.call("same_object_mask", ids.float()), "ValueError", name="same_object_mask(float ids)")
    ids[0, 0] = -1
    expect_raises(lambda: student.call("same_object_mask", ids), "ValueError", name=f"same_object_mask({_shape(ids)})")


# ---- count_pairs: 7 points ---------------------------------------------------------------------------


@CONTRACT.clause("count_pairs", points=3)
def count_of_random_scenes(student, rng):
    """Objects of 2-3 tokens, lone tokens and background: the ids carried by two tokens or more."""
    tokens = draw_int(rng, 9, 20)
    ids = torch.cat([_scene(rng, draw_int(rng, 1, 3), tokens), _telling_apart(rng, tokens)])
    expected = count_pairs(ids)
    by_hand = [sum(1 for v in set(row) - {0} if row.count(v) > 1) for row in ids.tolist()]
    assert expected.tolist() == by_hand
    expect_tensor(student.call("count_pairs", ids), expected, name=f"count_pairs({_shape(ids)})")


def _halves(rng, objects: int, lone: int) -> torch.Tensor:
    """One image of the task: each object's two halves in opposite halves of the row, lone
    distractors in the left half, background between them."""
    half = objects + lone + draw_int(rng, 2, 4)  # tokens in each half of the image
    row = torch.zeros(2 * half, dtype=torch.int64)
    labels = torch.randperm(50, generator=rng)[: objects + lone] + 1
    left, right = torch.randperm(half, generator=rng), torch.randperm(half, generator=rng) + half
    row[left[:objects]], row[right[:objects]] = labels[:objects], labels[:objects]
    row[left[objects:objects + lone]] = labels[objects:]
    return row


@CONTRACT.clause("count_pairs", points=2)
def halves_far_apart(student, rng):
    """The task's images: each object's two halves far apart, with two and with four distractors."""
    # 3-4 objects and 2 distractors, then 1-4 objects and 4: the common mistakes give different counts
    objects = (draw_int(rng, 3, 4), draw_int(rng, 1, 4))
    rows = [_halves(rng, objects[0], 2), _halves(rng, objects[1], 4)]
    ids = torch.zeros(2, max(len(r) for r in rows), dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    expected = torch.tensor(objects)
    assert torch.equal(count_pairs(ids), expected)
    expect_tensor(student.call("count_pairs", ids), expected, name=f"count_pairs({_shape(ids)})")


@CONTRACT.clause("count_pairs", points=1)
def nothing_to_count(student, rng):
    """Background only, or lone tokens only: zero objects."""
    tokens = draw_int(rng, 4, 9)
    ids = torch.zeros(2, tokens, dtype=torch.int64)
    ids[1, :3] = torch.randperm(20, generator=rng)[:3] + 1
    expect_tensor(student.call("count_pairs", ids), torch.zeros(2, dtype=torch.int64), name=f"count_pairs({_shape(ids)})")


@CONTRACT.clause("count_pairs", points=1)
def count_rejects_bad_ids(student, rng):
    """Ids of one dimension, or negative ids, raise ValueError."""
    ids = _scene(rng, 1, 6)
    expect_raises(lambda: student.call("count_pairs", ids[0]), "ValueError", name="count_pairs(ids of shape (6,))")
    ids[0, -1] = -draw_int(rng, 1, 5)
    expect_raises(lambda: student.call("count_pairs", ids), "ValueError", name=f"count_pairs({_shape(ids)})")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _valid(ids) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.int64 or bool((ids < 0).any()):
        raise ValueError("bad ids")
    return ids


@CONTRACT.mistake("same_object_mask", """background tokens seem paired with each other: id 0 is
    not an object. Keep only the pairs whose (shared) id is non-zero.""")
def background_paired(ids):
    ids = _valid(ids)
    return ids[:, :, None] == ids[:, None, :]


@CONTRACT.mistake("same_object_mask", """the diagonal seems False: a token of an object belongs to
    its own object too, so (i, i) is True for every non-zero id.""")
def diagonal_left_out(ids):
    ids = _valid(ids)
    same = (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] != 0)
    return same & ~torch.eye(ids.shape[1], dtype=torch.bool)


@CONTRACT.mistake("count_pairs", """lone tokens seem counted as objects: this is the number of
    distinct non-zero ids. A distractor's id is carried by one token only; an object needs two or
    more (its mask row sums to at least 2).""")
def lone_tokens_counted(ids):
    ids = _valid(ids)
    return torch.tensor([len(set(row.tolist()) - {0}) for row in ids], dtype=torch.int64)


@CONTRACT.mistake("count_pairs", """this looks like the painted tokens halved, what a model that
    sees one cell at a time could count. Pair the tokens by their ids instead: each object counts
    once, however many tokens it has, and a lone token not at all.""")
def painted_tokens_halved(ids):
    ids = _valid(ids)
    return (ids != 0).sum(dim=1) // 2


@CONTRACT.mistake("count_pairs", """this counts the tokens that belong to an object, not the
    objects: each token should count 1 / n, n the number of tokens of its object, so that an
    object adds up to one.""")
def object_tokens_counted(ids):
    ids = _valid(ids)
    same = (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] != 0)
    return (same.sum(dim=2) > 1).sum(dim=1)


@CONTRACT.mistake("count_pairs", """the background seems counted as an object when it covers two
    tokens or more. Id 0 is background: leave it out.""")
def background_counted(ids):
    ids = _valid(ids)
    return torch.tensor([sum(1 for v in set(row.tolist()) if row.tolist().count(v) > 1) for row in ids],
                        dtype=torch.int64)

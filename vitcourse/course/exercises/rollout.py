"""Exercise 06 (rollout): gradient-weighted attention rollout, the relevance of a class through
all layers.

The chapter page (*ViT and CNNs: who sees what*) prints attention rollout: each layer's map averaged
over heads, mixed with the identity for the residual connection, and the layers multiplied, later
layers on the left. It says where information flows, whatever the class. The exercise asks for
what it does not print, the class-specific rule of Chefer, Gur and Wolf (ICCV 2021):

- ``gradient_rollout(attentions, gradients)``: for each layer's maps ``A`` ``(B, H, N, N)`` and the
  gradients ``G`` of one class's logit with respect to them, the head mean of the positive part of
  ``G * A``, ``E_l = mean_h max(0, G * A)`` ``(B, N, N)``; then, from ``R = I``, layer by layer,
  ``R <- R + E_l @ R`` (the residual connection keeps what the tokens held; the layer adds what
  it mixed in). Returns ``R`` ``(B, N, N)``, in the maps' dtype. That is ``R = (I + E_L) ... (I +
  E_1)``, the later layers on the left, as in the page's rollout; the gradients keep only the
  heads and entries that push the class up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...validation import check_tensor
from ..contracts import Contract, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "gradient_rollout"]

CONTRACT = Contract(
    "06_rollout",
    "gradient-weighted attention rollout: the relevance of a class through all layers",
    names={"gradient_rollout": "(attentions, gradients)"},
    reference_answers={"gradient_rollout": "vitcourse.course.exercises.rollout.gradient_rollout"},
)


# ---- the reference -------------------------------------------------------------------------------


def _check_layers(attentions, gradients) -> None:
    for name, layers in (("attentions", attentions), ("gradients", gradients)):
        if isinstance(layers, torch.Tensor) or not isinstance(layers, Sequence) or not layers:
            raise ValueError(f"{name} must be a non-empty list of (B, heads, N, N) tensors")
    if len(attentions) != len(gradients):
        raise ValueError(f"{len(attentions)} layers of attention but {len(gradients)} of gradients")
    for i, (a, g) in enumerate(zip(attentions, gradients, strict=True)):
        check_tensor(a, f"attentions[{i}]")
        check_tensor(g, f"gradients[{i}]")
        if a.dim() != 4 or a.shape[-1] != a.shape[-2] or g.shape != a.shape or a.shape != attentions[0].shape:
            raise ValueError(f"attentions[{i}] {tuple(a.shape)} and gradients[{i}] {tuple(g.shape)} must both be "
                             f"(B, heads, N, N), the shape of attentions[0] {tuple(attentions[0].shape)}")


def gradient_rollout(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gradient-weighted rollout: ``attentions`` and ``gradients``, equal-length lists of
    ``(B, H, N, N)`` tensors in layer order -> ``R`` ``(B, N, N)`` in the maps' dtype, with
    ``R = I`` and ``R <- R + mean_h(max(0, G_l * A_l)) @ R`` for each layer. Raises ``ValueError``
    for an empty list, lists of different lengths or shapes that differ."""
    _check_layers(attentions, gradients)
    batch, _, tokens, _ = attentions[0].shape
    relevance = torch.eye(tokens, dtype=attentions[0].dtype).expand(batch, tokens, tokens)
    for maps, grads in zip(attentions, gradients, strict=True):
        weighted = (grads.to(maps.dtype) * maps).clamp(min=0).mean(dim=1)  # heads and entries that raise the class
        relevance = relevance + weighted @ relevance
    return relevance


# ---- the clauses: 9 points ------------------------------------------------------------------------


def _layers(rng, depth: int, batch: int, heads: int, tokens: int, dtype=torch.float32):
    """Softmax maps and gradients of both signs, each (batch, heads, tokens, tokens)."""
    maps = [(2 * torch.randn(batch, heads, tokens, tokens, generator=rng, dtype=dtype)).softmax(-1) for _ in range(depth)]
    grads = [torch.randn(batch, heads, tokens, tokens, generator=rng, dtype=dtype) for _ in range(depth)]
    return maps, grads


def _product_form(maps, grads) -> torch.Tensor:
    """An independent reference in float64: (I + E_L) ... (I + E_1), each E built head by head."""
    eye = torch.eye(maps[0].shape[-1], dtype=torch.float64)
    total = eye
    for a, g in zip(maps, grads, strict=True):
        heads = a.shape[1]
        e = sum(torch.where(g[:, h] * a[:, h] > 0, g[:, h] * a[:, h], 0.0).double() for h in range(heads)) / heads
        total = (eye + e) @ total
    return total


def _describe(maps) -> str:
    return f"{len(maps)} layer{'s' * (len(maps) > 1)} of shape {tuple(maps[0].shape)}"


@CONTRACT.clause("gradient_rollout", points=4)
def random_layers(student, rng):
    """Random maps and gradients (several layers, images and heads): R = (I + E_L) ... (I + E_1)."""
    maps, grads = _layers(rng, draw_int(rng, 2, 4), draw_int(rng, 1, 3), draw_int(rng, 2, 4), draw_int(rng, 3, 7))
    expected = gradient_rollout(maps, grads)
    assert torch.allclose(expected.double(), _product_form(maps, grads), rtol=1e-5, atol=1e-6)
    expect_tensor(student.call("gradient_rollout", maps, grads), expected, name=f"gradient_rollout({_describe(maps)})")


@CONTRACT.clause("gradient_rollout", points=2)
def two_layers_in_float64(student, rng):
    """Two float64 layers: the second layer's relevance acts on the first's, and float64 comes back."""
    maps, grads = _layers(rng, 2, draw_int(rng, 1, 2), 3, draw_int(rng, 4, 6), dtype=torch.float64)
    expected = gradient_rollout(maps, grads)
    assert torch.allclose(expected, _product_form(maps, grads), rtol=1e-12, atol=1e-12)
    expect_tensor(student.call("gradient_rollout", maps, grads), expected,
                  name=f"gradient_rollout({_describe(maps)}, float64)")


@CONTRACT.clause("gradient_rollout", points=1)
def one_layer(student, rng):
    """One layer of two heads: I + mean over heads of max(0, G * A)."""
    maps, grads = _layers(rng, 1, 1, 2, draw_int(rng, 3, 6))
    expect_tensor(student.call("gradient_rollout", maps, grads), gradient_rollout(maps, grads),
                  name=f"gradient_rollout({_describe(maps)})")


@CONTRACT.clause("gradient_rollout", points=1)
def gradients_that_lower_the_class(student, rng):
    """Where every gradient is negative (nothing raises the class), R is the identity."""
    maps, grads = _layers(rng, draw_int(rng, 2, 3), 2, 2, draw_int(rng, 3, 5))
    grads = [-g.abs() - 0.1 for g in grads]
    expected = gradient_rollout(maps, grads)
    assert torch.equal(expected, torch.eye(expected.shape[-1]).expand_as(expected))
    expect_tensor(student.call("gradient_rollout", maps, grads), expected,
                  name=f"gradient_rollout({_describe(maps)}, every gradient negative)")


@CONTRACT.clause("gradient_rollout", points=1)
def rejects_bad_layers(student, rng):
    """An empty list, or lists of different lengths, raises ValueError."""
    maps, grads = _layers(rng, 2, 1, 2, 3)
    expect_raises(lambda: student.call("gradient_rollout", [], []), "ValueError", name="gradient_rollout([], [])")
    expect_raises(lambda: student.call("gradient_rollout", maps, grads[:1]), "ValueError",
                  name="gradient_rollout(2 layers of maps, 1 layer of gradients)")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _start(attentions, gradients) -> torch.Tensor:
    """Validate as the contract says; the identity (B, N, N) to start from."""
    if not attentions or len(attentions) != len(gradients):
        raise ValueError("bad layers")
    batch, _, tokens, _ = attentions[0].shape
    return torch.eye(tokens, dtype=attentions[0].dtype).expand(batch, tokens, tokens)


@CONTRACT.mistake("gradient_rollout", """the gradients seem ignored: this is the rollout of the
    plain head-averaged maps. Each layer's map is weighted entry by entry by the gradient of the
    class's logit, and only the positive part is kept, before the heads are averaged.""")
def gradients_ignored(attentions, gradients):
    relevance = _start(attentions, gradients)
    for maps in attentions:
        relevance = relevance + maps.mean(dim=1) @ relevance
    return relevance


@CONTRACT.mistake("gradient_rollout", """the positive part seems taken after averaging the heads.
    Clip G * A at zero head by head, then average: a head that lowers the class must not cancel
    one that raises it.""")
def positive_part_after_the_mean(attentions, gradients):
    relevance = _start(attentions, gradients)
    for maps, grads in zip(attentions, gradients, strict=True):
        relevance = relevance + (grads * maps).mean(dim=1).clamp(min=0) @ relevance
    return relevance


@CONTRACT.mistake("gradient_rollout", """negative entries seem kept: G * A is used as it is. Keep
    only its positive part, max(0, G * A), the entries that raise the class.""")
def negative_part_kept(attentions, gradients):
    relevance = _start(attentions, gradients)
    for maps, grads in zip(attentions, gradients, strict=True):
        relevance = relevance + (grads * maps).mean(dim=1) @ relevance
    return relevance


@CONTRACT.mistake("gradient_rollout", """the layers seem multiplied in the wrong order (R + R @ E,
    the first layer on the left). Each new layer acts on what the earlier ones produced, so its
    matrix goes on the left: R + E @ R.""")
def wrong_order(attentions, gradients):
    relevance = _start(attentions, gradients)
    for maps, grads in zip(attentions, gradients, strict=True):
        relevance = relevance + relevance @ (grads * maps).clamp(min=0).mean(dim=1)
    return relevance


@CONTRACT.mistake("gradient_rollout", """the residual connection seems left out: this is the
    product E_L ... E_1 of the weighted maps alone. A block adds its attention to its input, so
    the identity stays in every factor: R <- R + E @ R.""")
def identity_left_out(attentions, gradients):
    relevance = _start(attentions, gradients)
    for maps, grads in zip(attentions, gradients, strict=True):
        relevance = (grads * maps).clamp(min=0).mean(dim=1) @ relevance
    return relevance


@CONTRACT.mistake("gradient_rollout", """the heads seem summed, not averaged: every layer's
    weighted map is too large by the number of heads. Average over the heads axis (dim 1).""")
def heads_summed(attentions, gradients):
    relevance = _start(attentions, gradients)
    for maps, grads in zip(attentions, gradients, strict=True):
        relevance = relevance + (grads * maps).clamp(min=0).sum(dim=1) @ relevance
    return relevance

"""Exercise 15 (contrastive): CLIP's loss with several positives per image, and SigLIP's sigmoid
loss.

The chapter page (*Multimodal*) prints CLIP's symmetric loss: the ``B x B`` cosine similarities of
a batch of (image, text) pairs divided by a temperature, read as ``B`` classifications along the
rows and ``B`` along the columns with the true pairs on the diagonal. The exercise asks for two
variants the page does not print, both with the positives given by ``labels`` (pairs ``i`` and
``j`` with the same label match each other; with all labels distinct, only the diagonal does):

- ``multi_positive_clip_loss(image_emb, text_emb, labels, log_scale)``: the logits are the cosine
  similarities times ``exp(log_scale)``, capped at 100 as CLIP caps its learned scale; each row's
  target (image -> text) and each column's (text -> image) is uniform over its positives; the loss
  is the mean of the two directions' cross-entropies, each averaged over the batch. With distinct
  labels it is the page's ``contrastive_loss`` at temperature ``exp(-log_scale)``;
- ``sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias)``: SigLIP's loss, every
  (image, text) pairing a binary decision of its own, ``z_ij = +1`` for a positive and ``-1``
  otherwise, ``L = -1/B sum_ij log sigmoid(z_ij (exp(log_scale) cos_ij + bias))`` (no cap).

Both return a scalar in the embeddings' dtype and raise ``ValueError`` when the embeddings are not
two ``(B, E)`` tensors of one shape or ``labels`` is not ``(B,)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...training.losses import contrastive_loss
from ...validation import check_tensor
from ..contracts import Contract, draw_float, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "multi_positive_clip_loss", "sigmoid_pair_loss"]

CONTRACT = Contract(
    "15_contrastive",
    "CLIP's loss with several positives per image; SigLIP's sigmoid loss",
    names={
        "multi_positive_clip_loss": "(image_emb, text_emb, labels, log_scale)",
        "sigmoid_pair_loss": "(image_emb, text_emb, labels, log_scale, bias)",
    },
    reference_answers={
        "multi_positive_clip_loss": "vitcourse.course.exercises.contrastive.multi_positive_clip_loss",
        "sigmoid_pair_loss": "vitcourse.course.exercises.contrastive.sigmoid_pair_loss",
    },
)

MAX_SCALE = 100.0  # CLIP's cap on the learned logit scale (a temperature of at least 0.01)


# ---- the references ------------------------------------------------------------------------------


def _cosines(image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` cosine similarities, image ``i`` with text ``j``, after checking the inputs."""
    check_tensor(image_emb, "image_emb")
    check_tensor(text_emb, "text_emb")
    check_tensor(labels, "labels")
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(f"image_emb and text_emb must both be (B, E), got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    if labels.shape != image_emb.shape[:1]:
        raise ValueError(f"labels must be ({image_emb.shape[0]},), one per pair, got {tuple(labels.shape)}")
    return F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T


def _as_scalar(value, like: torch.Tensor) -> torch.Tensor:
    """A float or 0-dim tensor as a 0-dim tensor in ``like``'s dtype (a parameter keeps its grad)."""
    return torch.as_tensor(value).to(like)


def multi_positive_clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor,
                             log_scale) -> torch.Tensor:
    """CLIP's symmetric loss with every same-label pair a positive: ``image_emb``, ``text_emb``
    ``(B, E)``, ``labels`` ``(B,)``, ``log_scale`` a float or 0-dim tensor. Logits
    ``min(exp(log_scale), 100) * cos`` ``(B, B)``; the targets of a row and of a column are uniform
    over its positives; the mean of the rows' and the columns' cross-entropies, each averaged over
    the batch. A scalar in the embeddings' dtype."""
    cosines = _cosines(image_emb, text_emb, labels)
    scale = _as_scalar(log_scale, cosines).clamp(max=math.log(MAX_SCALE)).exp()
    logits = scale * cosines
    positives = (labels[:, None] == labels[None, :]).to(logits.dtype)
    targets = positives / positives.sum(dim=1, keepdim=True)  # symmetric, so it serves the columns too
    image_to_text = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    text_to_image = -(targets * logits.log_softmax(dim=0)).sum(dim=0).mean()
    return (image_to_text + text_to_image) / 2


def sigmoid_pair_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor,
                      log_scale, bias) -> torch.Tensor:
    """SigLIP's loss: ``-1/B sum_ij log sigmoid(z_ij (exp(log_scale) cos_ij + bias))`` with
    ``z_ij = +1`` where ``labels[i] == labels[j]`` and ``-1`` elsewhere. ``image_emb``,
    ``text_emb`` ``(B, E)``, ``labels`` ``(B,)``, ``log_scale`` and ``bias`` floats or 0-dim
    tensors. A scalar in the embeddings' dtype."""
    cosines = _cosines(image_emb, text_emb, labels)
    logits = _as_scalar(log_scale, cosines).exp() * cosines + _as_scalar(bias, cosines)
    signs = 2 * (labels[:, None] == labels[None, :]).to(logits.dtype) - 1
    return -F.logsigmoid(signs * logits).sum() / len(labels)


# ---- independent float64 computations, pair by pair (each clause checks the reference first) ----


def _cos64(image_emb, text_emb):
    a, b = image_emb.double(), text_emb.double()
    return [[float(a[i] @ b[j] / (a[i].norm() * b[j].norm())) for j in range(len(b))] for i in range(len(a))]


def _clip_by_hand(image_emb, text_emb, labels, log_scale) -> float:
    s = min(math.exp(float(log_scale)), MAX_SCALE)
    cos, labels, n = _cos64(image_emb, text_emb), labels.tolist(), len(labels)

    def cross_entropy(scores, positives):
        top = max(scores)
        log_z = top + math.log(sum(math.exp(v - top) for v in scores))
        return sum(log_z - scores[j] for j in positives) / len(positives)

    total = 0.0
    for i in range(n):
        positives = [j for j in range(n) if labels[j] == labels[i]]
        total += cross_entropy([s * cos[i][j] for j in range(n)], positives)  # image i -> texts
        total += cross_entropy([s * cos[j][i] for j in range(n)], positives)  # text i -> images
    return total / (2 * n)


def _sigmoid_by_hand(image_emb, text_emb, labels, log_scale, bias) -> float:
    cos, labels, n = _cos64(image_emb, text_emb), labels.tolist(), len(labels)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if labels[i] == labels[j] else -1.0
            x = -z * (math.exp(float(log_scale)) * cos[i][j] + float(bias))
            total += max(x, 0.0) + math.log1p(math.exp(-abs(x)))  # -log sigmoid(-x) = softplus(x)
    return total / n


def _agrees(reference: torch.Tensor, by_hand: float) -> None:
    if not math.isclose(float(reference), by_hand, rel_tol=1e-5, abs_tol=1e-6):
        raise AssertionError(f"contract bug: the reference {float(reference)!r} != the float64 sum {by_hand!r}")


# ---- drawing the inputs ---------------------------------------------------------------------------


def _batch(rng, batch, classes, dtype=torch.float32):
    """Embeddings (B, E) with E != B (so a transposed result has another shape), and labels from
    ``classes`` values: few classes make same-label pairs off the diagonal."""
    width = draw_int(rng, 3, 5)
    image_emb = torch.randn(batch, width, generator=rng, dtype=dtype)
    text_emb = image_emb + torch.randn(batch, width, generator=rng, dtype=dtype)  # pairs alike, not equal
    labels = torch.randint(0, classes, (batch,), generator=rng)
    return image_emb, text_emb, labels


def _distinct(rng, batch):
    """``batch`` distinct labels in a random order (not 0..B-1: labels are names, not positions)."""
    return torch.randperm(batch, generator=rng) * 3 + 1


def _label(name, image_emb, labels, **scalars):
    shown = ", ".join(f"{k}={v}" for k, v in scalars.items())
    return f"{name}(embeddings of shape {tuple(image_emb.shape)}, labels {labels.tolist()}, {shown})"


def _mismatched(rng):
    """Two bad inputs, each ``((image_emb, text_emb, labels), what)``: text embeddings one column
    short, and one label too many."""
    image_emb, text_emb, labels = _batch(rng, draw_int(rng, 3, 6), 3)
    short, longer = text_emb[:, :-1], torch.cat([labels, labels[:1]])
    return [((image_emb, short, labels), f"text_emb of shape {tuple(short.shape)} and image_emb of shape "
                                         f"{tuple(image_emb.shape)}"),
            ((image_emb, text_emb, longer), f"{len(longer)} labels for {len(labels)} pairs")]


# ---- multi_positive_clip_loss: 7 points -----------------------------------------------------------


@CONTRACT.clause("multi_positive_clip_loss", points=3)
def repeated_labels(student, rng):
    """Random pairs with repeated labels: both directions' cross-entropies, uniform over the positives."""
    image_emb, text_emb, labels = _batch(rng, draw_int(rng, 6, 10), 3)
    log_scale = draw_float(rng, 1.0, 3.0)
    expected = multi_positive_clip_loss(image_emb, text_emb, labels, log_scale)
    _agrees(expected, _clip_by_hand(image_emb, text_emb, labels, log_scale))
    got = student.call("multi_positive_clip_loss", image_emb, text_emb, labels, log_scale)
    expect_tensor(got, expected, name=_label("multi_positive_clip_loss", image_emb, labels, log_scale=log_scale))


@CONTRACT.clause("multi_positive_clip_loss", points=1)
def distinct_labels_is_clip(student, rng):
    """With distinct labels it is the page's contrastive_loss at temperature exp(-log_scale)."""
    image_emb, text_emb, _ = _batch(rng, draw_int(rng, 3, 8), 3)
    labels, log_scale = _distinct(rng, len(image_emb)), draw_float(rng, 0.5, 3.0)
    got = student.call("multi_positive_clip_loss", image_emb, text_emb, labels, log_scale)
    expect_tensor(got, contrastive_loss(image_emb, text_emb, math.exp(-log_scale)),
                  name=_label("multi_positive_clip_loss", image_emb, labels, log_scale=log_scale))


@CONTRACT.clause("multi_positive_clip_loss", points=1)
def scale_capped_at_100(student, rng):
    """A log_scale above log(100) counts as log(100): the logit scale is capped at 100."""
    image_emb, text_emb, labels = _batch(rng, draw_int(rng, 4, 8), 3)
    log_scale = draw_float(rng, 5.0, 6.0)
    expected = multi_positive_clip_loss(image_emb, text_emb, labels, math.log(MAX_SCALE))
    got = student.call("multi_positive_clip_loss", image_emb, text_emb, labels, log_scale)
    expect_tensor(got, expected, name=_label("multi_positive_clip_loss", image_emb, labels, log_scale=log_scale))


@CONTRACT.clause("multi_positive_clip_loss", points=1)
def float64_and_tensor_scale(student, rng):
    """float64 embeddings and a 0-dim tensor log_scale give a float64 scalar."""
    image_emb, text_emb, labels = _batch(rng, draw_int(rng, 3, 7), 2, dtype=torch.float64)
    log_scale = torch.tensor(draw_float(rng, 1.0, 3.0), dtype=torch.float64)
    expected = multi_positive_clip_loss(image_emb, text_emb, labels, log_scale)
    _agrees(expected, _clip_by_hand(image_emb, text_emb, labels, log_scale))
    got = student.call("multi_positive_clip_loss", image_emb, text_emb, labels, log_scale)
    expect_tensor(got, expected, name=_label("multi_positive_clip_loss", image_emb, labels,
                                             log_scale=f"tensor({float(log_scale)}, float64)"))


@CONTRACT.clause("multi_positive_clip_loss", points=1)
def clip_rejects_mismatched_inputs(student, rng):
    """Embeddings of different shapes, or labels of another length, raise ValueError."""
    for inputs, what in _mismatched(rng):
        expect_raises(lambda inputs=inputs: student.call("multi_positive_clip_loss", *inputs, 2.0), "ValueError",
                      name=f"multi_positive_clip_loss with {what}")


# ---- sigmoid_pair_loss: 6 points ------------------------------------------------------------------


@CONTRACT.clause("sigmoid_pair_loss", points=3)
def sigmoid_repeated_labels(student, rng):
    """Random pairs with repeated labels: every pairing's log-sigmoid, summed, over B."""
    image_emb, text_emb, labels = _batch(rng, draw_int(rng, 5, 10), 3)
    log_scale, bias = draw_float(rng, 0.5, 3.0), draw_float(rng, -6.0, -1.0)
    expected = sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias)
    _agrees(expected, _sigmoid_by_hand(image_emb, text_emb, labels, log_scale, bias))
    got = student.call("sigmoid_pair_loss", image_emb, text_emb, labels, log_scale, bias)
    expect_tensor(got, expected, name=_label("sigmoid_pair_loss", image_emb, labels, log_scale=log_scale, bias=bias))


@CONTRACT.clause("sigmoid_pair_loss", points=1)
def siglip_start(student, rng):
    """Distinct labels at SigLIP's start (scale 10, bias -10): the paper's loss."""
    image_emb, text_emb, _ = _batch(rng, draw_int(rng, 2, 8), 3)
    labels, log_scale, bias = _distinct(rng, len(image_emb)), math.log(10.0), -10.0
    expected = sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias)
    _agrees(expected, _sigmoid_by_hand(image_emb, text_emb, labels, log_scale, bias))
    got = student.call("sigmoid_pair_loss", image_emb, text_emb, labels, log_scale, bias)
    expect_tensor(got, expected, name=_label("sigmoid_pair_loss", image_emb, labels, log_scale="log(10)", bias=bias))


@CONTRACT.clause("sigmoid_pair_loss", points=1)
def sigmoid_float64_and_tensors(student, rng):
    """float64 embeddings with 0-dim tensor log_scale and bias give a float64 scalar."""
    image_emb, text_emb, labels = _batch(rng, draw_int(rng, 3, 7), 2, dtype=torch.float64)
    log_scale = torch.tensor(draw_float(rng, 0.5, 2.5), dtype=torch.float64)
    bias = torch.tensor(draw_float(rng, -4.0, 1.0), dtype=torch.float64)
    expected = sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias)
    got = student.call("sigmoid_pair_loss", image_emb, text_emb, labels, log_scale, bias)
    expect_tensor(got, expected, name=_label("sigmoid_pair_loss", image_emb, labels,
                                             log_scale=f"tensor({float(log_scale)}, float64)",
                                             bias=f"tensor({float(bias)}, float64)"))


@CONTRACT.clause("sigmoid_pair_loss", points=1)
def sigmoid_rejects_mismatched_inputs(student, rng):
    """Embeddings of different shapes, or labels of another length, raise ValueError."""
    for inputs, what in _mismatched(rng):
        expect_raises(lambda inputs=inputs: student.call("sigmoid_pair_loss", *inputs, 1.0, -2.0), "ValueError",
                      name=f"sigmoid_pair_loss with {what}")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _checked_cosines(image_emb, text_emb, labels):
    """The mistakes' input checks (as the contract asks) and the right cosine similarities."""
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape or labels.shape != image_emb.shape[:1]:
        raise ValueError("image_emb and text_emb must be (B, E) and labels (B,)")
    return F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T


def _capped_scale(log_scale, like):
    return torch.as_tensor(log_scale).to(like).clamp(max=math.log(100.0)).exp()


def _uniform_targets(labels, like):
    positives = (labels[:, None] == labels[None, :]).to(like.dtype)
    return positives / positives.sum(dim=1, keepdim=True)


def _both_ways(logits, targets):
    rows = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    columns = -(targets.T * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (rows + columns) / 2


@CONTRACT.mistake("multi_positive_clip_loss", """only the image -> text direction (the rows) is
    there. CLIP's loss is symmetric: average the rows' cross-entropy with the columns' (text ->
    image, the softmax over the images).""")
def image_to_text_only(image_emb, text_emb, labels, log_scale):
    logits = _capped_scale(log_scale, image_emb) * _checked_cosines(image_emb, text_emb, labels)
    targets = _uniform_targets(labels, logits)
    return -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()


@CONTRACT.mistake("multi_positive_clip_loss", """only the diagonal is treated as positive, as in
    the page's loss: the labels are not used. Every text whose label equals image i's label is a
    positive for image i, and the target spreads evenly over them.""")
def labels_ignored(image_emb, text_emb, labels, log_scale):
    logits = _capped_scale(log_scale, image_emb) * _checked_cosines(image_emb, text_emb, labels)
    return _both_ways(logits, torch.eye(len(labels), dtype=logits.dtype))


@CONTRACT.mistake("multi_positive_clip_loss", """the embeddings are not L2-normalised: the logits
    are raw dot products, not cosine similarities. Normalise each row of both embeddings to unit
    length before the product.""")
def not_normalised(image_emb, text_emb, labels, log_scale):
    _checked_cosines(image_emb, text_emb, labels)
    logits = _capped_scale(log_scale, image_emb) * (image_emb @ text_emb.T)
    return _both_ways(logits, _uniform_targets(labels, logits))


@CONTRACT.mistake("multi_positive_clip_loss", """the cosines are multiplied by the temperature
    exp(-log_scale) instead of divided by it. log_scale is the log of the scale, the inverse
    temperature: the logits are exp(log_scale) times the cosines.""")
def temperature_multiplied(image_emb, text_emb, labels, log_scale):
    cosines = _checked_cosines(image_emb, text_emb, labels)
    logits = cosines / _capped_scale(log_scale, cosines)
    return _both_ways(logits, _uniform_targets(labels, logits))


@CONTRACT.mistake("multi_positive_clip_loss", """the scale is not capped: with a log_scale above
    log(100) the logits grow past 100 times the cosines. Cap the scale at 100 (or log_scale at
    log(100)) as CLIP does.""")
def scale_not_capped(image_emb, text_emb, labels, log_scale):
    cosines = _checked_cosines(image_emb, text_emb, labels)
    logits = torch.as_tensor(log_scale).to(cosines).exp() * cosines
    return _both_ways(logits, _uniform_targets(labels, logits))


@CONTRACT.mistake("multi_positive_clip_loss", """each positive counts as a full target (the
    cross-entropies of a row's positives are summed), so a row with k positives weighs k times
    more. The target of a row is a distribution: 1/k on each of its k positives.""")
def positives_summed(image_emb, text_emb, labels, log_scale):
    logits = _capped_scale(log_scale, image_emb) * _checked_cosines(image_emb, text_emb, labels)
    return _both_ways(logits, (labels[:, None] == labels[None, :]).to(logits.dtype))


def _sigmoid_logits(image_emb, text_emb, labels, log_scale, bias):
    cosines = _checked_cosines(image_emb, text_emb, labels)
    return torch.as_tensor(log_scale).to(cosines).exp() * cosines + torch.as_tensor(bias).to(cosines)


def _signs(labels, like):
    return 2 * (labels[:, None] == labels[None, :]).to(like.dtype) - 1


@CONTRACT.mistake("sigmoid_pair_loss", """the loss is averaged over all B x B pairings, so it is
    B times too small. SigLIP sums the pairings' terms and divides by the batch size B.""")
def averaged_over_all_pairs(image_emb, text_emb, labels, log_scale, bias):
    logits = _sigmoid_logits(image_emb, text_emb, labels, log_scale, bias)
    return -F.logsigmoid(_signs(labels, logits) * logits).mean()


@CONTRACT.mistake("sigmoid_pair_loss", """the negatives' sign is 0 instead of -1: every negative
    pairing adds the constant log 2, whatever its similarity. z_ij is +1 for a positive and -1 for
    a negative, so that the loss pushes a negative's logit down.""")
def zero_one_signs(image_emb, text_emb, labels, log_scale, bias):
    logits = _sigmoid_logits(image_emb, text_emb, labels, log_scale, bias)
    signs = (labels[:, None] == labels[None, :]).to(logits.dtype)
    return -F.logsigmoid(signs * logits).sum() / len(labels)


@CONTRACT.mistake("sigmoid_pair_loss", """the bias is subtracted. It is added to the scaled
    cosines: exp(log_scale) * cos + bias (SigLIP starts it at -10, so that every pairing starts
    out unlikely).""")
def bias_subtracted(image_emb, text_emb, labels, log_scale, bias):
    logits = _sigmoid_logits(image_emb, text_emb, labels, log_scale, -torch.as_tensor(bias))
    return -F.logsigmoid(_signs(labels, logits) * logits).sum() / len(labels)


@CONTRACT.mistake("sigmoid_pair_loss", """the embeddings are not L2-normalised: the logits use raw
    dot products. Normalise each row of both embeddings to unit length first.""")
def sigmoid_not_normalised(image_emb, text_emb, labels, log_scale, bias):
    _checked_cosines(image_emb, text_emb, labels)
    products = image_emb @ text_emb.T
    logits = torch.as_tensor(log_scale).to(products).exp() * products + torch.as_tensor(bias).to(products)
    return -F.logsigmoid(_signs(labels, logits) * logits).sum() / len(labels)


@CONTRACT.mistake("sigmoid_pair_loss", """log_scale is used as the scale itself. It is its
    logarithm (so that the learned scale stays positive): multiply the cosines by exp(log_scale).""")
def scale_not_exponentiated(image_emb, text_emb, labels, log_scale, bias):
    cosines = _checked_cosines(image_emb, text_emb, labels)
    logits = torch.as_tensor(log_scale).to(cosines) * cosines + torch.as_tensor(bias).to(cosines)
    return -F.logsigmoid(_signs(labels, logits) * logits).sum() / len(labels)


@CONTRACT.mistake("sigmoid_pair_loss", """only the positive pairings count: the negatives'
    terms are missing. Every pairing of the B x B matrix contributes, the negatives with
    log sigmoid(-logit).""")
def positives_only(image_emb, text_emb, labels, log_scale, bias):
    logits = _sigmoid_logits(image_emb, text_emb, labels, log_scale, bias)
    positive = labels[:, None] == labels[None, :]
    return -F.logsigmoid(logits[positive]).sum() / len(labels)

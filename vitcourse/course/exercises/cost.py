"""Exercise 08 (cost): the FLOPs of a whole ViT's forward pass, from its configuration.

The chapter page (*What attention costs*) counts the multiply-accumulates of one attention layer,
``4 L D^2 + 2 L^2 D``, and of one block, and checks them against PyTorch's FLOP counter. The
exercise asks for what it does not print, the count of a whole model as a paper's table reports
it:

- ``vit_forward_flops(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4,
  prefix_tokens=1)``: the floating-point operations (two per multiply-accumulate) of one image's
  forward pass through a ViT, counting the matrix products only (no norms, softmax, activations,
  biases or additions): the patch embedding of the ``(H / p) (W / p)`` patches, ``depth`` blocks
  on ``L`` tokens (the patches and the ``prefix_tokens``: class token, registers), each with its
  attention (projections and both ``L x L`` products) and its MLP of hidden width
  ``int(dim * mlp_ratio)``, and the head on one pooled vector (none when ``num_classes`` is 0).
"""

from __future__ import annotations

import functools

from ...validation import (
    check_finite_positive,
    check_int_pair,
    check_non_negative_int,
    check_positive_int,
)
from ..contracts import Contract, draw_int
from ..expectations import expect_number, expect_raises

__all__ = ["CONTRACT", "vit_forward_flops"]

CONTRACT = Contract(
    "08_cost",
    "the FLOPs of a whole ViT's forward pass",
    names={"vit_forward_flops": "(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, "
                                "prefix_tokens=1)"},
    reference_answers={"vit_forward_flops": "vitcourse.course.exercises.cost.vit_forward_flops"},
)


# ---- the reference -------------------------------------------------------------------------------


def vit_forward_flops(image_size, patch_size: int, dim: int, depth: int, num_classes: int, in_chans: int = 3,
                      mlp_ratio: float = 4, prefix_tokens: int = 1) -> int:
    """FLOPs (2 per multiply-accumulate) of one image's ViT forward pass, an exact int:
    ``2 [N C p^2 D + depth (4 L D^2 + 2 L^2 D + 2 L D h) + D K]`` with ``N`` patches,
    ``L = N + prefix_tokens``, ``h = int(D * mlp_ratio)``. ``image_size`` is an int or ``(H, W)``.
    Raises ``ValueError`` for sizes below 1 (``num_classes`` and ``prefix_tokens`` may be 0) or
    image sides that are not multiples of ``patch_size``."""
    height, width = check_int_pair(image_size, "image_size")
    for name, value in (("patch_size", patch_size), ("dim", dim), ("depth", depth), ("in_chans", in_chans)):
        check_positive_int(value, name)
    for name, value in (("num_classes", num_classes), ("prefix_tokens", prefix_tokens)):
        check_non_negative_int(value, name)
    hidden = int(dim * check_finite_positive(mlp_ratio, "mlp_ratio"))
    if height % patch_size or width % patch_size or hidden < 1:
        raise ValueError(f"image_size {(height, width)} must be a multiple of patch_size {patch_size}, "
                         f"and the MLP's hidden width int(dim * mlp_ratio) = {hidden} at least 1")
    patches = (height // patch_size) * (width // patch_size)
    tokens = patches + prefix_tokens
    embed = patches * in_chans * patch_size**2 * dim  # the prefix tokens are learned, not embedded
    attention = 4 * tokens * dim**2 + 2 * tokens**2 * dim  # q, k, v, proj; q k^T and the weighted sum of v
    mlp = 2 * tokens * dim * hidden
    return 2 * (embed + depth * (attention + mlp) + dim * num_classes)


@functools.cache  # once per process: the check and the mistakes' replays run it again
def _reference_against_the_counter() -> None:
    """The reference equals PyTorch's FLOP counter on a small ViT with registers and no class token."""
    import contextlib

    import torch

    from ...experiments.timing import count_flops
    from ...models.vit import VisionTransformer, ViTConfig

    config = ViTConfig(img_size=(16, 24), patch_size=8, in_chans=2, num_classes=3, embed_dim=12, depth=2,
                       num_heads=2, mlp_ratio=3.0, class_token=False, reg_tokens=2, global_pool="avg")
    model = VisionTransformer(config).eval()
    counted = count_flops(model, torch.zeros(1, 2, 16, 24), torch.zeros(1, dtype=torch.long), contextlib.nullcontext)[0]
    assert counted == vit_forward_flops((16, 24), 8, 12, 2, 3, in_chans=2, mlp_ratio=3.0, prefix_tokens=2), counted


# ---- the clauses: 9 points -------------------------------------------------------------------------


def _cells(rng, max_cells: int, prefix: int, hidden: int) -> tuple[int, int]:
    """A grid of patches whose token count L differs from the MLP's hidden width h (L = h would
    make the attention's L^2 D and the MLP's L D h agree, and with them two mistakes)."""
    rows, cols = draw_int(rng, 1, max_cells), draw_int(rng, 1, max_cells)
    while rows * cols + prefix == hidden:
        cols += 1
    return rows, cols


@CONTRACT.clause("vit_forward_flops", points=4)
def square_images_with_a_class_token(student, rng):
    """Random square images, widths, depths and classes, one class token: the whole forward's FLOPs."""
    patch, dim, ratio = draw_int(rng, 2, 16), draw_int(rng, 8, 96), draw_int(rng, 2, 4)
    cells = draw_int(rng, 1, 12)
    cells += cells * cells + 1 == dim * ratio
    args = (cells * patch, patch, dim, draw_int(rng, 1, 12), draw_int(rng, 2, 1000), draw_int(rng, 1, 4), ratio)
    expect_number(student.call("vit_forward_flops", *args), vit_forward_flops(*args), exact_int=True,
                  name=f"vit_forward_flops{args}")


@CONTRACT.clause("vit_forward_flops", points=2)
def registers_on_a_rectangle(student, rng):
    """A non-square image (H, W), a class token and registers (prefix_tokens 2-5), one channel."""
    patch, dim, prefix = draw_int(rng, 2, 8), draw_int(rng, 8, 64), draw_int(rng, 2, 5)
    rows, cols = _cells(rng, 10, prefix, dim * 4)
    image = (rows * patch, cols * patch)
    args = (image, patch, dim, draw_int(rng, 1, 8), draw_int(rng, 2, 100), 1, 4, prefix)
    expect_number(student.call("vit_forward_flops", *args), vit_forward_flops(*args), exact_int=True,
                  name=f"vit_forward_flops{args}")


@CONTRACT.clause("vit_forward_flops", points=1)
def no_prefix_and_no_head(student, rng):
    """No prefix token (average pooling), no head (num_classes 0), mlp_ratio 2.5."""
    patch, dim = draw_int(rng, 2, 8), 2 * draw_int(rng, 4, 32)
    rows, cols = _cells(rng, 8, 0, dim * 5 // 2)
    image = (rows * patch, cols * patch)
    args = (image, patch, dim, draw_int(rng, 1, 6), 0, 3, 2.5, 0)
    expect_number(student.call("vit_forward_flops", *args), vit_forward_flops(*args), exact_int=True,
                  name=f"vit_forward_flops{args}")


@CONTRACT.clause("vit_forward_flops", points=1)
def vit_base_at_two_resolutions(student, rng):
    """ViT-B/16 (D 768, 12 blocks, 1000 classes) at 224 px and at a larger side: exact ints, as PyTorch counts them."""
    _reference_against_the_counter()
    side = 16 * draw_int(rng, 20, 64)
    for image in (224, side):
        args = (image, 16, 768, 12, 1000)
        expect_number(student.call("vit_forward_flops", *args), vit_forward_flops(*args), exact_int=True,
                      name=f"vit_forward_flops{args}")


@CONTRACT.clause("vit_forward_flops", points=1)
def rejects_bad_sizes(student, rng):
    """An image side that is not a multiple of the patch, or a width of 0, raises ValueError."""
    patch = draw_int(rng, 3, 16)
    side = patch * draw_int(rng, 2, 10) + draw_int(rng, 1, patch - 1)
    expect_raises(lambda: student.call("vit_forward_flops", side, patch, 64, 2, 10), "ValueError",
                  name=f"vit_forward_flops({side}, {patch}, 64, 2, 10)")
    expect_raises(lambda: student.call("vit_forward_flops", 32, 8, 0, 2, 10), "ValueError",
                  name="vit_forward_flops(32, 8, 0, 2, 10)")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _parts(image_size, patch_size, dim, depth, num_classes, in_chans, mlp_ratio, prefix_tokens):
    """(patches, tokens, hidden), validated as the contract says."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    hidden = int(dim * mlp_ratio)
    if min(height, width, patch_size, dim, depth, in_chans, hidden) < 1 or min(num_classes, prefix_tokens) < 0 \
            or height % patch_size or width % patch_size:
        raise ValueError("bad sizes")
    patches = (height // patch_size) * (width // patch_size)
    return patches, patches + prefix_tokens, hidden


@CONTRACT.mistake("vit_forward_flops", """this is half the expected count: it looks like
    multiply-accumulates, not FLOPs. A multiply-accumulate is two floating-point operations, a
    multiplication and an addition; PyTorch's counter and the papers' FLOPs count both.""")
def macs_not_flops(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
    n, L, h = _parts(image_size, patch_size, dim, depth, num_classes, in_chans, mlp_ratio, prefix_tokens)
    return n * in_chans * patch_size**2 * dim + depth * (4 * L * dim**2 + 2 * L**2 * dim + 2 * L * dim * h) + dim * num_classes


@CONTRACT.mistake("vit_forward_flops", """the attention seems to count q k^T but not the weighted
    sum of the values: each block has two L x L products, the scores and the scores times v, of
    L^2 D multiply-accumulates each.""")
def scores_but_not_values(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
    n, L, h = _parts(image_size, patch_size, dim, depth, num_classes, in_chans, mlp_ratio, prefix_tokens)
    return 2 * (n * in_chans * patch_size**2 * dim + depth * (4 * L * dim**2 + L**2 * dim + 2 * L * dim * h) + dim * num_classes)


@CONTRACT.mistake("vit_forward_flops", """the blocks seem to run on the patches only: the prefix
    tokens (class token, registers) are forgotten. Every block processes L = patches + prefix
    tokens; only the patch embedding skips the prefix tokens.""")
def prefix_tokens_forgotten(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
    n, _, h = _parts(image_size, patch_size, dim, depth, num_classes, in_chans, mlp_ratio, prefix_tokens)
    return 2 * (n * in_chans * patch_size**2 * dim + depth * (4 * n * dim**2 + 2 * n**2 * dim + 2 * n * dim * h) + dim * num_classes)


@CONTRACT.mistake("vit_forward_flops", """the MLP seems counted as one linear layer. It has two,
    D -> h and h -> D, of L D h multiply-accumulates each.""")
def mlp_counted_once(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
    n, L, h = _parts(image_size, patch_size, dim, depth, num_classes, in_chans, mlp_ratio, prefix_tokens)
    return 2 * (n * in_chans * patch_size**2 * dim + depth * (4 * L * dim**2 + 2 * L**2 * dim + L * dim * h) + dim * num_classes)


@CONTRACT.mistake("vit_forward_flops", """the head seems applied to every token. The head reads
    one pooled vector per image (the class token, or the mean of the tokens): D x num_classes
    multiply-accumulates once.""")
def head_on_every_token(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
    n, L, h = _parts(image_size, patch_size, dim, depth, num_classes, in_chans, mlp_ratio, prefix_tokens)
    return 2 * (n * in_chans * patch_size**2 * dim + depth * (4 * L * dim**2 + 2 * L**2 * dim + 2 * L * dim * h) + L * dim * num_classes)


@CONTRACT.mistake("vit_forward_flops", """the patch embedding seems missing: each of the patches
    is a C p^2 -> D linear map (the convolution with stride p) before the first block.""")
def patch_embedding_forgotten(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
    n, L, h = _parts(image_size, patch_size, dim, depth, num_classes, in_chans, mlp_ratio, prefix_tokens)
    return 2 * (depth * (4 * L * dim**2 + 2 * L**2 * dim + 2 * L * dim * h) + dim * num_classes)

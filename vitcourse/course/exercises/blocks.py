"""Exercise 10 (blocks): the parallel Transformer block, with layer scale.

The chapter pages (*The whole ViT*, *Depth and stability*) write out and print the sequential
block, Pre-LN and Post-LN, with layer scale. The exercise asks for the variant they do not
print, the parallel block of GPT-J, PaLM and ViT-22B, in which attention and the MLP both read
the block's input and their outputs are added to it together:

- ``ParallelBlock(dim, num_heads, mlp_ratio=4.0, init_values=None)``: ``(B, N, D)`` -> same,
  ``x + ls1(attn(norm1(x))) + ls2(mlp(norm2(x)))``, with timm's parameter names (``norm1``,
  ``attn.qkv``, ``attn.proj``, ``ls1.gamma``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``),
  LayerNorms with ``eps=1e-6``, the MLP ``int(dim * mlp_ratio)`` wide with the exact GELU, and
  layer scale (a learned per-channel factor starting at ``init_values``) only when
  ``init_values`` is given. Its state dict loads into the course's sequential ``Block`` with
  the same arguments, which the notebook's experiment uses.
"""

from __future__ import annotations

import torch
from torch import nn

from ...models.attention import Attention
from ...models.vit import LayerScale, Mlp
from ..contracts import Contract, draw_float, draw_int
from ..expectations import GradingFailure, expect_raises, expect_tensor

__all__ = ["CONTRACT", "ParallelBlock"]

CONTRACT = Contract(
    "10_blocks",
    "the parallel Transformer block (GPT-J, ViT-22B) with layer scale",
    names={"ParallelBlock": "(dim, num_heads, mlp_ratio=4.0, init_values=None)"},
    reference_answers={"ParallelBlock": "vitcourse.course.exercises.blocks.ParallelBlock"},
)

EPS = 1e-6  # timm's and the JAX ViT's LayerNorm eps


# ---- the reference -----------------------------------------------------------------------------


class ParallelBlock(nn.Module):
    """The parallel block, ``(B, N, D)`` -> ``(B, N, D)``: ``x + ls1(attn(norm1(x))) +
    ls2(mlp(norm2(x)))``; ``ls1``, ``ls2`` are :class:`LayerScale` with ``init_values``, or the
    identity (and absent from the state dict) when it is None. Raises ``ValueError`` when
    ``dim`` is not divisible by ``num_heads``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, init_values: float | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.ls1 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # both branches read the block's input; their outputs join the residual stream together
        return x + self.ls1(self.attn(self.norm1(x))) + self.ls2(self.mlp(self.norm2(x)))


# ---- the clauses: 10 points ----------------------------------------------------------------------


def _random_state(rng, dim: int, num_heads: int, mlp_ratio: float, init_values) -> dict:
    """The reference's state dict with every entry random: LayerNorm weights away from 1 and
    distinct biases, a gamma per channel, so that a branch wired to the wrong norm or scale shows."""
    reference = ParallelBlock(dim, num_heads, mlp_ratio, init_values)
    state = {}
    for key, value in reference.state_dict().items():
        noise = torch.randn(value.shape, generator=rng)
        if key.endswith("gamma"):
            state[key] = 0.5 + 0.4 * noise.abs()
        elif key.startswith("norm") and key.endswith("weight"):
            state[key] = 1.0 + 0.5 * noise
        else:
            state[key] = (0.3 if value.dim() < 2 else value.shape[-1] ** -0.5) * noise
    return state


def _expected(state: dict, args: tuple, x: torch.Tensor) -> torch.Tensor:
    reference = ParallelBlock(*args)
    reference.load_state_dict(state)
    reference.eval()
    with torch.no_grad():
        return reference(x)


def _check_forward(student, rng, args: tuple, x_scale: float = 1.0) -> None:
    state = _random_state(rng, *args)
    x = x_scale * torch.randn(2, draw_int(rng, 3, 6), args[0], generator=rng)
    label = f"ParallelBlock{args}"
    got = student.module("ParallelBlock", init_args=args, state_dict=state, inputs=(x,))
    if type(got) is not dict or "output" not in got:
        raise GradingFailure(f"{label}: the module did not run")
    expected = _expected(state, args, x)
    # the reference's parallel structure, against its own parts run one by one
    parts = ParallelBlock(*args)
    parts.load_state_dict(state)
    with torch.no_grad():
        by_hand = x + parts.ls1(parts.attn(parts.norm1(x))) + parts.ls2(parts.mlp(parts.norm2(x)))
    assert torch.allclose(expected, by_hand, atol=1e-6)
    where = f"{label} with random weights on inputs of scale {x_scale:g}, output"
    expect_tensor(got["output"], expected, name=where)


@CONTRACT.clause("ParallelBlock", points=3)
def forward_with_layer_scale(student, rng):
    """With layer scale (init_values given): the output for random weights, norms and gammas."""
    heads = draw_int(rng, 2, 4)
    _check_forward(student, rng, (heads * draw_int(rng, 3, 6), heads, 2.0, draw_float(rng, 0.01, 1.0)))


@CONTRACT.clause("ParallelBlock", points=2)
def forward_without_layer_scale(student, rng):
    """Without layer scale (init_values=None) and a non-integer mlp_ratio: the output for random weights."""
    heads = draw_int(rng, 1, 3)
    _check_forward(student, rng, (heads * draw_int(rng, 4, 8), heads, 2.5, None))


@CONTRACT.clause("ParallelBlock", points=2)
def timm_parameter_names(student, rng):
    """The state dict has timm's keys and shapes (ls1.gamma, ls2.gamma only with layer scale); a new block's gammas are init_values."""
    dim, heads, ratio = 4 * draw_int(rng, 2, 4), 4, draw_float(rng, 1.0, 3.0, digits=1)
    for init_values in (1e-5, None):
        args = (dim, heads, ratio, init_values)
        # extra_repr: a harmless method that returns a string, so that no forward runs here
        got = student.module("ParallelBlock", init_args=args, method="extra_repr")
        expected = {k: tuple(v.shape) for k, v in ParallelBlock(*args).state_dict().items()}
        shapes = got.get("state_dict_shapes") if type(got) is dict else None
        if shapes != expected:
            missing, extra = sorted(set(expected) - set(shapes or {})), sorted(set(shapes or {}) - set(expected))
            wrong = sorted(k for k in set(expected) & set(shapes or {}) if shapes[k] != expected[k])
            raise GradingFailure(f"ParallelBlock{args}: the state dict differs from timm's names and shapes: "
                                 f"missing {missing}, unexpected {extra}, wrong shapes {wrong}")
    # the forward clauses load random gammas, so only a new block shows where layer scale starts
    args = (dim, heads, ratio, draw_float(rng, 0.05, 0.5))
    for key in ("ls1.gamma", "ls2.gamma"):
        got = student.module("ParallelBlock", init_args=args, method="get_parameter", inputs=(key,))
        expect_tensor(got.get("output") if type(got) is dict else got, torch.full((dim,), args[3]),
                      name=f"ParallelBlock{args}: {key} of a new block")


@CONTRACT.clause("ParallelBlock", points=1)
def tiny_inputs(student, rng):
    """On inputs of scale 1e-3, where the LayerNorms' eps (1e-6) matters: the output."""
    heads = draw_int(rng, 1, 2)
    _check_forward(student, rng, (heads * draw_int(rng, 4, 6), heads, 2.0, 0.5), x_scale=1e-3)


@CONTRACT.clause("ParallelBlock", points=1)
def rejects_heads_that_do_not_divide(student, rng):
    """A dim that num_heads does not divide raises ValueError."""
    heads = draw_int(rng, 3, 5)
    dim = heads * draw_int(rng, 2, 4) + 1
    expect_raises(lambda: student.module("ParallelBlock", init_args=(dim, heads)), "ValueError",
                  name=f"ParallelBlock({dim}, {heads})")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


class _Parts(torch.nn.Module):
    """The parameters of the right answer (timm's names), for the wrong forwards below; built
    from the course's Attention, Mlp and LayerScale, as a student may."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None, eps=1e-6):
        from vitcourse.models.attention import Attention
        from vitcourse.models.vit import LayerScale, Mlp

        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.ls1 = LayerScale(dim, init_values) if init_values is not None else torch.nn.Identity()
        self.norm2 = torch.nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values is not None else torch.nn.Identity()


@CONTRACT.mistake("ParallelBlock", """this is the sequential Pre-LN block: the MLP seems to read
    x + ls1(attn(norm1(x))), the stream after attention. In the parallel block both branches
    read the block's input x, and both outputs are added to it at once.""")
class SequentialBlock(_Parts):
    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


@CONTRACT.mistake("ParallelBlock", """both branches seem to read norm1(x). Each branch has its
    own LayerNorm: attention reads norm1(x), the MLP reads norm2(x) (their learned weights and
    biases differ once trained).""")
class OneNormForBoth(_Parts):
    def forward(self, x):
        h = self.norm1(x)
        return x + self.ls1(self.attn(h)) + self.ls2(self.mlp(h))


@CONTRACT.mistake("ParallelBlock", """the LayerNorm seems to come after the sum (Post-LN):
    norm(x + attn(x) + mlp(x)). The block asked for is Pre-LN: each branch reads a normalised
    copy of x, and the residual stream itself is never normalised.""")
class PostNorm(_Parts):
    def forward(self, x):
        return self.norm2(self.norm1(x + self.ls1(self.attn(x)) + self.ls2(self.mlp(x))))


@CONTRACT.mistake("ParallelBlock", """the LayerNorms seem to use eps=1e-5, PyTorch's default,
    which shows on small inputs. ViT checkpoints (timm, the JAX code) use eps=1e-6: pass it
    when you build each nn.LayerNorm.""")
class DefaultEps(_Parts):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
        super().__init__(dim, num_heads, mlp_ratio, init_values, eps=1e-5)

    def forward(self, x):
        return x + self.ls1(self.attn(self.norm1(x))) + self.ls2(self.mlp(self.norm2(x)))


@CONTRACT.mistake("ParallelBlock", """the layer scales seem to start at 1, whatever init_values
    says. Layer scale starts each gamma at init_values (e.g. 1e-5), so that a deep network begins
    close to the identity; fill gamma with init_values when you build it.""")
class ScalesStartAtOne(_Parts):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
        super().__init__(dim, num_heads, mlp_ratio, None if init_values is None else 1.0)

    def forward(self, x):
        return x + self.ls1(self.attn(self.norm1(x))) + self.ls2(self.mlp(self.norm2(x)))


@CONTRACT.mistake("ParallelBlock", """the two layer scales seem swapped or shared: ls1 must scale
    the attention branch and ls2 the MLP branch, each with its own gamma.""")
class ScalesSwapped(_Parts):
    def forward(self, x):
        return x + self.ls2(self.attn(self.norm1(x))) + self.ls1(self.mlp(self.norm2(x)))

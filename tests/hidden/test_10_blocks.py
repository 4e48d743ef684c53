"""Hidden tests for exercise 10 (blocks): ``Block`` against ``vitcourse.models.vit.Block``, Pre-LN and
Post-LN, loaded with the reference's weights (timm names)."""

import torch

from vitcourse.grading.hidden import GradingFailure, expect_tensor, points
from vitcourse.models.statedict import state_dict_diff
from vitcourse.models.vit import Block as ReferenceBlock

EXERCISE = "10_blocks"
REFERENCE_ANSWERS = {"Block": "vitcourse.models.vit.Block"}  # the package's answers, refused to the submission


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def _reference(rng, dim, heads, mlp_ratio, norm_first):
    block = ReferenceBlock(dim, heads, mlp_ratio=mlp_ratio, norm_first=norm_first).eval()
    with torch.no_grad():  # random weights, LayerNorm affine included, from the grader's rng
        for name, param in block.named_parameters():
            noise = torch.randn(param.shape, generator=rng)
            if name.startswith("norm") and name.endswith("weight"):
                param.copy_(1 + 0.2 * noise)
            else:
                param.copy_(noise * (0.2 if param.dim() > 1 else 0.1))
    return block


def _kwargs(mlp_ratio, norm_first):
    kwargs = {}
    if mlp_ratio != 4.0:
        kwargs["mlp_ratio"] = mlp_ratio
    if norm_first is not True:
        kwargs["norm_first"] = norm_first
    return kwargs


def _run(student, rng, dim, heads, mlp_ratio=4.0, norm_first=True, batch=2, tokens=5, scale=1.0):
    reference = _reference(rng, dim, heads, mlp_ratio, norm_first)
    x = scale * torch.randn(batch, tokens, dim, generator=rng)
    kwargs = _kwargs(mlp_ratio, norm_first)
    name = f"Block({dim}, {heads}{''.join(f', {k}={v}' for k, v in kwargs.items())})"
    reply = student.module("Block", init_args=(dim, heads), init_kwargs=kwargs,
                           state_dict=reference.state_dict(), inputs=(x,))
    with torch.no_grad():
        expected = reference(x)
    expect_tensor(reply["output"], expected, name=f"{name} on x of shape {tuple(x.shape)}")


@points(2)
def test_parameter_names_and_shapes(student, rng):
    """norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2 with timm's shapes."""
    heads = _int(rng, 1, 4)
    dim = heads * _int(rng, 2, 6)
    x = torch.randn(1, 3, dim, generator=rng)
    reply = student.module("Block", init_args=(dim, heads), init_kwargs={"mlp_ratio": 2.0}, inputs=(x,))
    diff = state_dict_diff(reply["state_dict_shapes"], ReferenceBlock(dim, heads, mlp_ratio=2.0).state_dict())
    if diff:
        raise GradingFailure(f"Block({dim}, {heads}, mlp_ratio=2.0): parameters differ from the contract: {diff.describe('; ')}")


@points(3)
def test_pre_ln_forward(student, rng):
    """Pre-LN (the default): x + attn(norm1(x)), then x + mlp(norm2(x))."""
    heads = _int(rng, 1, 4)
    _run(student, rng, heads * _int(rng, 2, 6), heads, batch=_int(rng, 1, 3), tokens=_int(rng, 1, 6))


@points(3)
def test_post_ln_forward(student, rng):
    """Post-LN (norm_first=False): norm1(x + attn(x)), then norm2(x + mlp(x))."""
    heads = _int(rng, 1, 4)
    _run(student, rng, heads * _int(rng, 2, 6), heads, norm_first=False, batch=_int(rng, 1, 3), tokens=_int(rng, 1, 6))


@points(1)
def test_mlp_ratio(student, rng):
    """mlp_ratio sets the hidden width of the MLP."""
    _run(student, rng, 8, 2, mlp_ratio=float(_int(rng, 1, 3)), norm_first=True)


@points(1)
def test_layernorm_eps(student, rng):
    """LayerNorms use eps=1e-6 (visible on inputs of small scale)."""
    _run(student, rng, 8, 2, norm_first=False, scale=1e-2)

"""Measurements of a ViT: attention rollout, compute and memory counts, signal-to-noise.

Each function here is the reference the chapters plot and the exercises are graded against.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from .validation import check_finite_positive


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _positive_number(value, name: str) -> float:
    return float(check_finite_positive(value, name))


# ---- attention rollout (Abnar & Zuidema, 2020) ---------------------------------------------


def attention_rollout(attentions: Sequence[torch.Tensor], residual_weight: float = 0.5) -> torch.Tensor:
    """How much each output token draws on each input token, through all layers.

    Each layer's attention is averaged over heads and mixed with the identity to account for
    the residual connection, ``(1 - w) A + w I``, its rows renormalised to sum to one; the
    layers are then multiplied, later layers on the left: ``R = A_L ... A_2 A_1``.

    Args:
        attentions: per-layer weights in layer order, each ``(B, heads, N, N)``.
        residual_weight: w in [0, 1); ``0`` gives the plain product of the head-averaged maps.

    Returns:
        ``(B, N, N)``; row i says where output token i's information comes from.
    """
    _check_rollout_args(attentions, residual_weight)
    num_tokens = attentions[0].shape[-1]
    eye = torch.eye(num_tokens, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout = None
    for layer in attentions:
        mixed = (1 - residual_weight) * layer.mean(dim=1) + residual_weight * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def _check_rollout_args(attentions, residual_weight) -> None:
    if isinstance(attentions, torch.Tensor) or not isinstance(attentions, Sequence) or not attentions:
        raise ValueError("attentions must be a non-empty list of (B, heads, N, N) tensors")
    if isinstance(residual_weight, bool) or not isinstance(residual_weight, (int, float)) or not 0 <= residual_weight < 1:
        raise ValueError(f"residual_weight must be in [0, 1), got {residual_weight!r}")
    first = attentions[0]
    for i, layer in enumerate(attentions):
        if not isinstance(layer, torch.Tensor) or layer.dim() != 4 or layer.shape[-1] != layer.shape[-2]:
            raise ValueError(f"attentions[{i}] must be a (B, heads, N, N) tensor, got {getattr(layer, 'shape', type(layer))}")
        if not layer.is_floating_point() or layer.dtype != first.dtype:
            raise TypeError(f"attentions must be floating-point tensors of one dtype; attentions[{i}] is "
                            f"{layer.dtype}, attentions[0] is {first.dtype}")
        if (layer.shape[0], layer.shape[2]) != (first.shape[0], first.shape[2]):
            raise ValueError(f"attentions[{i}] has shape {tuple(layer.shape)}, attentions[0] has {tuple(first.shape)}")


# ---- compute -------------------------------------------------------------------------------


def mhsa_macs(seq_len: int, dim: int) -> int:
    """Multiply-accumulates of one multi-head self-attention layer on L tokens of width D.

    ``3 L D^2`` for the q, k, v projections, ``L^2 D`` for ``q k^T``, ``L^2 D`` for the
    weighted sum of values, ``L D^2`` for the output projection: ``4 L D^2 + 2 L^2 D``
    (independent of the number of heads; softmax and biases are not counted).
    """
    length, width = _positive_int(seq_len, "seq_len"), _positive_int(dim, "dim")
    return 4 * length * width**2 + 2 * length**2 * width


def attention_crossover(dim: int) -> int:
    """The smallest sequence length L where the ``2 L^2 D`` term exceeds ``4 L D^2``: ``2D + 1``."""
    return 2 * _positive_int(dim, "dim") + 1


# ---- memory --------------------------------------------------------------------------------


def attention_map_bytes(depth: int, heads: int, seq_len: int, bytes_per_element: int = 4) -> int:
    """Bytes of the attention maps a backward pass keeps: ``T * H * L^2 * b``."""
    return (
        _positive_int(depth, "depth")
        * _positive_int(heads, "heads")
        * _positive_int(seq_len, "seq_len") ** 2
        * _positive_int(bytes_per_element, "bytes_per_element")
    )


def checkpointed_qk_bytes(
    depth: int, heads: int, seq_len: int, head_dim: int, bytes_per_element: int = 4
) -> int:
    """Bytes of q and k kept instead of the maps when attention is recomputed: ``T*H*2*L*d*b``."""
    return (
        _positive_int(depth, "depth")
        * _positive_int(heads, "heads")
        * 2
        * _positive_int(seq_len, "seq_len")
        * _positive_int(head_dim, "head_dim")
        * _positive_int(bytes_per_element, "bytes_per_element")
    )


# ---- the patch-size signal-to-noise argument -----------------------------------------------


def min_object_size(patch_size: int, noise_std: float, contrast: float, z: float = 3.0) -> float:
    """Smallest object side s that a patch mean detects at z noise standard deviations.

    A p x p patch mean has noise std ``sigma / p``; an s x s object of contrast c shifts it by
    ``c s^2 / p^2``. Detection needs ``c s^2 / p^2 >= z sigma / p``, so
    ``s = sqrt(z * sigma * p / c)``: the smallest visible object grows like ``sqrt(p)``.
    """
    p = _positive_number(patch_size, "patch_size")
    sigma = _positive_number(noise_std, "noise_std")
    c = _positive_number(contrast, "contrast")
    z = _positive_number(z, "z")
    return math.sqrt(z * sigma * p / c)


# ---- measured memory: what autograd keeps for the backward pass ----------------------------


def _tensors(value, name: str) -> list[torch.Tensor]:
    """A tensor or an iterable of tensors, as a list."""
    tensors = [value] if isinstance(value, torch.Tensor) else list(value) if isinstance(value, Iterable) else None
    if tensors is None or not all(isinstance(tensor, torch.Tensor) for tensor in tensors):
        raise TypeError(f"{name} must be a tensor or an iterable of tensors (such as model.parameters()), "
                        f"got {type(value).__name__}")
    return tensors


class SavedTensorMeter:
    """Count the bytes of the tensors autograd saves for backward while the block runs.

    ``with SavedTensorMeter(exclude=model.parameters()) as meter: loss = model(x).sum()``
    then ``meter.total_bytes``. Each tensor saved for backward is traced to its storage, and
    each storage is counted once (``q``, ``k`` and ``v`` are views of one ``qkv`` output, and
    one tensor is often saved by several operations); storages of ``exclude`` (the
    parameters, which live in memory whether or not we train) are not counted. This is the
    activation memory a training step holds between forward and backward; the temporaries
    that live only inside one operation are not part of it.
    """

    def __init__(self, exclude=()):
        self._excluded = {tensor.untyped_storage().data_ptr() for tensor in _tensors(exclude, "exclude")}
        self._storages: dict[int, int] = {}
        self._hooks = None

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self._excluded:
            self._storages[pointer] = storage.nbytes()
        return tensor  # keep the tensor itself: measuring must not change what is saved

    def __enter__(self) -> SavedTensorMeter:
        self._storages.clear()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None

    @property
    def total_bytes(self) -> int:
        """Bytes of the distinct storages saved for backward inside the ``with`` block."""
        return sum(self._storages.values())

    @property
    def num_storages(self) -> int:
        return len(self._storages)


# ---- signal propagation through depth ------------------------------------------------------


def ring_attention(num_tokens: int, sharpness: float) -> torch.Tensor:
    """The attention of a head that looks only at positions, on a ring of ``num_tokens`` tokens.

    Token i sits at angle ``theta_i = 2 pi i / N`` and has query = key =
    ``sqrt(sharpness) * (cos theta_i, sin theta_i)``, so its logits are
    ``sharpness * cos(theta_i - theta_j)`` and ``A = softmax(Q K^T)`` (float64). ``A`` is
    row-stochastic and circulant (it depends only on ``i - j``), hence diagonalised by the
    Fourier modes of the ring. Returns ``(N, N)``.
    """
    n = _positive_int(num_tokens, "num_tokens")
    kappa = _positive_number(sharpness, "sharpness")
    theta = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    features = math.sqrt(kappa) * torch.stack([theta.cos(), theta.sin()], dim=1)  # (N, 2)
    return (features @ features.T).softmax(dim=-1)


def token_spread(x: torch.Tensor) -> torch.Tensor:
    """How far the tokens are from all being equal: ``||x - mean_tokens(x)|| / ||x||`` per item.

    ``x`` is ``(B, N, D)``; returns ``(B,)`` in [0, 1]. Zero means every token carries the same
    vector (the "rank collapse" of deep pure-attention networks).
    """
    _check_tokens(x)
    centred = x - x.mean(dim=1, keepdim=True)
    # An all-zero item has every token equal: spread 0 (and not 0 / 0).
    return centred.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)


def _check_tokens(x) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a (B, N, D) tensor, got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")


@torch.no_grad()
def residual_stream_rms(blocks: Sequence[torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Root-mean-square of the residual stream before the first block and after each block.

    ``blocks`` are applied in order to ``x`` ``(B, N, D)``; returns ``(len(blocks) + 1,)``.
    """
    if isinstance(blocks, torch.nn.Module) and not isinstance(blocks, (torch.nn.Sequential, torch.nn.ModuleList)):
        raise TypeError(f"blocks must be a sequence of blocks (such as model.blocks), got {type(blocks).__name__}")
    _check_tokens(x)
    values = [x.pow(2).mean().sqrt()]
    for block in blocks:
        x = block(x)
        values.append(x.pow(2).mean().sqrt())
    return torch.stack(values)


# ---- receptive fields ------------------------------------------------------------------------


def input_gradient_map(fn, x: torch.Tensor, index) -> torch.Tensor:
    """``|d fn(x)[index] / d x|`` summed over the channels: which pixels one output depends on.

    ``x`` is one image ``(1, C, H, W)``; ``fn`` maps it to any tensor and ``index`` picks the
    output entries to differentiate (their sum if it selects several, e.g. all channels of one
    position of a feature map). The support of the result (its non-zero pixels) is the
    theoretical receptive field of that output; its profile is the *effective* receptive field
    (Luo et al., 2016). Returns ``(H, W)``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image of shape (1, C, H, W), got {getattr(x, 'shape', type(x))}")
    x = x.detach().clone().requires_grad_(True)
    fn(x)[index].sum().backward()
    return x.grad.abs().sum(dim=(0, 1))

"""The shapes a model's layers see, measured in one forward pass (forward hooks).

``layer_shapes(model, x)`` runs ``model(x)`` once with a hook on every submodule and returns, for
each, the shape of the tensor that went in and of the tensor that came out. A model built on the
``meta`` device (parameters with shapes but no storage) runs too, so even ViT-B/16's shapes cost
nothing. The architecture figure of chapter 1 (``analysis.figures.plot_vit_architecture``)
annotates its boxes with them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..validation import check_tensor

__all__ = ["layer_shapes"]


def _first_tensor(value):
    """``value`` if it is a tensor, else the first tensor in a tuple or list (or None)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((item for item in value if isinstance(item, torch.Tensor)), None)
    return None


def layer_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Run ``model(x)`` once and record each submodule's input and output shape.

    Args:
        model: any module; it runs as it is (train or eval mode), without gradients.
        x: its input, e.g. images ``(B, C, H, W)``; a ``meta`` tensor works (shapes, no values).

    Returns:
        ``{name: (input shape, output shape)}`` for every submodule that ran, named as in
        ``model.named_modules()`` (e.g. ``"blocks.0.attn"``), in the order their forward passes
        finished, and last ``""`` for the whole model. The input is the first tensor argument,
        the output the first tensor returned; a module that runs several times keeps its first
        call. For a ViT, ``"blocks.0"``'s input is the sequence after the class token and the
        position embeddings, ``(B, 1 + N, D)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_tensor(x, "x")
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def recorder(name: str):
        def hook(module, args, output):
            given, returned = _first_tensor(args), _first_tensor(output)
            if name not in shapes and given is not None and returned is not None:
                shapes[name] = (tuple(given.shape), tuple(returned.shape))

        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in model.named_modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return shapes

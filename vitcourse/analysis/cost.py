"""What attention costs, counted: multiply-accumulates and the memory a backward pass keeps.

Closed forms for chapter 1.5 and exercises 08 and 09; :mod:`vitcourse.analysis.memory`
measures the same memory on a running model.
"""

from __future__ import annotations

from ..validation import check_positive_int

__all__ = ["mhsa_macs", "attention_crossover", "attention_map_bytes", "checkpointed_qk_bytes"]


# ---- compute -------------------------------------------------------------------------------


def mhsa_macs(seq_len: int, dim: int) -> int:
    """Multiply-accumulates of one multi-head self-attention layer on L tokens of width D.

    ``3 L D^2`` for the q, k, v projections, ``L^2 D`` for ``q k^T``, ``L^2 D`` for the
    weighted sum of values, ``L D^2`` for the output projection: ``4 L D^2 + 2 L^2 D``
    (independent of the number of heads; softmax and biases are not counted).
    """
    length, width = check_positive_int(seq_len, "seq_len"), check_positive_int(dim, "dim")
    return 4 * length * width**2 + 2 * length**2 * width


def attention_crossover(dim: int) -> int:
    """The smallest sequence length L where the ``2 L^2 D`` term exceeds ``4 L D^2``: ``2D + 1``."""
    return 2 * check_positive_int(dim, "dim") + 1


# ---- memory --------------------------------------------------------------------------------


def attention_map_bytes(depth: int, heads: int, seq_len: int, bytes_per_element: int = 4) -> int:
    """Bytes of the attention maps a backward pass keeps: ``T * H * L^2 * b``."""
    return (
        check_positive_int(depth, "depth")
        * check_positive_int(heads, "heads")
        * check_positive_int(seq_len, "seq_len") ** 2
        * check_positive_int(bytes_per_element, "bytes_per_element")
    )


def checkpointed_qk_bytes(
    depth: int, heads: int, seq_len: int, head_dim: int, bytes_per_element: int = 4
) -> int:
    """Bytes of q and k kept instead of the maps when attention is recomputed: ``T*H*2*L*d*b``."""
    return (
        check_positive_int(depth, "depth")
        * check_positive_int(heads, "heads")
        * 2
        * check_positive_int(seq_len, "seq_len")
        * check_positive_int(head_dim, "head_dim")
        * check_positive_int(bytes_per_element, "bytes_per_element")
    )

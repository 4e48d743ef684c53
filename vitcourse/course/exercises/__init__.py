"""The exercises' contracts, one module per exercise (see :mod:`vitcourse.course.contracts`).

Each module defines ``CONTRACT`` (names, clauses with points, common mistakes) and the package's
own answers it compares with. ``check(name, obj)`` in a student's notebook finds the contract of
``name`` here; ``tests/hidden/test_<exercise>.py`` builds the grader's tests from the same
contract. Every exercise has one.
"""

from __future__ import annotations

from ..contracts import Contract
from . import (
    attention,
    blocks,
    contrastive,
    cost,
    distillation,
    generation,
    long_range,
    masking,
    memory,
    mhsa,
    patch_snr,
    patches,
    positions,
    resolution,
    rollout,
    segmentation,
)

__all__ = ["CONTRACTS", "contract_for"]

# In the exercises' order, 01 to 16.
_MODULES = (patches, patch_snr, attention, mhsa, positions, rollout, long_range, cost, memory, blocks,
            distillation, resolution, segmentation, masking, contrastive, generation)
CONTRACTS: dict[str, Contract] = {module.CONTRACT.exercise: module.CONTRACT for module in _MODULES}


def contract_for(name: str) -> Contract | None:
    """The contract in which the student defines ``name``, or None."""
    for contract in CONTRACTS.values():
        if name in contract.names:
            return contract
    return None

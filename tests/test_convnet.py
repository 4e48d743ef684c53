"""PatchCNN: a ViT's patch embedding, then 3 x 3 convolutions on the grid of patches.

Its receptive field is checked against autograd (the support of an output's input gradient),
not against the formula it states; depth 0 is checked to be a bag of patches.
"""

from __future__ import annotations

import pytest
import torch

from vitcourse.analysis.attention import input_gradient_map
from vitcourse.models.convnet import PatchCNN


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_patch_cnn_sees_a_window_of_2_depth_plus_1_cells(depth):
    torch.manual_seed(depth)
    model = PatchCNN(depth, patch_size=4, num_classes=3, width=8).eval()
    assert model(torch.randn(2, 1, 32, 24)).shape == (2, 3)
    assert model.forward_features(torch.randn(2, 1, 32, 24)).shape == (2, 8, 8, 6)
    assert model.receptive_field == 2 * depth + 1
    support = torch.zeros(32, 32, dtype=torch.bool)
    for _ in range(3):  # a pixel counts when some input gives it a non-zero gradient
        gradient = input_gradient_map(model.forward_features, torch.randn(1, 1, 32, 32), (0, slice(None), 4, 3))
        support |= gradient > 0
    window = torch.zeros(32, 32, dtype=torch.bool)
    window[4 * (4 - depth) : 4 * (5 + depth), 4 * (3 - depth) : 4 * (4 + depth)] = True  # cells 4 +- depth, 3 +- depth
    assert torch.equal(support, window)


def _shuffle_cells(x, p, order):
    """Move the p x p cells of ``x`` (B, C, H, W) to the row-major positions ``order``."""
    b, c, h, w = x.shape
    cells = x.reshape(b, c, h // p, p, w // p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, -1, p, p)
    cells = cells[:, :, order].reshape(b, c, h // p, w // p, p, p)
    return cells.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


def test_depth_zero_is_a_bag_of_patches_and_depth_one_is_not():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16, 16)
    order = torch.randperm(16)
    assert not torch.equal(_shuffle_cells(x, 4, order), x)
    bag = PatchCNN(0, patch_size=4, num_classes=3, width=8).eval()
    torch.testing.assert_close(bag(_shuffle_cells(x, 4, order)), bag(x), atol=1e-6, rtol=0)
    mixing = PatchCNN(1, patch_size=4, num_classes=3, width=8).eval()
    assert (mixing(_shuffle_cells(x, 4, order)) - mixing(x)).abs().max() > 1e-3


def test_patch_cnn_trains_and_refuses_bad_input():
    model = PatchCNN(1, patch_size=2, num_classes=2, width=4)
    model(torch.randn(8, 1, 6, 6)).sum().backward()  # train mode: BatchNorm takes batch statistics
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="depth"):
        PatchCNN(-1)
    with pytest.raises(TypeError, match="depth"):
        PatchCNN(True)
    with pytest.raises(ValueError, match="patch_size"):
        PatchCNN(1, patch_size=0)
    with pytest.raises(ValueError, match="multiples of patch_size=4"):
        PatchCNN(1, patch_size=4)(torch.randn(1, 1, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        PatchCNN(1)(torch.randn(1, 3, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        PatchCNN(1)([[0.0]])

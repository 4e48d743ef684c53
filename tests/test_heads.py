"""Tests for chapter 2's pieces (segmentation head, mean IoU, masking, contrastive loss, causal attention), each against an independent computation."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score

from vitcourse.analysis.metrics import mean_iou
from vitcourse.models.attention import Attention
from vitcourse.models.heads import SegmentationHead
from vitcourse.models.masking import gather_tokens, random_masking
from vitcourse.models.vit import Block
from vitcourse.training.losses import contrastive_loss


def test_segmentation_head_places_each_token_on_its_patch():
    torch.manual_seed(0)
    rows, cols, p, k, d = 2, 3, 4, 5, 8
    head = SegmentationHead(d, k, p, (rows, cols))
    tokens = torch.randn(2, rows * cols, d)
    out = head(tokens)
    assert out.shape == (2, k, rows * p, cols * p)
    # Reference: apply the linear map token by token and paint the patch by hand.
    expected = torch.zeros_like(out)
    for b in range(2):
        for i in range(rows * cols):
            r, c = divmod(i, cols)
            values = tokens[b, i] @ head.proj.weight.T + head.proj.bias
            expected[b, :, r * p : (r + 1) * p, c * p : (c + 1) * p] = values.reshape(k, p, p)
    torch.testing.assert_close(out, expected)


def test_segmentation_head_rejects_wrong_tokens():
    head = SegmentationHead(8, 3, 2, (2, 2))
    with pytest.raises(ValueError, match="tokens must have shape"):
        head(torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="grid_size"):
        SegmentationHead(8, 3, 2, (2,))
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationHead(8, 0, 2, (2, 2))


def test_mean_iou_matches_sklearn():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, size=(3, 7, 7))
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, 4, size=target.shape))
    miou, iou = mean_iou(torch.from_numpy(pred), torch.from_numpy(target), 4)
    reference = jaccard_score(target.ravel(), pred.ravel(), average=None, labels=[0, 1, 2, 3])
    np.testing.assert_allclose(iou.numpy(), reference, rtol=1e-12)
    assert miou == pytest.approx(reference.mean(), rel=1e-12)


def test_mean_iou_skips_absent_classes_and_checks_input():
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 1, 1, 1])
    miou, iou = mean_iou(pred, target, 3)
    assert math.isnan(iou[2].item())
    assert miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="out of range for num_classes=3"):
        mean_iou(torch.tensor([3]), torch.tensor([0]), 3)
    with pytest.raises(TypeError, match="integer"):
        mean_iou(torch.tensor([0.0]), torch.tensor([0.0]), 3)
    with pytest.raises(ValueError, match="shape"):
        mean_iou(torch.tensor([0, 1]), torch.tensor([0]), 3)


def test_random_masking_keeps_the_right_number_and_agrees_with_mask():
    keep, mask = random_masking(64, 16, 0.75, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (64, 4) and mask.shape == (64, 16)
    assert (mask.sum(1) == 12).all()
    for row_keep, row_mask in zip(keep, mask, strict=True):
        assert sorted(row_keep.tolist()) == row_keep.tolist()
        assert set(row_keep.tolist()) == set((~row_mask).nonzero().flatten().tolist())
    # different images get different subsets, and the generator makes it reproducible
    assert len({tuple(r.tolist()) for r in keep}) > 30
    keep2, _ = random_masking(64, 16, 0.75, generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep, keep2)
    # every position is hidden about equally often
    counts = random_masking(4000, 16, 0.5, generator=torch.Generator().manual_seed(1))[1].float().mean(0)
    assert (counts - 0.5).abs().max() < 0.04
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(2, 16, 1.0)


def test_gather_tokens_matches_indexing():
    tokens = torch.randn(3, 6, 4)
    index = torch.tensor([[0, 2], [5, 1], [3, 3]])
    expected = torch.stack([tokens[b, index[b]] for b in range(3)])
    assert torch.equal(gather_tokens(tokens, index), expected)
    with pytest.raises(ValueError):
        gather_tokens(tokens, index[0])


def test_contrastive_loss_matches_float64_reference():
    torch.manual_seed(0)
    img, txt, tau = torch.randn(5, 3), torch.randn(5, 3), 0.3
    a = img.double() / img.double().norm(dim=1, keepdim=True)
    b = txt.double() / txt.double().norm(dim=1, keepdim=True)
    logits = (a @ b.T / tau).numpy()
    row = -np.mean([logits[i, i] - np.log(np.exp(logits[i]).sum()) for i in range(5)])
    col = -np.mean([logits[i, i] - np.log(np.exp(logits[:, i]).sum()) for i in range(5)])
    assert contrastive_loss(img, txt, tau).item() == pytest.approx((row + col) / 2, rel=1e-5)
    # aligned pairs at low temperature: loss near zero
    eye = torch.eye(4)
    assert contrastive_loss(eye, eye, 0.01).item() < 1e-6
    with pytest.raises(ValueError, match="temperature"):
        contrastive_loss(img, txt, 0.0)


def _reference_causal_attention(layer: Attention, x: torch.Tensor) -> torch.Tensor:
    """Float64 masked softmax attention written from the formula."""
    w_qkv, b_qkv = layer.qkv.weight.double(), layer.qkv.bias.double()
    x = x.double()
    batch, n, dim = x.shape
    h, d = layer.num_heads, layer.head_dim
    q, k, v = (x @ w_qkv.T + b_qkv).split(dim, dim=-1)
    q, k, v = (t.reshape(batch, n, h, d).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    allowed = torch.tril(torch.ones(n, n, dtype=torch.bool))
    scores = torch.where(allowed, scores, torch.tensor(float("-inf"), dtype=torch.float64))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, dim)
    return out @ layer.proj.weight.double().T + layer.proj.bias.double()


def test_causal_attention_matches_reference_on_both_paths():
    torch.manual_seed(0)
    layer = Attention(16, 4, is_causal=True)
    x = torch.randn(2, 7, 16)
    reference = _reference_causal_attention(layer, x)
    torch.testing.assert_close(layer(x).double(), reference, atol=1e-5, rtol=1e-4)
    out, weights = layer(x, return_attention=True)
    torch.testing.assert_close(out.double(), reference, atol=1e-5, rtol=1e-4)
    assert weights.shape == (2, 4, 7, 7)
    assert torch.all(weights.triu(1) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))


def test_causal_block_ignores_the_future_and_last_token_sees_all():
    torch.manual_seed(0)
    block = Block(16, 4, is_causal=True).eval()
    x = torch.randn(1, 6, 16)
    changed = x.clone()
    changed[:, 4:] += torch.randn(1, 2, 16)
    with torch.no_grad():
        before, after = block(x), block(changed)
        assert torch.equal(before[:, :4], after[:, :4])
        assert not torch.allclose(before[:, 4:], after[:, 4:])
        # The last position attends to everything, as the unmasked layer with the same weights.
        full = Attention(16, 4)
        full.load_state_dict(block.attn.state_dict())
        torch.testing.assert_close(block.attn(x)[:, -1], full(x)[:, -1], atol=1e-6, rtol=1e-5)

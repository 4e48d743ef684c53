"""vitcourse.course.checks: passes the references, reports stubs and mistakes without raising.

Every exercise is checked by its contract (vitcourse.course.exercises), under the grader's
comparison rules (vitcourse.course.expectations).
"""

from __future__ import annotations

import time

import pytest
import torch

import vitcourse
from vitcourse.course.checks import CHECK_NAMES, check
from vitcourse.course.exercises import (
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

REFERENCES = {
    "overlapping_patches": patches.overlapping_patches,
    "linear_to_conv_weight": patches.linear_to_conv_weight,
    "smooth_labels": distillation.smooth_labels,
    "hard_distillation_loss": distillation.hard_distillation_loss,
    "filter_snr": patch_snr.filter_snr,
    "partial_attention": attention.partial_attention,
    "merge_attention": attention.merge_attention,
    "GroupedQueryAttention": mhsa.GroupedQueryAttention,
    "rope_2d": positions.rope_2d,
    "gradient_rollout": rollout.gradient_rollout,
    "same_object_mask": long_range.same_object_mask,
    "count_pairs": long_range.count_pairs,
    "vit_forward_flops": cost.vit_forward_flops,
    "windowed_map_bytes": memory.windowed_map_bytes,
    "largest_square_grid": memory.largest_square_grid,
    "ParallelBlock": blocks.ParallelBlock,
    "shuffle_mask": masking.shuffle_mask,
    "masked_patch_loss": masking.masked_patch_loss,
    "multi_positive_clip_loss": contrastive.multi_positive_clip_loss,
    "sigmoid_pair_loss": contrastive.sigmoid_pair_loss,
    "generation_mask": generation.generation_mask,
    "next_token_probs": generation.next_token_probs,
    "upsampled_logits": segmentation.upsampled_logits,
    "mean_iou_ignoring": segmentation.mean_iou_ignoring,
    "resize_matrix": resolution.resize_matrix,
    "pi_resize_patch_weight": resolution.pi_resize_patch_weight,
}


def test_every_check_has_a_reference():
    assert set(CHECK_NAMES) == set(REFERENCES)


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_reference_passes_fast(name, capsys):
    start = time.perf_counter()
    assert check(name, REFERENCES[name]) is True
    assert time.perf_counter() - start < 5.0  # < 1 s on a free core; CI's cores are shared
    out = capsys.readouterr().out
    assert "[FAIL]" not in out and f"{name}: all" in out


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your code")


class _StubModule(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        raise NotImplementedError


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_stub_is_reported_not_raised(name, capsys):
    obj = _StubModule if name[0].isupper() else _stub
    assert check(name, obj) is False
    assert f"{name} is not implemented yet: replace the `raise NotImplementedError`" in capsys.readouterr().out


def test_wrong_values_say_expected_and_got(capsys):
    def transposed(images, patch_size, stride):
        return patches.overlapping_patches(images.transpose(-1, -2).contiguous(), patch_size, stride)

    assert check("overlapping_patches", transposed) is False
    out = capsys.readouterr().out
    assert "[FAIL]" in out and "first at index" in out and "expected" in out and "got" in out


def test_wrong_shape_dtype_and_type_are_named(capsys):
    assert check("overlapping_patches", lambda images, p, s: images) is False
    assert "expected shape" in capsys.readouterr().out
    assert check("overlapping_patches", lambda images, p, s: patches.overlapping_patches(images, p, s).double()) is False
    assert "expected dtype torch.float32, got torch.float64" in capsys.readouterr().out
    assert check("vit_forward_flops", lambda *a, **k: float(cost.vit_forward_flops(*a, **k))) is False
    assert "expected the integer" in capsys.readouterr().out
    assert check("overlapping_patches", lambda images, p, s: patches.overlapping_patches(images, p, s).tolist()) is False
    assert "expected a torch.Tensor, got a list of" in capsys.readouterr().out


def test_checks_take_what_the_grader_would_receive(capsys):
    class Sub(torch.Tensor):
        pass

    assert check("vit_forward_flops", cost.vit_forward_flops) is True
    assert check("gradient_rollout", lambda *a: torch.nn.Parameter(rollout.gradient_rollout(*a))) is True
    capsys.readouterr()
    assert check("gradient_rollout", lambda *a: rollout.gradient_rollout(*a).as_subclass(Sub)) is False
    assert "your code returned a tensor subclass" in capsys.readouterr().out


def test_student_exception_and_missing_error_are_reported(capsys):
    def crashes(images, patch_size, stride):
        return images[100]

    assert check("overlapping_patches", crashes) is False
    assert "your code raised IndexError" in capsys.readouterr().out

    def never_raises(images, patch_size, stride):
        return patches.overlapping_patches(images, min(patch_size, *images.shape[-2:]), max(stride, 1))

    assert check("overlapping_patches", never_raises) is False
    assert "expected your code to raise ValueError" in capsys.readouterr().out
    assert check("vit_forward_flops", lambda *args: 1 / 0) is False
    assert "raised ZeroDivisionError" in capsys.readouterr().out


def test_wrong_module_parameters_are_listed(capsys):
    class Renamed(torch.nn.Module):
        def __init__(self, dim, num_heads, num_kv_heads, qkv_bias=True):
            super().__init__()
            self.to_qkv = torch.nn.Linear(dim, 3 * dim, bias=qkv_bias)
            self.proj = torch.nn.Linear(dim, dim)

    assert check("GroupedQueryAttention", Renamed) is False
    out = capsys.readouterr().out
    assert "missing ['kv.bias', 'kv.weight', 'q.bias', 'q.weight'], unexpected ['to_qkv.bias'" in out


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: overlapping_patches, linear_to_conv_weight"):
        check("patchifyy", vitcourse.patchify)


def test_not_callable_is_reported(capsys):
    assert check("overlapping_patches", 42) is False
    assert "expected a function or class" in capsys.readouterr().out
    assert check("vit_forward_flops", 42) is False
    assert "expected a function or class" in capsys.readouterr().out


def test_count_pairs_and_mask_on_a_worked_example():
    ids = torch.tensor([[1, 0, 2, 0, 1, 3, 2, 2], [0, 4, 0, 0, 0, 0, 0, 0]])
    assert long_range.count_pairs(ids).tolist() == [2, 0]  # 1 twice, 2 three times; 3 and 4 alone
    mask = long_range.same_object_mask(ids)
    assert mask[0, 0, 4] and mask[0, 2, 7] and mask[0, 5, 5] and not mask[0, 0, 2] and not mask[0, 1, 3]
    assert mask[1].sum() == 1 and mask[1, 1, 1]
    with pytest.raises(ValueError, match="int64"):
        long_range.count_pairs(ids.float())


@pytest.mark.parametrize(("q", "k", "v", "error", "says"), [
    (torch.ones(2, 3, 4), torch.ones(3, 3, 4), torch.ones(3, 3, 4), ValueError, "batch dimensions of q, k and v do not broadcast"),
    (torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4), torch.ones(3, 4), TypeError, "q must be a floating-point tensor"),
    (torch.ones(3, 4, dtype=torch.float64), torch.ones(3, 4), torch.ones(3, 4), TypeError, "q, k and v must share one dtype"),
])
def test_reference_softmax_attention_names_bad_inputs(q, k, v, error, says):
    from vitcourse.models.attention import softmax_attention

    with pytest.raises(error, match=says):
        softmax_attention(q, k, v)
    # broadcasting batch dimensions stay allowed: one key set shared by a batch of queries
    out, weights = softmax_attention(torch.ones(2, 3, 4), torch.ones(5, 4), torch.ones(5, 6))
    assert out.shape == (2, 3, 6) and weights.shape == (2, 3, 5)

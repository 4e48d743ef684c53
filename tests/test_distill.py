"""vitcourse.models.deit and vitcourse.training.losses: the distilled ViT (timm parity) and DeiT's losses (float64 reference)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitcourse
from vitcourse.models.deit import DistilledVisionTransformer
from vitcourse.training.losses import distillation_loss

# ---- an independent float64 reference of DeiT's DistillationLoss formulas -------------------------


def _log_softmax64(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _reference(cls, dist, teacher, labels, kind, alpha, tau, smoothing=0.0):
    cls, dist, teacher = (np.asarray(t, dtype=np.float64) for t in (cls, dist, teacher))
    labels = np.asarray(labels)
    batch, classes = cls.shape
    log_p = _log_softmax64(cls)
    target = np.full((batch, classes), smoothing / classes)
    target[np.arange(batch), labels] += 1 - smoothing
    base = -(target * log_p).sum(axis=1).mean()
    if kind == "none":
        return base
    if kind == "soft":
        log_s, log_t = _log_softmax64(dist / tau), _log_softmax64(teacher / tau)
        kl_sum = (np.exp(log_t) * (log_t - log_s)).sum()
        distill = kl_sum * tau * tau / (batch * classes)
    else:
        distill = -_log_softmax64(dist)[np.arange(batch), teacher.argmax(axis=1)].mean()
    return (1 - alpha) * base + alpha * distill


@pytest.mark.parametrize("kind", ["none", "soft", "hard"])
@pytest.mark.parametrize("alpha,tau", [(0.5, 1.0), (0.1, 3.0), (0.9, 0.5)])
def test_loss_equals_float64_reference(kind, alpha, tau):
    g = torch.Generator().manual_seed(hash((kind, alpha, tau)) % 2**31)
    batch, classes = 7, 5
    cls, dist, teacher = (3 * torch.randn(batch, classes, generator=g) for _ in range(3))
    labels = torch.randint(0, classes, (batch,), generator=g)
    ours = distillation_loss(cls, dist, teacher, labels, kind=kind, alpha=alpha, tau=tau)
    expected = _reference(cls.numpy(), dist.numpy(), teacher.numpy(), labels.numpy(), kind, alpha, tau)
    assert ours.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    ours64 = distillation_loss(cls.double(), dist.double(), teacher.double(), labels, kind=kind, alpha=alpha, tau=tau)
    assert ours64.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_loss_with_label_smoothing_matches_reference():
    g = torch.Generator().manual_seed(0)
    cls, dist, teacher = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    labels = torch.randint(0, 4, (6,), generator=g)
    ours = distillation_loss(cls, dist, teacher, labels, kind="hard", alpha=0.3, label_smoothing=0.1)
    expected = _reference(cls.numpy(), dist.numpy(), teacher.numpy(), labels.numpy(), "hard", 0.3, 1.0, 0.1)
    assert ours.item() == pytest.approx(expected, rel=1e-12)


def test_soft_term_is_batchmean_divided_by_classes():
    g = torch.Generator().manual_seed(1)
    batch, classes, tau = 8, 10, 2.0
    s, t = torch.randn(batch, classes, generator=g, dtype=torch.float64), torch.randn(batch, classes, generator=g, dtype=torch.float64)
    labels = torch.zeros(batch, dtype=torch.long)
    soft_only = distillation_loss(s, s, t, labels, kind="soft", alpha=1.0, tau=tau)
    batchmean = F.kl_div(F.log_softmax(s / tau, 1), F.softmax(t / tau, 1), reduction="batchmean") * tau * tau
    assert soft_only.item() == pytest.approx(batchmean.item() / classes, rel=1e-12)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_batchmean_soft_term_is_the_kl_per_image(tau):
    # Independent reference: the KL divergence of each image's two distributions, written out
    # in float64 numpy, averaged over the batch (the paper's formula, K times DeiT's code's term).
    g = torch.Generator().manual_seed(2)
    batch, classes, alpha = 6, 10, 0.1
    cls, dist, teacher = (3 * torch.randn(batch, classes, generator=g, dtype=torch.float64) for _ in range(3))
    labels = torch.randint(0, classes, (batch,), generator=g)
    log_s, log_t = _log_softmax64(dist.numpy() / tau), _log_softmax64(teacher.numpy() / tau)
    kl_per_image = (np.exp(log_t) * (log_t - log_s)).sum(axis=1)
    base = _reference(cls.numpy(), dist.numpy(), teacher.numpy(), labels.numpy(), "none", alpha, tau)
    expected = (1 - alpha) * base + alpha * tau * tau * kl_per_image.mean()
    ours = distillation_loss(cls, dist, teacher, labels, kind="soft", alpha=alpha, tau=tau, kl_reduction="batchmean")
    assert ours.item() == pytest.approx(expected, rel=1e-12)
    numel = distillation_loss(cls, dist, teacher, labels, kind="soft", alpha=1.0, tau=tau)
    assert numel.item() == pytest.approx(tau * tau * kl_per_image.mean() / classes, rel=1e-12)
    with pytest.raises(ValueError, match="kl_reduction"):
        distillation_loss(cls, dist, teacher, labels, kind="soft", kl_reduction="mean")


def test_fit_passes_kl_reduction_to_the_loss():
    # One step of soft distillation with a teacher that disagrees with the labels: the two
    # reductions weigh the teacher differently, so the trained weights differ.
    from vitcourse.training.loop import fit

    g = torch.Generator().manual_seed(3)
    images, labels = torch.randn(8, 1, 4, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    weights = {}
    for reduction in ("numel", "batchmean"):
        torch.manual_seed(0)
        student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        fit(student, (images, labels), epochs=1, batch_size=8, lr=0.1, warmup_epochs=0, teacher=teacher,
            distillation="soft", alpha=0.5, tau=3.0, kl_reduction=reduction, progress=False, grad_clip=None)
        weights[reduction] = student[1].weight.detach().clone()
    assert not torch.allclose(weights["numel"], weights["batchmean"])
    with pytest.raises(ValueError, match="kl_reduction"):
        fit(student, (images, labels), epochs=1, teacher=teacher, distillation="soft", kl_reduction="sum", progress=False)


def test_teacher_gets_no_gradient_and_student_does():
    cls = torch.randn(4, 3, requires_grad=True)
    dist = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    loss = distillation_loss(cls, dist, teacher, torch.tensor([0, 1, 2, 0]), kind="soft")
    loss.backward()
    assert teacher.grad is None
    assert cls.grad.abs().sum() > 0 and dist.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kind": "medium"}, "kind"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"tau": 0.0}, "tau"),
        ({"tau": float("inf")}, "tau"),
    ],
)
def test_loss_validates_arguments(kwargs, match):
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=match):
        distillation_loss(x, x, x, torch.tensor([0, 1]), **kwargs)


def test_loss_validates_shapes():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(x, x, torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        distillation_loss(x, x, x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="teacher_logits"):
        distillation_loss(x, x, None, torch.tensor([0, 1]), kind="hard")
    # kind='none' needs no teacher
    assert distillation_loss(x, None, None, torch.tensor([0, 1]), kind="none") == F.cross_entropy(x, torch.tensor([0, 1]))


# ---- the distilled model ------------------------------------------------------------------------------


def _tiny(**kw):
    return DistilledVisionTransformer(
        img_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=16, depth=2, num_heads=2, **kw
    )


def test_distilled_model_outputs_and_fusions():
    torch.manual_seed(0)
    model = _tiny()
    assert model.pos_embed.shape == (1, 16 + 2, 16) and model.num_prefix_tokens == 2
    x = torch.randn(3, 1, 8, 8)
    model.train()
    cls_logits, dist_logits = model(x)
    assert cls_logits.shape == dist_logits.shape == (3, 5)
    assert not torch.allclose(cls_logits, dist_logits)
    model.eval()
    tokens = model.forward_features(x)
    torch.testing.assert_close(model.head(tokens[:, 0]), cls_logits)
    torch.testing.assert_close(model.head_dist(tokens[:, 1]), dist_logits)
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2)
    model.fusion = "softmax"
    fused = model(x)
    torch.testing.assert_close(fused.exp(), (cls_logits.softmax(-1) + dist_logits.softmax(-1)) / 2)
    assert torch.equal(fused.argmax(1), (cls_logits.softmax(-1) + dist_logits.softmax(-1)).argmax(1))
    model.fusion = "cls"
    torch.testing.assert_close(model(x), cls_logits)
    model.fusion = "dist"
    torch.testing.assert_close(model(x), dist_logits)
    with pytest.raises(ValueError, match="fusion"):
        model.fusion = "max"
    with pytest.raises(ValueError, match="register"):
        _tiny(reg_tokens=1)


def test_distilled_model_changes_image_size():
    torch.manual_seed(0)
    model = _tiny().eval()
    model.set_image_size(12)
    assert model.pos_embed.shape == (1, 36 + 2, 16)
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 5)


def test_registered_names_exist():
    names = vitcourse.list_models()
    for size in ("tiny", "small", "base"):
        assert f"deit_{size}_distilled_patch16_224" in names


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deit_tiny_distilled_patch16_224", "deit_small_distilled_patch16_224"])
def test_timm_parity(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False).eval()
    ours = vitcourse.create_model(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # loads as is
    assert set(ours.state_dict()) == set(reference.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=0)
        reference.set_distilled_training(True)
        reference.train()
        ours.train()
        for a, b in zip(ours(x), reference(x), strict=False):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_timm_parity_small_random_config():
    """The same check on a tiny config, fast enough for every run."""
    pytest.importorskip("timm")
    from timm.models.deit import VisionTransformerDistilled

    torch.manual_seed(0)
    config = dict(img_size=32, patch_size=8, in_chans=3, num_classes=7, embed_dim=48, depth=2, num_heads=3)
    reference = VisionTransformerDistilled(**config).eval()
    # timm initialises the heads to zero; randomise every tensor so the comparison means something
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0, 0.2)
    ours = DistilledVisionTransformer(**config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=0)
    assert expected.abs().mean() > 0.1  # random heads: the outputs are not all zero


# ---- the experiment (tiny settings: the mechanics, not the numbers) --------------------------------


@pytest.mark.slow
def test_run_distillation_experiment_small():
    from vitcourse.experiments.distillation import format_table, run_distillation_experiment

    lines = []
    result = run_distillation_experiment(
        seeds=(0, 1), train_fraction=0.1, student_epochs=1, teacher_epochs=1, log=lines.append
    )
    rows = ["teacher", "vit", "soft", "hard", "hard_token:cls_head", "hard_token:dist_head", "hard_token:fused"]
    assert list(result["summary"]) == rows
    assert len(result["runs"]) == 2 * len(rows) == len(lines)
    for row, s in result["summary"].items():
        accs = [r["test_accuracy"] for r in result["runs"] if r["row"] == row]
        assert s["n"] == 2 and s["mean"] == pytest.approx(sum(accs) / 2)
        assert s["std"] == pytest.approx(abs(accs[0] - accs[1]) / math.sqrt(2))
        assert 0 <= s["mean"] <= 1
    assert result["settings"]["test_size"] == 450
    table = format_table(result)
    assert all(row in table for row in rows)
    with pytest.raises(ValueError, match="methods"):
        run_distillation_experiment(methods=("teacher", "magic"))


@pytest.mark.parametrize(("change", "error", "says"), [
    (lambda a: {**a, "labels": a["labels"].float()}, TypeError, "labels must be integer class indices"),
    (lambda a: {**a, "labels": a["labels"].bool()}, TypeError, "labels must be integer class indices"),
    (lambda a: {**a, "labels": torch.tensor([0, 5, 1])}, ValueError, r"labels go up to 5, out of range for num_classes=5"),
    (lambda a: {**a, "labels": torch.tensor([0, -1, 1])}, ValueError, r"labels must be class indices >= 0"),
    (lambda a: {**a, "cls_logits": a["cls_logits"].long()}, ValueError, "cls_logits must be floating-point"),
    (lambda a: {**a, "teacher_logits": a["teacher_logits"][:, :4]}, ValueError, "teacher_logits must be"),
    (lambda a: {**a, "label_smoothing": -0.1}, ValueError, "label_smoothing"),
    (lambda a: {**a, "label_smoothing": 1.5}, ValueError, "label_smoothing"),
    (lambda a: {**a, "label_smoothing": "0.1"}, TypeError, "label_smoothing"),
])
def test_distillation_loss_names_the_bad_argument(change, error, says):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, generator=generator)
    arguments = dict(cls_logits=logits, dist_logits=logits.clone(), teacher_logits=logits.flip(0),
                     labels=torch.tensor([0, 4, 1]), kind="soft")
    distillation_loss(**arguments)  # the unchanged arguments are fine
    with pytest.raises(error, match=says):
        distillation_loss(**change(arguments))

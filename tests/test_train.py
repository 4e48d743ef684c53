"""vitcourse.training: fit / evaluate, the schedule, checkpoints and resume, teachers, errors."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vitcourse.data.digits import load_digits
from vitcourse.data.pipeline import Batches, ImageData
from vitcourse.models.convnet import SmallCNN
from vitcourse.models.deit import DistilledVisionTransformer
from vitcourse.models.vit import VisionTransformer
from vitcourse.training.loop import evaluate, fit
from vitcourse.training.optim import warmup_cosine
from vitcourse.training.runtime import default_device


def _tiny_vit(seed=0, **kw):
    torch.manual_seed(seed)
    config = dict(img_size=8, patch_size=4, in_chans=1, num_classes=10, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0)
    return VisionTransformer(**{**config, **kw})


@pytest.fixture(scope="module")
def digits():
    train, test = load_digits()
    return train.subset(n=96, seed=0), test.subset(n=60, seed=0)


def test_default_device():
    device = default_device()
    assert isinstance(device, torch.device)
    if torch.cuda.is_available():
        assert device.type == "cuda"
    elif not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        assert device.type == "cpu"


def test_warmup_cosine_closed_form():
    f = warmup_cosine(total_steps=110, warmup_steps=10, min_factor=0.1)
    assert [f(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1)


def test_fit_learns_and_returns_plain_history():
    # a separable toy problem: the class is which quadrant is bright
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (128,), generator=g)
    images = 0.1 * torch.randn(128, 1, 8, 8, generator=g)
    for i, c in enumerate(labels.tolist()):
        r, col = divmod(c, 2)
        images[i, 0, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 1.0
    data = ImageData(images, labels, 4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))  # learns this at once, so any failure is fit's
    history = fit(model, data, epochs=12, lr=5e-3, batch_size=16, eval_data=data, progress=False)
    assert [r["epoch"] for r in history] == list(range(1, 13))
    assert all(isinstance(v, (int, float)) for r in history for v in r.values())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.9
    # history's test numbers are evaluate()'s
    result = evaluate(model, data)
    assert result["accuracy"] == pytest.approx(history[-1]["test_accuracy"])
    # the learning rate followed warm-up then cosine to 0
    assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_evaluate_matches_a_manual_computation(digits):
    _, test = digits
    model = _tiny_vit().eval()
    result = evaluate(model, test, batch_size=7)
    with torch.no_grad():
        logits = model(test.images).double()
    assert result["n"] == len(test)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, test.labels).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == test.labels).double().mean().item())
    # a plain (images, labels) pair works too
    assert evaluate(model, (test.images, test.labels))["accuracy"] == result["accuracy"]


def test_progress_false_prints_nothing(digits, capsys):
    train, _ = digits
    fit(_tiny_vit(), train, epochs=1, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_weight_decay_skips_biases_norms_and_tokens():
    from vitcourse.training.optim import parameter_groups

    model = DistilledVisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=1, num_heads=2)
    decay, no_decay = parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"pos_embed", "cls_token", "dist_token", "norm.weight", "head.bias"} <= no_decay_names
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0


# ---- checkpoints ---------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def test_resume_is_bit_identical(digits, tmp_path):
    train, test = digits
    settings = dict(
        epochs=4, lr=3e-3, batch_size=16, warmup_epochs=1, label_smoothing=0.1,
        augment={"shift": 1, "rotate": 10.0, "scale": 0.1}, eval_data=test, progress=False, seed=3,
    )  # fmt: skip
    straight = _tiny_vit(seed=0)
    history = fit(straight, train, **settings)

    path = tmp_path / "run.pt"
    interrupted = _tiny_vit(seed=0)

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit(interrupted, train, checkpoint=path, callback=stop_after_two, **settings)
    resumed = _tiny_vit(seed=99)  # a different initialisation: everything must come from the file
    torch.manual_seed(12345)  # and a different global RNG state
    history2 = fit(resumed, train, checkpoint=path, resume=True, **settings)

    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=False):
        assert torch.equal(a, b), name
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(history) == drop(history2)


def test_resume_refuses_another_model(digits, tmp_path):
    train, _ = digits
    path = tmp_path / "run.pt"
    fit(_tiny_vit(), train, epochs=1, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="different model"):
        fit(_tiny_vit(embed_dim=32), train, epochs=2, checkpoint=path, resume=True, progress=False)
    with pytest.raises(ValueError, match="different model"):
        fit(SmallCNN(), train, epochs=2, checkpoint=path, resume=True, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        fit(_tiny_vit(), train, epochs=1, lr=0.5, checkpoint=path, resume=True, progress=False)


def test_resume_without_a_file_starts_fresh(digits, tmp_path):
    train, _ = digits
    history = fit(_tiny_vit(), train, epochs=1, checkpoint=tmp_path / "new.pt", resume=True, progress=False)
    assert len(history) == 1 and (tmp_path / "new.pt").exists()


# ---- teachers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_teacher_stays_frozen_in_eval_mode(digits, kind):
    train, _ = digits
    torch.manual_seed(0)
    teacher = SmallCNN(width=4)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = DistilledVisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=10, embed_dim=16, depth=1, num_heads=2)
    fit(student, train, epochs=1, teacher=teacher, distillation=kind, progress=False)
    assert not teacher.training
    # BatchNorm running statistics would move in train mode; weights would move with gradients
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in teacher.parameters())


def test_distillation_changes_the_gradient(digits):
    """With alpha=1 and a hard teacher, the student learns the teacher's labels, not the data's."""
    train, _ = digits

    class Constant(nn.Module):  # a teacher that always says class 3
        def forward(self, x):
            return F.one_hot(torch.full((x.shape[0],), 3), 10).float()

    student = _tiny_vit()
    fit(student, train, epochs=6, lr=1e-2, batch_size=32, teacher=Constant(), distillation="hard", alpha=1.0, progress=False)
    with torch.no_grad():
        assert (student(train.images).argmax(1) == 3).float().mean() > 0.95


# ---- errors --------------------------------------------------------------------------------------------


def test_clear_errors(digits):
    train, _ = digits
    model = _tiny_vit()
    empty = ImageData(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="empty"):
        fit(model, empty, progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, empty)
    bad = ImageData(train.images, train.labels.clone(), 12)
    bad.labels[5] = 11
    with pytest.raises(ValueError, match="label 11.*num_classes=10"):
        fit(model, bad, progress=False)
    negative = ImageData(train.images, train.labels.clone(), 10)
    negative.labels[0] = -1
    with pytest.raises(ValueError, match="negative label"):
        evaluate(model, negative)
    with pytest.raises(TypeError, match="data must be"):
        fit(model, [1, 2, 3], progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, train, epochs=0)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        fit(model, train, resume=True)
    with pytest.raises(ValueError, match="kind"):
        fit(model, train, teacher=SmallCNN(), distillation="medium")


def test_model_and_data_on_different_devices(digits):
    train, _ = digits
    model = _tiny_vit().to("meta")  # a second device that every machine has
    with pytest.raises(ValueError, match="the model is on meta but data is on cpu"):
        fit(model, train, epochs=1, progress=False)
    with pytest.raises(ValueError, match="model is on meta"):
        evaluate(model, train)


def test_explicit_device_moves_both(digits):
    train, _ = digits
    model = _tiny_vit()
    history = fit(model, train, epochs=1, device="cpu", progress=False)
    assert len(history) == 1


def test_batches_object_as_data(digits):
    train, _ = digits
    loader = Batches(train, batch_size=48, augment=True, seed=1)
    history = fit(_tiny_vit(), loader, epochs=2, progress=False)
    assert len(history) == 2


@pytest.mark.slow
def test_bench_train_prints_the_recipe_and_the_result_lines(monkeypatch, capsys):
    import argparse

    from vitcourse.experiments import bench_train
    from vitcourse.training import recipes

    short = lambda recipe: {**recipe, "fit": {**recipe["fit"], "epochs": 1}}  # noqa: E731
    monkeypatch.setattr(recipes, "DIGITS_RECIPE", short(recipes.DIGITS_RECIPE))
    monkeypatch.setattr(recipes, "CNN_RECIPE", short(recipes.CNN_RECIPE))
    assert bench_train.main(argparse.Namespace(device="cpu", seed=0)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("recipe digits_cnn:") and lines[2].startswith("recipe digits_vit:")
    assert lines[-2].startswith("digits_cnn test_accuracy=")
    assert lines[-1].startswith("digits_vit test_accuracy=") and "train_seconds=" in lines[-1]
    accuracy = float(lines[-1].split()[1].split("=")[1])
    assert 0 <= accuracy <= 1


def test_small_cnn_shapes_and_errors():
    model = SmallCNN(in_chans=3, num_classes=7, width=4).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 7)
    with pytest.raises(ValueError, match=r"x must be \(B, 3, H, W\)"):
        model(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="width"):
        SmallCNN(width=0)


def test_bf16_autocast_path_trains_a_distilled_vit_with_a_teacher(digits):
    # amp=True takes the mixed-precision path CUDA takes by default; on the CPU it is the same
    # autocast (bf16 matmuls, float32 loss), so the whole path runs here.
    train, test = digits
    torch.manual_seed(0)
    teacher = SmallCNN(in_chans=1, num_classes=10).eval()
    student = DistilledVisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=10,
                                         embed_dim=32, depth=2, num_heads=2)
    seen = []
    hook = student.head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    history = fit(student, train, epochs=3, lr=3e-3, batch_size=32, amp=True, teacher=teacher,
                  distillation="hard", eval_data=test, progress=False, seed=0)
    hook.remove()
    assert torch.bfloat16 in seen  # autocast was on
    assert all(math.isfinite(record["train_loss"]) for record in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # evaluating in bf16 agrees with float32 up to a few flipped predictions
    assert abs(evaluate(student, test, amp=True)["accuracy"] - evaluate(student, test)["accuracy"]) <= 3 / len(test)



def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _unchanged(model, before):
    return all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_pairs_need_integer_class_labels(digits):
    train, _ = digits
    model = _tiny_vit()
    before = _weights(model)
    images, labels = train.images, train.labels
    with pytest.raises(TypeError, match=r"data's labels must be integer.*float32"):
        fit(model, (images, labels.float() + 0.7), epochs=1, progress=False)
    with pytest.raises(TypeError, match=r"data's labels must be integer.*float32"):
        evaluate(model, (images, labels.float()))
    with pytest.raises(TypeError, match=r"eval_data's labels must be integer.*float64"):
        fit(model, train, eval_data=(images, labels.double()), epochs=1, progress=False)
    with pytest.raises(ValueError, match="data's labels.*negative label"):
        evaluate(model, (images, labels - 1))
    with pytest.raises(ValueError, match="label 14, out of range.*num_classes=10"):
        evaluate(model, (images, labels + 5))
    assert _unchanged(model, before)
    # narrower integer labels are class indices too: the same result as the int64 ones
    assert evaluate(model, (images, labels.to(torch.int32))) == evaluate(model, train)


def test_numpy_in_a_pair_is_named():
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(TypeError, match=r"data's labels \(the pair's second element\).*ndarray.*torch.from_numpy"):
        fit(_tiny_vit(), (images, labels.numpy()), progress=False)
    with pytest.raises(TypeError, match=r"data's images \(the pair's first element\).*ndarray.*torch.from_numpy"):
        evaluate(_tiny_vit(), (images.numpy(), labels))
    with pytest.raises(TypeError, match="pair of tensors, got a list of 3 items"):
        evaluate(_tiny_vit(), [images, labels, labels])


@pytest.mark.parametrize(
    "setting, error",
    [
        ({"min_lr_ratio": -1.0}, ValueError),
        ({"min_lr_ratio": 5}, ValueError),
        ({"weight_decay": -1}, ValueError),
        ({"weight_decay": "0.1"}, TypeError),
        ({"label_smoothing": None}, TypeError),
        ({"warmup_epochs": "1"}, TypeError),
        ({"grad_clip": "1"}, TypeError),
        ({"lr": float("inf")}, ValueError),
        ({"epochs": True}, TypeError),
        ({"seed": "a"}, TypeError),
        ({"augment": {"rotate": "10"}}, TypeError),
        ({"callback": 5}, TypeError),
    ],
)
def test_settings_are_refused_before_any_training(digits, setting, error):
    train, _ = digits
    model = _tiny_vit()
    before = _weights(model)
    (name,) = setting
    with pytest.raises(error, match=f"^{name}"):
        fit(model, train, **{"epochs": 1, "progress": False, **setting})
    assert _unchanged(model, before)


def test_min_lr_ratio_sets_the_final_learning_rate(digits):
    train, _ = digits
    # warmup 0 and 3 epochs: the cosine ends at min_lr_ratio * lr exactly
    history = fit(_tiny_vit(), train, epochs=3, lr=2e-3, warmup_epochs=0, min_lr_ratio=0.25, progress=False)
    assert history[-1]["lr"] == pytest.approx(0.25 * 2e-3)
    assert all(0.25 * 2e-3 - 1e-12 <= r["lr"] <= 2e-3 for r in history)


def test_checkpoint_path_is_checked_before_any_training(digits, tmp_path):
    train, _ = digits
    model = _tiny_vit()
    before = _weights(model)
    with pytest.raises(FileNotFoundError, match="checkpoint=.*does not exist"):
        fit(model, train, epochs=1, checkpoint=tmp_path / "missing" / "run.pt", progress=False)
    with pytest.raises(ValueError, match="checkpoint must be a file path, got the directory"):
        fit(model, train, epochs=1, checkpoint=tmp_path, progress=False)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        fit(model, train, epochs=1, checkpoint=5, progress=False)
    assert _unchanged(model, before)


def test_unknown_device_names_the_argument(digits):
    train, _ = digits
    with pytest.raises(ValueError, match="device must be None, 'auto' or a torch device.*'gpu'"):
        fit(_tiny_vit(), train, device="gpu", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*no cuda device"):
            evaluate(_tiny_vit(), train, device="cuda")

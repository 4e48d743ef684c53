#!/usr/bin/env python3
"""The CUDA paths of vitcourse, checked on a machine with an NVIDIA GPU: run ``tools/gpu-check``.

No CI machine has a GPU, so these checks run by hand, on a machine that has one and has torch,
timm and transformers installed (no network needed, nothing is downloaded: every model has
random weights). ``tools/gpu-check`` first runs ``vitcourse bench model`` on ViT-B/16 (batch 128,
bf16 autocast, with and without torch.compile, against timm), then this file:

1. timm parity on CUDA: timm's ViT-B/16 and DeiT-S distilled with random weights, loaded into
   vitcourse, give the same logits (float32 without TF32: within 1e-4 of the largest logit;
   under bf16 autocast: the same top-1 on most images);
2. a short ``fit`` of ViT-S/16 on random 224 px images under bf16 autocast: finite losses that
   fall on a fixed batch it can memorise;
3. a DeiT distillation epoch (hard and soft) with a small convnet teacher on the GPU: a finite
   loss, and every trainable tensor (both heads, the distillation token) moved and is finite.

Each check prints what it measured and PASS or FAIL; the exit status is the number of failures.
"""

from __future__ import annotations

import math
import sys
import time
import traceback

import torch

import vitcourse
from vitcourse.data.pipeline import ImageData

FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'PASS' if ok else 'FAIL'}: {what}", flush=True)
    if not ok:
        FAILURES.append(what)


def section(title: str):
    def wrap(function):
        def run() -> None:
            print(f"\n== {title}", flush=True)
            start = time.perf_counter()
            try:
                function()
            except Exception:  # a crash is a failure of this check, the others still run
                traceback.print_exc()
                check(False, f"{title}: raised")
            print(f"  ({time.perf_counter() - start:.1f} s)", flush=True)
        return run
    return wrap


@section("timm parity on CUDA (random weights)")
def timm_parity() -> None:
    import timm

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for name in ("vit_base_patch16_224", "deit_small_distilled_patch16_224"):
        torch.manual_seed(0)
        reference = timm.create_model(name, pretrained=False).cuda().eval()
        ours = vitcourse.create_model(name).cuda().eval()
        vitcourse.load_timm_state_dict(ours, reference.state_dict())
        x = torch.randn(16, 3, 224, 224, device="cuda")
        with torch.no_grad():
            expected, got = reference(x), ours(x)
            if isinstance(got, tuple):  # a distilled model in training mode gives two heads
                got = got[0]
            difference = (expected - got).abs().max().item() / expected.abs().max().item()
            check(difference < 1e-4, f"{name} float32: max |timm - vitcourse| / max |timm| = {difference:.1e} < 1e-4")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                expected16, got16 = reference(x).float(), ours(x)
            got16 = (got16[0] if isinstance(got16, tuple) else got16).float()
            agree = (expected16.argmax(1) == got16.argmax(1)).float().mean().item()
            check(agree >= 0.75, f"{name} bf16 autocast: top-1 agrees with timm on {agree:.0%} of 16 images (>= 75%)")


def random_images(count: int) -> ImageData:
    """``count`` random 224 px RGB images with random labels of 10 classes (seed 0)."""
    torch.manual_seed(0)
    return ImageData(torch.randn(count, 3, 224, 224), torch.randint(0, 10, (count,)), 10)


@section("fit under bf16 autocast")
def fit_bf16() -> None:
    data = random_images(256)
    model = vitcourse.create_model("vit_small_patch16_224", num_classes=10)
    history = vitcourse.fit(model, data, epochs=4, lr=3e-4, batch_size=64, warmup_epochs=1.0,
                            device="cuda", amp=True, progress=False)
    losses = [row["train_loss"] for row in history]
    print(f"  training losses per epoch: {', '.join(f'{v:.3f}' for v in losses)}")
    check(all(math.isfinite(v) for v in losses), "every epoch's loss is finite")
    check(losses[-1] < losses[0], "the loss falls over four epochs on 256 random images it can memorise")
    check(next(model.parameters()).device.type == "cuda", "the model trained on the GPU")


@section("DeiT distillation step on CUDA")
def distillation_step() -> None:
    data = random_images(128)
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 16, stride=16), torch.nn.Flatten(),
                                  torch.nn.Linear(16 * 14 * 14, 10)).cuda().eval()
    for kind in ("hard", "soft"):
        student = vitcourse.create_model("deit_tiny_distilled_patch16_224", num_classes=10)
        before = {name: p.detach().clone() for name, p in student.named_parameters() if p.requires_grad}
        history = vitcourse.fit(student, data, epochs=1, batch_size=64, teacher=teacher, distillation=kind,
                                tau=3.0 if kind == "soft" else 1.0, alpha=0.5, device="cuda", amp=True,
                                progress=False)
        loss = history[-1]["train_loss"]
        check(math.isfinite(loss), f"{kind} distillation: one epoch's loss {loss:.3f} is finite")
        after = dict(student.named_parameters())
        unchanged = [name for name, old in before.items() if torch.equal(old, after[name].detach().cpu())]
        broken = [name for name in before if not torch.isfinite(after[name]).all()]
        check(not unchanged, f"{kind} distillation: every trainable tensor moved (both heads, the distillation "
                             f"token){'; unchanged: ' + ', '.join(unchanged[:5]) if unchanged else ''}")
        check(not broken, f"{kind} distillation: every weight is finite after the epoch")


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: these checks need an NVIDIA GPU", file=sys.stderr)
        return 1
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
    timm_parity()
    fit_bf16()
    distillation_step()
    print(f"\n{len(FAILURES)} check(s) failed" + (":\n  " + "\n  ".join(FAILURES) if FAILURES else ""))
    return len(FAILURES)


if __name__ == "__main__":
    sys.exit(main())

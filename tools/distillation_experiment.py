"""DeiT's distillation experiment at course scale, on digits.

Trains, for each seed, the CNN teacher and four ViT students (no teacher; soft and hard
knowledge distillation through the class head; hard distillation through a distillation
token, read out from the class head, the distillation head and both fused), on the full
digits training set and on a small stratified fraction of it, and prints a table of
mean ± std test accuracy and wall time. The core is
:func:`vitcourse.experiments.distillation.run_distillation_experiment`, which the hands-on
chapter calls with smaller settings.

    python tools/distillation_experiment.py --seeds 0 1 2 --fractions 1.0 0.2 --out results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from vitcourse.experiments.distillation import format_table, run_distillation_experiment


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.2], help="training-set fractions")
    parser.add_argument("--student-epochs", type=int, default=None, help="default: the ViT recipe's")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: the CNN recipe's")
    parser.add_argument(
        "--fixed-epochs", action="store_true",
        help="keep the epochs for every fraction (default: divide them by the fraction, so that a "
        "smaller training set gets the same number of optimisation steps)",
    )
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--tau", type=float, default=1.0)
    parser.add_argument("--out", default=None, help="write all runs and the summaries as JSON here")
    args = parser.parse_args(argv)

    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu": platform.processor() or platform.machine()}, "experiments": []}
    from vitcourse.training.recipes import CNN_RECIPE, DIGITS_RECIPE

    for fraction in args.fractions:
        started = time.perf_counter()
        student_epochs = args.student_epochs or DIGITS_RECIPE["fit"]["epochs"]
        teacher_epochs = args.teacher_epochs or CNN_RECIPE["fit"]["epochs"]
        if not args.fixed_epochs:
            student_epochs = max(1, round(student_epochs / fraction))
            teacher_epochs = max(1, round(teacher_epochs / fraction))
        print(f"== training fraction {fraction}: student {student_epochs} epochs, teacher {teacher_epochs} ==", flush=True)
        result = run_distillation_experiment(
            seeds=tuple(args.seeds), train_fraction=fraction, student_epochs=student_epochs,
            teacher_epochs=teacher_epochs, alpha=args.alpha, tau=args.tau,
            log=lambda line: print("  " + line, flush=True),
        )
        print(f"\ntrain images: {result['settings']['train_size']}, test images: {result['settings']['test_size']}, "
              f"seeds: {args.seeds}, total {time.perf_counter() - started:.0f} s")
        print(format_table(result), flush=True)
        print()
        results["experiments"].append(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

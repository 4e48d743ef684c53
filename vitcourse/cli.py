"""The ``vitcourse`` command: ``vitcourse release | stamp | bench model | bench train | grade``.

Each subcommand's work lives in its own module, imported only when that subcommand runs, and
``import vitcourse`` imports nothing heavy, so ``vitcourse --help`` (and ``vitcourse grade
--help``) answers without importing torch. Numbers on the command line are checked by argparse
types, so a bad one ends in argparse's usage error naming the flag.
"""

from __future__ import annotations

import argparse
import math
import sys


def _positive(kind: type):
    """An argparse type: a positive ``kind`` (int or float), else a usage error naming the flag."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"  # what argparse calls the type in its messages
    return parse


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitcourse", description="The Vision Transformer course.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser("release", help="generate exercises/ from solutions/")
    release.add_argument("--root", default=".", help="repository root (default: .)")
    release.add_argument(
        "--check", action="store_true", help="exit non-zero if exercises/ is out of date; write nothing"
    )

    stamp = commands.add_parser(
        "stamp", help="(re)write every notebook's Colab badge and install cell from _config.yml"
    )
    stamp.add_argument("--root", default=".", help="repository root (default: .)")
    stamp.add_argument("--check", action="store_true", help="exit non-zero if a notebook is out of date")

    bench = commands.add_parser("bench", help="benchmarks that print ratios measured side by side")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="WHAT")
    model = benches.add_parser("model", help="images/s of our ViT vs timm's and a naive reference")
    model.add_argument("--config", default="vit_small_patch16_224", help="model name")
    model.add_argument("--batch", type=_positive(int), default=16, help="batch size")
    model.add_argument("--img-size", dest="img_size", type=_positive(int), default=None,
                       help="image size (default: the config's), e.g. a 518 px DINOv2 at 224 on a CPU")
    model.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    model.add_argument("--repeats", type=_positive(int), default=7, help="interleaved rounds")
    model.add_argument("--compile", action="store_true", help="also time torch.compile (CUDA)")
    model.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help="bf16 autocast (default: on for CUDA only; --amp runs the same path on the CPU)")
    model.add_argument("--checkpointing", action="store_true", help="also measure gradient checkpointing")
    model.add_argument(
        "--min-time", dest="min_time", type=_positive(float), default=0.25, help="seconds per measurement (default 0.25)"
    )
    model.add_argument("--threads", type=_positive(int), default=None, help="CPU threads for torch (default: torch's)")
    train = benches.add_parser("train", help="train the course-scale ViT and CNN on digits")
    train.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    train.add_argument("--seed", type=int, default=0)

    # `grade` owns its arguments: vitcourse.grading.command adds them.
    grade = commands.add_parser("grade", help="grade a folder of submitted notebooks")
    from .grading.command import add_arguments

    add_arguments(grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "release":
        from .course.release import main as run
    elif args.command == "stamp":
        from .course.stamp import main as run
    elif args.command == "bench" and args.bench == "model":
        from .experiments.bench_model import main as run
    elif args.command == "bench" and args.bench == "train":
        from .experiments.bench_train import main as run
    else:
        from .grading.command import main as run
    return run(args) or 0


if __name__ == "__main__":
    sys.exit(main())

"""``vitcourse grade``: arguments and entry point (filled in by the autograder)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exercise", required=True, help="exercise id, e.g. 01_patches")
    parser.add_argument("submissions", nargs="+", help=".ipynb files or folders of them")
    parser.add_argument("--out", required=True, help="output folder")


def main(args: argparse.Namespace) -> int:
    raise SystemExit("vitcourse grade: not implemented yet")

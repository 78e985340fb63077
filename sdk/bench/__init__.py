"""``sdk bench``: every backend side by side on the same photos - speed, memory and accuracy.

This module is imported whenever the ``sdk`` parser is built, so it holds only the argparse wiring;
the measuring code (and numpy, engines, torch) loads when the command runs.
"""

from __future__ import annotations

from .options import add_arguments


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="compare every backend (and torch, and a bare engine) on speed, memory and accuracy",
        description="Run one model on every discovered backend, on the PyTorch eager reference and on "
        "a bare engine session, each in its own process, and compare latency, throughput, peak memory "
        "and output accuracy against PyTorch.",
    )
    add_arguments(parser)
    parser.set_defaults(func=_handle)


def _handle(args) -> int:
    from .compare import run_from_args

    return run_from_args(args)

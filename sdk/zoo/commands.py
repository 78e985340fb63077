"""``sdk export`` and ``sdk train``.

The CLI imports this module to build its parser, on every ``sdk`` call: everything heavy (torch,
onnx, the training photos) is imported inside the handlers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError
from ..model import BUNDLED as MODEL_NAMES  # the zoo's cards are the bundled models (torch stays unimported)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export the bundled models (or a checkpoint) to ONNX and verify them",
        description="Export srcnn.onnx, srcnn3.onnx and super_resolution.onnx (ESPCN) at opset 11 "
        "with the SDK's pipeline metadata, and check each against PyTorch on ONNX Runtime. "
        "Needs the 'export' extra (torch).",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out-dir", type=Path, metavar="DIR", help="folder to write the models to")
    where.add_argument(
        "--bundle",
        action="store_true",
        help="write into the SDK's own models folder under the bundled names "
        "(srcnn.onnx, srcnn3.onnx, espcn.onnx): how the shipped models are made",
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=MODEL_NAMES,
        metavar="MODEL",
        help=f"which models ({', '.join(MODEL_NAMES)}; default: all, or those the checkpoint fits)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="weights to export instead of ours: an .npz from `sdk train`, or a PyTorch "
        "state dict / MMEditing checkpoint ({'state_dict': {'generator.conv1.weight': ...}})",
    )
    p.add_argument(
        "--checkpoint-range",
        type=float,
        choices=(1.0, 255.0),
        default=None,
        metavar="{1,255}",
        help="pixel value of white the checkpoint was trained for "
        "(default: 1 for MMEditing checkpoints, else the model's own range)",
    )
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "train",
        help="train a zoo model on the photos that scikit-image/scikit-learn ship",
        description="Train one model with its bundled recipe (fixed step count and seed, so a run "
        "is reproducible on the same machine). Needs the 'export' extra.",
    )
    p.add_argument("model", choices=MODEL_NAMES)
    p.add_argument("--out", type=Path, default=None, help="weights file to write (default: MODEL.npz)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 2)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument(
        "--scale-weights",
        type=float,
        nargs="+",
        default=None,
        metavar="W",
        help="relative frequency of each training scale (srcnn3: scales 2 3 4)",
    )
    p.add_argument(
        "--no-tune-malloc",
        action="store_true",
        help="do not restart with the GLIBC_TUNABLES that make CPU training ~35%% faster",
    )
    p.set_defaults(func=cmd_train)


def _select(args, checkpoint) -> list[str]:
    from .catalog import CARDS
    from .checkpoint import fits

    if args.models:
        return list(args.models)
    if checkpoint is None:
        return list(MODEL_NAMES)
    if checkpoint.model:
        return [checkpoint.model]
    chosen = [name for name, card in CARDS.items() if fits(checkpoint, card.build(False))]
    if not chosen:
        from ..errors import ModelError

        keys = ", ".join(sorted(checkpoint.state_dict)[:6])
        raise ModelError(f"the checkpoint fits none of {', '.join(MODEL_NAMES)} (its keys: {keys} ...)")
    return chosen


def cmd_export(args) -> int:
    from .catalog import CARDS
    from .checkpoint import build_from, read_checkpoint
    from .export import export_card
    from .weights import load_weights

    if args.out_dir is not None and args.out_dir.exists() and not args.out_dir.is_dir():
        raise InputError(f"--out-dir {args.out_dir} is a file; pass a folder (it is created if missing)")
    checkpoint = None
    if args.checkpoint is not None:
        checkpoint = read_checkpoint(args.checkpoint, args.checkpoint_range)
    for name in _select(args, checkpoint):
        card = CARDS[name]
        weights = checkpoint if checkpoint is not None else load_weights(card.weights_file)
        network = build_from(card, weights)
        path = card.bundled_file if args.bundle else args.out_dir / card.export_file
        export_card(card, network, path, doc=_describe(card, weights, args.checkpoint))
    return 0


def _describe(card, weights, checkpoint: Path | None) -> str:
    """The model's doc_string: what the network is and where its weights come from."""
    shape = (
        "with a global residual over the bicubic upsample"
        if weights.residual
        else "the tutorial's architecture (no residual)"
    )
    if checkpoint is not None:
        origin = f"weights from {checkpoint.name}"
    else:
        recipe = weights.info.get("recipe", {})
        origin = (
            f"weights trained by deploy-sdk (`sdk train {card.name}`: {recipe.get('steps')} "
            f"steps, seed {recipe.get('seed')}) on photos shipped by scikit-image and "
            "scikit-learn"
        )
    return f"{card.summary}, {shape}; {origin}."


def _restart_with_tuned_malloc(args) -> None:
    """Re-run this very command with GLIBC_TUNABLES set (glibc reads it only at process start)."""
    from .train import GLIBC_TUNABLES

    invoked_as_cli = sys.argv[1:2] == ["train"]  # not when called in-process, e.g. from tests
    if args.no_tune_malloc or not invoked_as_cli or "GLIBC_TUNABLES" in os.environ:
        return
    if not sys.platform.startswith("linux"):
        return
    print(
        "sdk train: restarting with GLIBC_TUNABLES set (glibc's allocator otherwise returns and "
        "re-faults the activation buffers every step); --no-tune-malloc to skip",
        flush=True,
    )
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], dict(os.environ, GLIBC_TUNABLES=GLIBC_TUNABLES))


def cmd_train(args) -> int:
    for option in ("steps", "batch", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise InputError(f"--{option} {value}: pass a positive whole number")
    if args.lr is not None and not args.lr > 0:
        raise InputError(f"--lr {args.lr}: pass a positive learning rate such as 1e-3")
    if args.out is not None and args.out.is_dir():
        raise InputError(
            f"--out {args.out} is a folder; pass the weights file to write, e.g. {args.out / (args.model + '.npz')}"
        )
    _restart_with_tuned_malloc(args)
    from .catalog import CARDS
    from .train import recipe_for, train
    from .weights import save_weights

    overrides = {"steps": args.steps, "seed": args.seed, "threads": args.threads, "batch": args.batch, "lr": args.lr}
    if args.scale_weights is not None:
        if any(w < 0 for w in args.scale_weights) or not sum(args.scale_weights) > 0:
            raise InputError(f"--scale-weights {args.scale_weights}: pass one weight >= 0 per scale, not all 0")
        overrides["scale_weights"] = tuple(args.scale_weights)
    try:
        recipe = recipe_for(args.model, **overrides)
    except ValueError as exc:  # the recipe's own consistency checks
        raise InputError(f"sdk train {args.model}: {exc}") from None
    print(f"sdk train: {recipe}", flush=True)
    result = train(recipe, log=lambda line: print(line, flush=True))
    card = CARDS[args.model]
    out = args.out or Path(f"{args.model}.npz")
    save_weights(
        out,
        result.network,
        model=args.model,
        residual=recipe.residual,
        value_scale=card.value_scale,
        info=result.info(),
    )
    print(
        f"wrote {out}: {recipe.steps} steps in {result.seconds:.0f} s "
        f"({result.cpu_seconds / 60:.1f} CPU-minutes); export it with: "
        f"sdk export --out-dir DIR --checkpoint {out}"
    )
    return 0

"""Load weights from elsewhere into our networks, adapting the checkpoint's layout.

MMEditing saves its restorers as ``{"state_dict": {"generator.conv1.weight": ...}, "meta": ...}``:
the network sits under the ``generator`` attribute of the restorer. Dropping that first key
component gives exactly the names of the tutorial's SRCNN (and of ours), which is what the MMDeploy
tutorial does by hand. MMEditing also trains on pixel values 0..1 while our SRCNN takes 0..255, so
its biases are rescaled (see :func:`sdk.zoo.nets.rescale_values`) instead of being fed the wrong
range, as the tutorial does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from .catalog import ModelCard
from .nets import rescale_values
from .weights import Weights, load_weights

# Containers a training framework wraps the network in; stripped from the front of every key.
_WRAPPER_PREFIXES = ("generator.", "module.", "model.")


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} holds no state dict (expected a dict of tensors, or one under 'state_dict')")
    return obj


def adapt_keys(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Strip wrapper prefixes; return the adapted dict and the prefix removed ("" if none)."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix) :]: v for k, v in state_dict.items()}, prefix
    return dict(state_dict), ""


def read_checkpoint(path: str | Path, value_scale: float | None = None) -> Weights:
    """Read our ``.npz`` weights or a PyTorch checkpoint (``.pth``), adapting foreign layouts.

    value_scale: the pixel value the checkpoint was trained for (1 or 255). By default 1 for an
    MMEditing checkpoint (recognised by its ``generator.`` keys) and unknown (None) otherwise,
    meaning "the model's own range". A foreign checkpoint is the tutorial's architecture, so it
    loads with ``residual=False``.
    """
    path = Path(path)
    if path.suffix == ".npz":
        return load_weights(path)
    try:
        # weights_only: a checkpoint from the internet must not be able to run code on load.
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # torch raises several unrelated types for a bad or unsafe file
        raise ModelError(
            f"cannot read checkpoint {path} as plain tensors ({exc}); save it with "
            "torch.save(model.state_dict(), ...) or as {'state_dict': ...}"
        ) from exc
    state_dict, prefix = adapt_keys(_unwrap(raw, path))
    if value_scale is None and prefix == "generator.":
        value_scale = 1.0
    return Weights(
        model="",
        residual=False,
        state_dict=state_dict,
        value_scale=value_scale if value_scale is not None else 0.0,
        info={"source": str(path), "stripped_prefix": prefix},
    )


def fits(weights: Weights, network: nn.Module) -> bool:
    """Whether the checkpoint has exactly the network's tensors, name for name and shape for shape."""
    own = network.state_dict()
    return own.keys() == weights.state_dict.keys() and all(own[k].shape == weights.state_dict[k].shape for k in own)


def build_from(card: ModelCard, weights: Weights) -> nn.Module:
    """A ``card`` network carrying ``weights``, in the card's value range, ready to export."""
    network = card.build(weights.residual)
    if not fits(weights, network):
        own = network.state_dict()
        missing = sorted(set(own) - set(weights.state_dict))
        extra = sorted(set(weights.state_dict) - set(own))
        wrong = sorted(k for k in set(own) & set(weights.state_dict) if own[k].shape != weights.state_dict[k].shape)
        raise ModelError(
            f"the checkpoint does not fit {card.name} ({card.summary}): missing {missing}, "
            f"unexpected {extra}, wrong shape {wrong}; pick the matching model with --models"
        )
    network.load_state_dict(weights.state_dict)
    if weights.value_scale and weights.value_scale != card.value_scale:
        rescale_values(network, card.value_scale / weights.value_scale)
    return network.eval()

"""Our trained weights, stored as plain ``.npz`` arrays so that loading them never unpickles code.

Each file holds the network's ``state_dict`` plus one ``__meta__`` entry: a JSON string saying
which model the weights are for, whether the global residual is on, the value range they work in
and how they were trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..files import atomic_file

META_KEY = "__meta__"


@dataclass
class Weights:
    model: str
    residual: bool
    state_dict: dict[str, torch.Tensor]
    value_scale: float  # the tensor value of a white pixel these weights expect
    info: dict[str, Any] = field(default_factory=dict)  # training recipe and figures


def save_weights(
    path: Path, network: nn.Module, *, model: str, residual: bool, value_scale: float, info: dict[str, Any]
) -> None:
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in network.state_dict().items()}
    meta = {"model": model, "residual": residual, "value_scale": value_scale, "info": info}
    arrays[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    with atomic_file(path) as handle:  # a file object also keeps numpy from appending a second .npz
        np.savez_compressed(handle, **arrays)


def load_weights(path: Path) -> Weights:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[META_KEY]))
            state = {k: torch.from_numpy(data[k].copy()) for k in data.files if k != META_KEY}
    except FileNotFoundError:
        raise ModelError(f"no weights at {path}; train them with `sdk train` or pass another --checkpoint") from None
    except (KeyError, ValueError, OSError) as exc:
        raise ModelError(f"{path} is not a deploy-sdk weights file ({exc})") from exc
    return Weights(
        model=meta["model"],
        residual=bool(meta["residual"]),
        state_dict=state,
        value_scale=float(meta["value_scale"]),
        info=meta.get("info", {}),
    )

"""Train the zoo's networks on the offline training photos, reproducibly, within a CPU budget.

Every run is defined by a :class:`Recipe` with a fixed number of steps (never a wall-clock budget:
the same seed on the same machine must give the same weights). Data: each photo is cropped to a
multiple of the scale and shrunk with PIL bicubic - the benchmark's own degradation - and training
pairs are random aligned patches, randomly flipped and rotated. The loss is L2 on values scaled to
0..1, whatever range the network itself works in, over the whole patch: the network must learn
what its zero padding does at image borders too (leaving a 6-pixel margin out of the loss cost
0.4 dB on Set5 at x3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from .. import color
from ..photos import load_training_photos
from .catalog import ModelCard
from .catalog import card as card_named
from .imaging import bicubic_resize, crop_to_multiple
from .nets import rescale_values
from .resize import scale_factor_tensor

# The allocator settings that stop glibc from returning and re-faulting the large activation
# buffers every step: measured 96 ms -> 60-67 ms a step on the 2-core build machine.
GLIBC_TUNABLES = (
    "glibc.malloc.mmap_threshold=2000000000:glibc.malloc.trim_threshold=4000000000:glibc.malloc.top_pad=1000000000"
)


@dataclass(frozen=True)
class Recipe:
    model: str
    steps: int
    batch: int = 16
    patch: int = 72  # HR patch side; 72 divides by 2, 3 and 4
    lr: float = 1e-3
    warmup: int = 100  # linear warm-up steps before the cosine decay
    scales: tuple[int, ...] = (3,)
    scale_weights: tuple[float, ...] = (1.0,)  # how often each scale is drawn
    residual: bool = True
    # Tensor value of white fed to the network while training; None: the model's own range. A
    # network trained on another range is converted to its own afterwards, exactly (see
    # sdk.zoo.nets.rescale_values). Measured for SRCNN: on its own 0..255 the first layer learns
    # far faster than on 0..1 (srcnn3 after 12000 steps: +1.38/+1.24/+0.88 dB at x2/x3/x4 against
    # +1.18/+1.16/+0.78 on 0..1 even at lr 3e-3), but its biases learn 255 times slower, and at lr 3e-3 a long run
    # switched every ReLU off for good (the network collapsed to bicubic): keep lr at 1e-3.
    train_range: float | None = None
    # "psnr": divide each scale's loss by bicubic's error at that scale, so that every scale's
    # gradient counts in proportion to its dB gain (the x2 error is ~half the x3 one, so plain
    # MSE lets x3 and x4 outvote x2); "mse": plain L2.
    balance: str = "mse"
    seed: int = 0
    threads: int = 2

    def __post_init__(self):
        if len(self.scales) != len(self.scale_weights):
            raise ValueError(
                f"{len(self.scale_weights)} scale weights for the scales {self.scales}: give one per scale"
            )
        if any(self.patch % s for s in self.scales):
            raise ValueError(f"patch {self.patch} is not a multiple of every scale {self.scales}")


# The recipes the bundled weights were trained with (`sdk train MODEL` reproduces them).
RECIPES: dict[str, Recipe] = {
    "srcnn": Recipe(model="srcnn", steps=12000),
    # One set of weights for every factor: scales 2, 3 and 4 mixed, each scale's loss measured
    # against bicubic's. After 12000 steps this gave +1.38/+1.24/+0.88 dB at x2/x3/x4 on Set5,
    # plain MSE +0.68/+1.28/+1.01; 36000 steps with the scales drawn equally +1.24/+1.29/+1.00.
    # x3, the scale the tutorials serve, is drawn twice as often as the others.
    "srcnn3": Recipe(model="srcnn3", steps=36000, scales=(2, 3, 4), scale_weights=(1.0, 2.0, 1.0), balance="psnr"),
    "espcn": Recipe(model="espcn", steps=20000, residual=False),
}


@dataclass
class _Pair:
    low: torch.Tensor  # C x h x w, values 0..1
    high: torch.Tensor  # C x (h*s) x (w*s)


class PatchSampler:
    """Aligned (low-res, high-res) patch batches, drawn deterministically from a numpy Generator."""

    def __init__(self, photos: dict[str, np.ndarray], recipe: Recipe, luma: bool):
        self.recipe = recipe
        self.pairs: dict[int, list[_Pair]] = {}
        self.weights: dict[int, np.ndarray] = {}
        for scale in recipe.scales:
            pairs = []
            for photo in photos.values():
                pairs.append(self._pair(photo, scale, luma))
            lo = recipe.patch // scale
            # Draw each pair in proportion to its number of patch positions: every patch position
            # of the data set is then equally likely.
            counts = np.array([(p.low.shape[1] - lo + 1) * (p.low.shape[2] - lo + 1) for p in pairs], dtype=np.float64)
            self.pairs[scale], self.weights[scale] = pairs, counts / counts.sum()
        weights = np.asarray(recipe.scale_weights, dtype=np.float64)
        self.scale_probabilities = weights / weights.sum()
        self.loss_weights = self._loss_weights(recipe.balance)

    def _loss_weights(self, balance: str) -> dict[int, float]:
        if balance == "mse":
            return dict.fromkeys(self.pairs, 1.0)
        if balance != "psnr":
            raise ValueError(f"unknown balance {balance!r}: use 'mse' or 'psnr'")
        errors = {}
        for scale, pairs in self.pairs.items():
            total, count = 0.0, 0
            for pair in pairs:
                up = torch.nn.functional.interpolate(
                    pair.low[None], size=pair.high.shape[1:], mode="bicubic", align_corners=False
                )[0]
                total += float(((up - pair.high) ** 2).sum())
                count += pair.high.numel()
            errors[scale] = total / count
        # Normalised so the expected weight is 1: the loss keeps its usual magnitude.
        norm = sum(p / errors[s] for s, p in zip(self.pairs, self.scale_probabilities))
        return {s: float(1.0 / (errors[s] * norm)) for s in self.pairs}

    @staticmethod
    def _pair(photo: np.ndarray, scale: int, luma: bool) -> _Pair:
        high = crop_to_multiple(photo, scale)
        low = bicubic_resize(high, (high.shape[1] // scale, high.shape[0] // scale))

        def tensor(image: np.ndarray) -> torch.Tensor:
            if luma:
                return torch.from_numpy(color.luma(image) / 255.0).unsqueeze(0)
            return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()

        return _Pair(tensor(low), tensor(high))

    def sample(self, rng: np.random.Generator) -> tuple[int, torch.Tensor, torch.Tensor]:
        scale = int(rng.choice(self.recipe.scales, p=self.scale_probabilities))
        lo = self.recipe.patch // scale
        pairs = self.pairs[scale]
        lows, highs = [], []
        for index in rng.choice(len(pairs), size=self.recipe.batch, p=self.weights[scale]):
            pair = pairs[index]
            y = int(rng.integers(0, pair.low.shape[1] - lo + 1))
            x = int(rng.integers(0, pair.low.shape[2] - lo + 1))
            low = pair.low[:, y : y + lo, x : x + lo]
            high = pair.high[:, y * scale : (y + lo) * scale, x * scale : (x + lo) * scale]
            # One of the 8 flips/rotations of the square, the same for both halves of the pair.
            turns, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
            low, high = torch.rot90(low, turns, (1, 2)), torch.rot90(high, turns, (1, 2))
            if flip:
                low, high = low.flip(2), high.flip(2)
            lows.append(low)
            highs.append(high)
        return scale, torch.stack(lows).contiguous(), torch.stack(highs).contiguous()


def learning_rate(recipe: Recipe, step: int) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainingResult:
    network: nn.Module  # in the card's own value range, ready to export
    recipe: Recipe
    seconds: float  # wall-clock time of the training steps
    cpu_seconds: float  # CPU time of the process over the same span, all threads together
    final_loss: float
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss)

    def info(self) -> dict:
        return {
            "recipe": asdict(self.recipe),
            "seconds": round(self.seconds, 1),
            "cpu_seconds": round(self.cpu_seconds, 1),
            "final_loss": self.final_loss,
            "torch": torch.__version__,
        }


def train(
    recipe: Recipe,
    *,
    log: Callable[[str], None] = print,
    log_every: int = 500,
    photos: dict[str, np.ndarray] | None = None,
    checkpoint: Callable[[int, nn.Module], None] | None = None,
) -> TrainingResult:
    """Run ``recipe``. ``checkpoint(step, network)`` is called at every log line, with the network in
    its training value range (``recipe.train_range``, else the card's); it must not change it."""
    card: ModelCard = card_named(recipe.model)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    sampler = PatchSampler(photos if photos is not None else load_training_photos(), recipe, luma=card.channels == 1)
    network = card.build(recipe.residual).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=recipe.lr)
    factors = {s: scale_factor_tensor(s) for s in recipe.scales}
    value = recipe.train_range or card.value_scale
    history: list[tuple[int, float]] = []
    running, count = 0.0, 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        scale, low, high = sampler.sample(rng)
        if value != 1.0:
            low = low * value
        args = (low, factors[scale]) if card.runtime_scale else (low,)
        out = network(*args)
        if value != 1.0:
            out = out / value
        mse = torch.mean((out - high) ** 2)
        optimizer.zero_grad(set_to_none=True)
        (mse * sampler.loss_weights[scale]).backward()
        optimizer.step()
        running, count = running + mse.item(), count + 1
        if (step + 1) % log_every == 0 or step + 1 == recipe.steps:
            mean = running / count
            history.append((step + 1, mean))
            elapsed = time.perf_counter() - started
            log(
                f"{recipe.model} step {step + 1}/{recipe.steps}  loss {mean:.3e} "
                f"(PSNR {-10 * math.log10(max(mean, 1e-12)):.2f} dB)  "
                f"{elapsed:.0f} s, {1000 * elapsed / (step + 1):.0f} ms/step"
            )
            running, count = 0.0, 0
            if checkpoint is not None:
                paused, cpu_paused = time.perf_counter(), time.process_time()
                with torch.no_grad():
                    checkpoint(step + 1, network)
                # Report the training's time only.
                started += time.perf_counter() - paused
                cpu_started += time.process_time() - cpu_paused
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    network.eval()
    if card.value_scale != value:
        rescale_values(network, card.value_scale / value)
    return TrainingResult(network, recipe, seconds, cpu_seconds, history[-1][1] if history else float("nan"), history)


def recipe_for(model: str, **overrides) -> Recipe:
    """The bundled recipe of ``model`` with some fields replaced (None values are ignored)."""
    base = RECIPES[card_named(model).name]
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})

"""Training: aligned patches, deterministic runs, weights files that export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdk.photos import TRAINING_PHOTOS, load_training_photos  # noqa: E402
from sdk.zoo.imaging import downscale  # noqa: E402
from sdk.zoo.train import PatchSampler, learning_rate, recipe_for, train  # noqa: E402
from sdk.zoo.weights import load_weights, save_weights  # noqa: E402


@pytest.fixture(scope="module")
def photos():
    return load_training_photos()


def test_training_photos_are_the_offline_ones(photos):
    assert list(photos) == list(TRAINING_PHOTOS)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos.values())


def test_patches_are_aligned_pairs():
    """The low-res patch is the bicubic downscale of the high-res one (up to the borders)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:120, 0:150]
    photo = np.stack([128 + 100 * np.sin(x / 9.0 + c) * np.cos(y / 7.0) for c in range(3)], -1).astype(np.uint8)
    recipe = recipe_for("srcnn3", batch=4, patch=36)
    sampler = PatchSampler({"waves": photo}, recipe, luma=False)
    for _ in range(6):
        scale, low, high = sampler.sample(rng)
        assert low.shape == (4, 3, 36 // scale, 36 // scale) and high.shape == (4, 3, 36, 36)
        for lo, hi in zip(low, high):
            hi8 = (hi.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            shrunk = downscale(hi8, scale).astype(np.float32) / 255
            inner = slice(2, -2)  # PIL's kernel reaches outside the patch at its edges
            diff = np.abs(shrunk[inner, inner] - lo.permute(1, 2, 0).numpy()[inner, inner])
            assert diff.mean() < 0.01


def test_learning_rate_warms_up_then_decays():
    recipe = recipe_for("srcnn", steps=1000, warmup=100, lr=1e-3)
    rates = [learning_rate(recipe, s) for s in range(1000)]
    assert rates[0] < rates[99] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[100:], rates[101:])) and rates[-1] < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("model", ["srcnn3", "espcn"])
def test_training_is_reproducible(photos, model):
    """Same seed, same machine: the same loss at every step and bit-identical weights."""
    recipe = recipe_for(model, steps=6, batch=2, patch=24, warmup=2)
    runs = [train(recipe, photos=photos, log=lambda s: None, log_every=2) for _ in range(2)]
    assert runs[0].history == runs[1].history and len(runs[0].history) == 3
    first, second = (r.network.state_dict() for r in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = train(
        recipe_for(model, steps=6, batch=2, patch=24, warmup=2, seed=1), photos=photos, log=lambda s: None, log_every=2
    )
    assert other.history != runs[0].history


@pytest.mark.slow
def test_trained_weights_round_trip_and_export(photos, tmp_path, capsys):
    from sdk.cli import main

    result = train(recipe_for("srcnn", steps=3, batch=2, patch=24, warmup=1), photos=photos, log=lambda s: None)
    path = tmp_path / "srcnn.npz"
    save_weights(path, result.network, model="srcnn", residual=True, value_scale=255.0, info=result.info())
    weights = load_weights(path)
    assert weights.model == "srcnn" and weights.residual and weights.info["recipe"]["steps"] == 3
    assert all(torch.equal(weights.state_dict[k], v) for k, v in result.network.state_dict().items())
    assert main(["export", "--out-dir", str(tmp_path), "--checkpoint", str(path)]) == 0
    assert [p.name for p in tmp_path.glob("*.onnx")] == ["srcnn.onnx"]


@pytest.mark.slow
def test_train_command_writes_weights(tmp_path, capsys, monkeypatch):
    from sdk.cli import main
    from sdk.zoo import train as training

    tiny = recipe_for("espcn", steps=2, batch=2, patch=24, warmup=1)
    monkeypatch.setitem(training.RECIPES, "espcn", tiny)
    out = tmp_path / "e.npz"
    assert main(["train", "espcn", "--out", str(out)]) == 0
    assert load_weights(out).model == "espcn"
    assert "sdk export" in capsys.readouterr().out


def test_bundled_weights_record_their_recipe():
    from sdk.zoo.catalog import CARDS

    for name, card in CARDS.items():
        weights = load_weights(card.weights_file)
        assert weights.model == name and weights.value_scale == card.value_scale
        assert weights.info["recipe"]["model"] == name and weights.info["recipe"]["steps"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "--steps 0: pass a positive whole number"),
        (["--batch", "-2"], "--batch -2: pass a positive whole number"),
        (["--lr", "0"], "--lr 0.0: pass a positive learning rate"),
        (["--scale-weights", "1", "2"], "2 scale weights for the scales (2, 3, 4): give one per scale"),
        (["--scale-weights", "0", "0", "0"], "not all 0"),
    ],
)
def test_train_refuses_bad_options_before_training(args, message, tmp_path, capsys):
    from sdk.cli import main

    out = tmp_path / "w.npz"
    assert main(["train", "srcnn3", "--out", str(out), *args]) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_train_refuses_a_folder_as_its_output(tmp_path, capsys):
    from sdk.cli import main

    assert main(["train", "espcn", "--out", str(tmp_path)]) != 0
    assert f"--out {tmp_path} is a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

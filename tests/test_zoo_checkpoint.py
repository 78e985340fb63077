"""The checkpoint adapter: MMEditing-style and plain state dicts into our networks, and export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdk.errors import ModelError  # noqa: E402
from sdk.zoo.catalog import CARDS  # noqa: E402
from sdk.zoo.checkpoint import adapt_keys, build_from, read_checkpoint  # noqa: E402
from sdk.zoo.nets import SRCNN, rescale_values  # noqa: E402
from sdk.zoo.resize import scale_factor_tensor  # noqa: E402


@pytest.fixture
def mmediting_checkpoint(tmp_path):
    """An MMEditing restorer checkpoint of the tutorial's SRCNN, trained (here: drawn) on 0..1."""
    torch.manual_seed(1)
    generator = SRCNN(scale=4, residual=False)
    checkpoint = {
        "meta": {"mmedit_version": "0.14.0", "iter": 1000000},
        "state_dict": {f"generator.{k}": v.clone() for k, v in generator.state_dict().items()},
    }
    path = tmp_path / "srcnn_x4k915.pth"
    torch.save(checkpoint, path)
    return path, generator


def test_adapt_keys_strips_the_generator_prefix():
    adapted, prefix = adapt_keys({"generator.conv1.weight": torch.zeros(1), "generator.conv3.bias": torch.zeros(1)})
    assert prefix == "generator." and sorted(adapted) == ["conv1.weight", "conv3.bias"]
    same, none = adapt_keys({"conv1.weight": torch.zeros(1)})
    assert none == "" and list(same) == ["conv1.weight"]


def test_mmediting_checkpoint_loads_into_the_runtime_scale_srcnn(mmediting_checkpoint):
    path, generator = mmediting_checkpoint
    weights = read_checkpoint(path)
    assert weights.value_scale == 1.0 and weights.residual is False
    network = build_from(CARDS["srcnn3"], weights)
    # Same kernels; biases moved to the 0..255 range our SRCNN works in.
    assert torch.equal(network.conv1.weight, generator.conv1.weight)
    assert torch.allclose(network.conv3.bias, generator.conv3.bias * 255)
    # So the adapted network on 0..255 is the original on 0..1, scaled: at any factor.
    image = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        for s in (2, 4):
            ours = network(image * 255, scale_factor_tensor(s)) / 255
            theirs = torch.nn.functional.interpolate(image, scale_factor=s, mode="bicubic", align_corners=False)
            theirs = generator.conv3(generator.relu(generator.conv2(generator.relu(generator.conv1(theirs)))))
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_checkpoint_range_can_be_overridden(mmediting_checkpoint):
    path, generator = mmediting_checkpoint
    network = build_from(CARDS["srcnn"], read_checkpoint(path, value_scale=255.0))
    assert torch.equal(network.conv3.bias, generator.conv3.bias)


@pytest.mark.slow
def test_export_from_a_checkpoint_writes_the_models_it_fits(mmediting_checkpoint, tmp_path, capsys):
    import onnx

    from sdk.cli import main

    path, _ = mmediting_checkpoint
    out = tmp_path / "out"
    assert main(["export", "--out-dir", str(out), "--checkpoint", str(path)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["srcnn.onnx", "srcnn3.onnx"]
    assert "srcnn_x4k915.pth" in onnx.load(str(out / "srcnn3.onnx")).doc_string
    assert "max abs diff" in capsys.readouterr().out


def test_a_checkpoint_that_does_not_fit_is_refused(mmediting_checkpoint, tmp_path, capsys):
    from sdk.cli import main

    path, _ = mmediting_checkpoint
    assert main(["export", "--out-dir", str(tmp_path), "--checkpoint", str(path), "--models", "espcn"]) == 1
    err = capsys.readouterr().err
    assert "does not fit espcn" in err and "missing" in err


def test_unreadable_and_unsafe_checkpoints_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "junk.pth")
    torch.save(
        {"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": np.random.default_rng()}, tmp_path / "unsafe.pth"
    )
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "unsafe.pth")


def test_rescale_values_is_exact_for_relu_networks():
    torch.manual_seed(0)
    network = SRCNN(scale=3, residual=True).eval()
    image = torch.rand(2, 3, 9, 7)
    with torch.no_grad():
        unit = network(image)
        rescale_values(network, 255.0)
        torch.testing.assert_close(network(image * 255) / 255, unit, rtol=1e-4, atol=1e-5)

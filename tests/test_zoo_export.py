"""Export of the zoo's networks: inputs, metadata, checker, ORT vs torch, and the tutorial's traps."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import torch.nn.functional as F  # noqa: E402

from sdk.errors import ExportError  # noqa: E402
from sdk.spec import PIPELINE_KEY, PipelineSpec  # noqa: E402
from sdk.zoo.catalog import CARDS  # noqa: E402
from sdk.zoo.export import export_card, to_onnx  # noqa: E402
from sdk.zoo.nets import _SRCNNLayers  # noqa: E402
from sdk.zoo.resize import scale_factor_tensor  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The three models exported by `sdk export --out-dir` with the bundled weights."""
    from sdk.cli import main

    out = tmp_path_factory.mktemp("export")
    assert main(["export", "--out-dir", str(out)]) == 0
    return out


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_writes_the_three_tutorial_files(exported, capsys):
    assert sorted(p.name for p in exported.iterdir()) == ["srcnn.onnx", "srcnn3.onnx", "super_resolution.onnx"]
    for path in exported.iterdir():
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == 11
        assert model.producer_name == "deploy-sdk" and model.doc_string
        assert len(onnx.load(str(path)).graph.initializer) > 0  # weights inside, no .data file
    assert not list(exported.glob("*.data"))


@pytest.mark.slow
def test_export_prints_the_torch_comparison(tmp_path, capsys):
    from sdk.cli import main

    assert main(["export", "--out-dir", str(tmp_path), "--models", "srcnn3"]) == 0
    printed = capsys.readouterr().out
    for scale in (2, 3, 4):
        assert f"x{scale} batch 1" in printed
    assert printed.count("max abs diff") == 4 and "max rel diff" in printed


def test_srcnn3_has_a_real_factor_input(exported):
    session = _session(exported / "srcnn3.onnx")
    assert [i.name for i in session.get_inputs()] == ["input", "factor"]
    image = np.random.default_rng(0).uniform(0, 255, (1, 3, 10, 12)).astype(np.float32)
    for s in (2, 4):
        factor = np.array([1, 1, s, s], dtype=np.float32)
        (out,) = session.run(None, {"input": image, "factor": factor})
        assert out.shape == (1, 3, 10 * s, 12 * s)


def test_dynamic_batch_and_spatial_axes(exported):
    for name, channels in (("srcnn.onnx", 3), ("super_resolution.onnx", 1)):
        session = _session(exported / name)
        for shape in ((1, channels, 8, 9), (3, channels, 13, 7)):
            (out,) = session.run(None, {"input": np.zeros(shape, np.float32)})
            assert out.shape == (shape[0], channels, shape[2] * 3, shape[3] * 3)


@pytest.mark.parametrize(
    "file, model", [("srcnn.onnx", "srcnn"), ("srcnn3.onnx", "srcnn3"), ("super_resolution.onnx", "espcn")]
)
def test_pipeline_metadata(exported, file, model):
    props = {p.key: p.value for p in onnx.load(str(exported / file)).metadata_props}
    spec = PipelineSpec.from_json(props[PIPELINE_KEY])
    assert spec == CARDS[model].spec
    if model == "srcnn3":
        assert (spec.scale, spec.scale_input, spec.color, spec.value_range) == (None, "factor", "rgb", (0, 255))
    elif model == "srcnn":
        assert (spec.scale, spec.color, spec.value_range) == (3, "rgb", (0, 255))
    else:
        assert (spec.scale, spec.color, spec.value_range, spec.image_input) == (3, "y", (0, 1), "input")
    json.loads(props[PIPELINE_KEY])


def test_onnx_matches_torch_on_a_photo(exported, photo):
    """The tutorial's check, on a real picture: ORT output == torch output on 0..1-scaled values."""
    from sdk.zoo.checkpoint import build_from
    from sdk.zoo.weights import load_weights

    card = CARDS["srcnn3"]
    network = build_from(card, load_weights(card.weights_file))
    image = torch.from_numpy(photo.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = network(image, scale_factor_tensor(3)).numpy()
    (got,) = _session(exported / "srcnn3.onnx").run(
        None, {"input": image.numpy(), "factor": scale_factor_tensor(3).numpy()}
    )
    np.testing.assert_allclose(got / 255, expected / 255, rtol=1e-3, atol=1e-5)


class _IntFactor(_SRCNNLayers):
    """Tutorial trap 1: the factor as a Python number."""

    def forward(self, image, upscale_factor):
        up = F.interpolate(image, scale_factor=upscale_factor, mode="bicubic", align_corners=False)
        return self.refine(up)


class _ItemFactor(_SRCNNLayers):
    """Tutorial trap 2: the factor read out of a tensor with .item() - traced as a constant."""

    def forward(self, image, factor):
        up = F.interpolate(image, scale_factor=factor[-1].item(), mode="bicubic", align_corners=False)
        return self.refine(up)


class _IgnoredFactor(_SRCNNLayers):
    """A factor input that the graph keeps but never reads."""

    def forward(self, image, factor):
        return self.refine(F.interpolate(image, scale_factor=3, mode="bicubic", align_corners=False)) + 0 * factor.sum()


def test_refuses_an_int_factor():
    image = torch.rand(1, 3, 8, 8) * 255
    with pytest.raises(ExportError, match="baked into the graph"):
        to_onnx(_IntFactor(True), (image, 3), CARDS["srcnn3"].spec)


def test_refuses_a_factor_read_with_item():
    image = torch.rand(1, 3, 8, 8) * 255
    with pytest.raises(ExportError, match=r"inputs \['input'\], expected \['input', 'factor'\]"):
        to_onnx(_ItemFactor(True), (image, scale_factor_tensor(3)), CARDS["srcnn3"].spec)


def test_refuses_a_model_that_ignores_its_factor(tmp_path):
    """Two inputs but the output size never follows the factor: verification catches it."""
    card = CARDS["srcnn3"]
    with pytest.raises(ExportError, match="does not honour its scale|never reads"):
        export_card(card, _IgnoredFactor(True), tmp_path / "bad.onnx", doc="", log=lambda s: None)
    assert not (tmp_path / "bad.onnx").exists()


def test_residual_false_is_the_tutorial_architecture(tmp_path):
    """Without the residual the graph has no Add: exactly the tutorial's layers."""
    card = CARDS["srcnn"]
    network = card.build(False)
    export_card(card, network, tmp_path / "plain.onnx", doc="", log=lambda s: None)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "plain.onnx")).graph.node]
    assert "Add" not in ops and ops.count("Conv") == 3 and ops.count("Resize") == 1


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    from sdk.cli import main

    not_a_folder = tmp_path / "models"
    not_a_folder.write_text("keep me")
    assert main(["export", "--out-dir", str(not_a_folder), "--models", "srcnn"]) != 0
    assert "is a file; pass a folder" in capsys.readouterr().err
    assert not_a_folder.read_text() == "keep me"

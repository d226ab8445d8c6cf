from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from resnet_deploy.artifacts.onnx_io import read_onnx_metadata
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.convert.export import export_onnx
from resnet_deploy.errors import ExportError, VerificationError
from resnet_deploy.models.source import open_model


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def test_export_is_one_checked_self_contained_file(resnet20_export):
    _, result = resnet20_export
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["resnet20.onnx"]  # no side file, no temp
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Conv"] == 19 and ops["Add"] == 9 and ops["Pad"] == 2  # option A zero-padding
    assert "BatchNormalization" not in ops  # folded into the convolutions


def test_export_carries_metadata_for_later_stages(resnet20_export):
    source, result = resnet20_export
    meta = read_onnx_metadata(result.path)
    assert meta == source.metadata
    assert meta.config.name == "resnet20" and meta.config.input_size == 32 and meta.checkpoint_sha256 is None
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["architecture"] == "resnet20" and props["weights"] == "random-init"
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert ArtifactMetadata.from_props(session.get_modelmeta().custom_metadata_map) == meta


@pytest.mark.parametrize("batch", [1, 5, 7])
def test_exported_model_matches_pytorch_at_any_batch(resnet20_export, batch):
    source, result = resnet20_export
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        expected = source.model(x).numpy()
    np.testing.assert_allclose(_run(result.path, x), expected, rtol=0, atol=1e-4)
    assert [c.batch for c in result.verification.checks] == [1, 5]
    assert result.verification.passed and result.verification.top1_agreement == 1.0


def test_static_batch_opset17_and_simplify(tmp_path):
    source = open_model(depth=20, plain=True)
    result = export_onnx(source.model, tmp_path / "p.onnx", source.metadata, opset=17, static_batch=3, simplify=True)
    model = onnx.load(str(result.path))
    assert model.opset_import[0].version == 17 and result.exporter == "torchscript"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    assert "Add" not in {n.op_type for n in model.graph.node}  # plain: no shortcuts
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(_run(result.path, x), source.model(x).numpy(), atol=1e-4)
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        _run(result.path, torch.randn(2, 3, 32, 32))


def test_failed_verification_writes_nothing(tmp_path):
    source = open_model(depth=20)
    with pytest.raises(VerificationError, match="nothing written"):
        export_onnx(source.model, tmp_path / "m.onnx", source.metadata, rtol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_bad_opset_and_batch_are_refused_before_work(tmp_path):
    source = open_model(depth=20)
    with pytest.raises(ExportError, match="`opset=7` is not supported"):
        export_onnx(source.model, tmp_path / "m.onnx", source.metadata, opset=7)
    with pytest.raises(ExportError, match="`static_batch` must be at least 1"):
        export_onnx(source.model, tmp_path / "m.onnx", source.metadata, static_batch=0)


def test_torchvision_checkpoint_export_names_imagenet_classes(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    source = open_model(tmp_path / "r18.pth", input_size=64)
    result = export_onnx(source.model, tmp_path / "r18.onnx", source.metadata)
    meta = read_onnx_metadata(result.path)
    assert meta.class_names[0] == "tench" and len(meta.class_names) == 1000
    assert meta.checkpoint_sha256 == source.checkpoint.sha256

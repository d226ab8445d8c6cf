"""Unit tests of ``resnet_deploy.convert.verify``: the allowance rules and what a comparison reports.

The models are a linear classifier on a (2, 3, 3) input; their ONNX twins are written by hand with
``onnx.helper``, so a graph can be exact, or wrong by a known amount, without any exporter. A
"noisy" PyTorch model computes ``(y + 1e5) - 1e5``: float32 keeps only 2**-7 of the 1e5, so its
logits are up to 0.0039 off a float64 run while the hand-written graph stays exact, the same
situation as a deep trained ResNet whose logits are small differences of large features.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from resnet_deploy.convert.verify import (
    DEFAULT_RTOL,
    INPUT_NAME,
    NOISE_FACTOR,
    BatchCheck,
    VerifyReport,
    allowed_error,
    verify_onnx,
)

SHAPE = (2, 3, 3)  # (C, H, W)
FEATURES = 18
CLASSES = 4
ATOL = 1e-5  # the relative bound's absolute floor
CANCEL = 1e5


class Linear(nn.Module):
    """Flatten + fc; with ``cancel`` the logits pass through ``(y + cancel) - cancel`` (FP32 noise)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, cancel: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(weight))
            self.fc.bias.copy_(torch.from_numpy(bias))
        self.cancel = cancel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(self.drop(x.flatten(1)))
        return (y + self.cancel) - self.cancel if self.cancel else y


def _graph(weight: np.ndarray, bias: np.ndarray, delta=None, shape: tuple[int, int, int] = SHAPE) -> bytes:
    """input (N, C, H, W) -> Flatten -> Gemm(weight, bias) [-> + delta]: the ONNX of ``Linear``."""
    nodes = [
        helper.make_node("Flatten", [INPUT_NAME], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["gemm" if delta is not None else "logits"], transB=1),
    ]
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")]
    if delta is not None:
        nodes.append(helper.make_node("Add", ["gemm", "D"], ["logits"]))
        inits.append(numpy_helper.from_array(np.asarray(delta, np.float32), "D"))
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weight.shape[0]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@pytest.fixture
def params() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.3, (CLASSES, FEATURES)).astype(np.float32)
    bias = rng.normal(0, 0.1, CLASSES).astype(np.float32)
    return weight, bias


def _inputs(batch_sizes=(1, 5), seed: int = 0) -> list[torch.Tensor]:
    """The batches verify_onnx draws: one generator seeded once, batches drawn in order."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *SHAPE, generator=generator) for batch in batch_sizes]


# ---- the allowance -----------------------------------------------------------------------------


def test_the_plain_bound_is_rtol_of_the_logit_scale_plus_an_absolute_floor():
    assert allowed_error(250.0, 1e-3) == (pytest.approx(0.25 + ATOL), "rtol")
    # logits below 1 are measured against 1: tiny logits do not shrink the bound to nothing
    assert allowed_error(0.02, DEFAULT_RTOL) == (pytest.approx(DEFAULT_RTOL + ATOL), "rtol")
    assert allowed_error(0.02, DEFAULT_RTOL) == allowed_error(1.0, DEFAULT_RTOL)


def test_the_noise_allowance_applies_only_where_it_exceeds_the_plain_bound():
    relative, _ = allowed_error(3.0, DEFAULT_RTOL)
    at_par = relative / NOISE_FACTOR  # NOISE_FACTOR x this equals the plain bound exactly
    assert allowed_error(3.0, DEFAULT_RTOL, fp32_error=at_par) == (relative, "rtol")
    above = at_par * 1.5
    assert allowed_error(3.0, DEFAULT_RTOL, fp32_error=above) == (pytest.approx(NOISE_FACTOR * above), "fp32-noise")
    # an unmeasured FP32 error (None) never widens the bound
    assert allowed_error(3.0, DEFAULT_RTOL, fp32_error=None) == (relative, "rtol")


def test_a_custom_noise_factor_scales_the_noise_allowance():
    assert allowed_error(1.0, DEFAULT_RTOL, fp32_error=1e-3, noise_factor=10.0) == (pytest.approx(1e-2), "fp32-noise")
    # a factor small enough that the noise allowance falls under the plain bound leaves the plain bound
    assert allowed_error(1.0, DEFAULT_RTOL, fp32_error=1e-3, noise_factor=0.05) == (
        pytest.approx(DEFAULT_RTOL + ATOL),
        "rtol",
    )


def test_a_negative_rtol_allows_no_error_at_all_even_with_noise():
    allowed, bound = allowed_error(1.0, -1.0, fp32_error=1.0)
    assert bound == "rtol" and allowed < 0  # below any |error|, zero included
    assert not BatchCheck(1, 0.0, 0.0, 1.0, 1.0, allowed).passed


# ---- BatchCheck and VerifyReport -----------------------------------------------------------------


def test_a_batch_passes_up_to_and_including_its_allowance():
    assert BatchCheck(
        1, max_abs_error=2e-4, mean_abs_error=1e-4, logit_scale=1.0, top1_agreement=1.0, allowed=2e-4
    ).passed
    assert not BatchCheck(1, 2.0001e-4, 1e-4, 1.0, 1.0, allowed=2e-4).passed


def test_the_allowance_is_described_with_its_origin():
    assert BatchCheck(1, 0.0, 0.0, 1.0, 1.0, allowed=1.23456e-4).describe_allowed() == "0.000123"
    noise = BatchCheck(1, 0.0, 0.0, 1.0, 1.0, allowed=0.0036, fp32_error=0.0009, bound="fp32-noise")
    assert noise.describe_allowed() == "0.0036 (4x PyTorch FP32's own error 0.0009 vs float64)"
    # a noise bound without a usable measurement is described as the bare number
    assert BatchCheck(1, 0.0, 0.0, 1.0, 1.0, allowed=0.0036, fp32_error=0.0, bound="fp32-noise").describe_allowed() == (
        "0.0036"
    )


def test_a_report_is_as_good_as_its_worst_batch():
    good = BatchCheck(1, 1e-6, 5e-7, 2.0, 1.0, allowed=2.1e-4)
    bad = BatchCheck(5, 3e-3, 1e-3, 2.0, 0.8, allowed=2.5e-3, fp32_error=6.25e-4, bound="fp32-noise")
    report = VerifyReport(checks=[good, bad], seconds=0.123456)
    assert not report.passed
    assert report.max_abs_error == 3e-3 and report.top1_agreement == 0.8 and report.noise_floor_used
    data = report.to_dict()
    assert data["passed"] is False and data["max_abs_error"] == 3e-3 and data["top1_agreement"] == 0.8
    assert data["rtol"] == DEFAULT_RTOL and data["noise_factor"] == NOISE_FACTOR and data["noise_floor_used"] is True
    assert data["seconds"] == 0.123
    assert data["batches"][1] == {
        "batch": 5,
        "max_abs_error": 3e-3,
        "mean_abs_error": 1e-3,
        "logit_scale": 2.0,
        "top1_agreement": 0.8,
        "allowed": 2.5e-3,
        "fp32_error": 6.25e-4,
        "bound": "fp32-noise",
    }
    only_good = VerifyReport(checks=[good])
    assert only_good.passed and not only_good.noise_floor_used


# ---- verify_onnx ---------------------------------------------------------------------------------


def test_an_exact_graph_passes_on_the_relative_bound_without_a_float64_run(params):
    weight, bias = params
    model = Linear(weight, bias)
    report = verify_onnx(model, _graph(weight, bias), SHAPE)
    assert report.passed and report.rtol == DEFAULT_RTOL and not report.noise_floor_used
    assert [c.batch for c in report.checks] == [1, 5]
    for check, x in zip(report.checks, _inputs(), strict=True):
        with torch.no_grad():
            scale = float(model(x).abs().max())
        assert check.logit_scale == pytest.approx(scale, rel=1e-6)  # measured on the seeded inputs
        assert check.allowed == pytest.approx(DEFAULT_RTOL * max(1.0, scale) + ATOL)
        assert check.max_abs_error < 1e-5 and check.top1_agreement == 1.0
        assert (check.bound, check.fp32_error) == ("rtol", None)


def test_a_graph_is_read_from_bytes_or_from_a_path_alike(params, tmp_path):
    weight, bias = params
    data = _graph(weight, bias, delta=np.array([0.25, 0, 0, 0]))
    (tmp_path / "m.onnx").write_bytes(data)
    from_bytes = verify_onnx(Linear(weight, bias), data, SHAPE, batch_sizes=(3,))
    from_path = verify_onnx(Linear(weight, bias), str(tmp_path / "m.onnx"), SHAPE, batch_sizes=(3,))
    assert [c.batch for c in from_bytes.checks] == [3]
    assert from_bytes.to_dict()["batches"] == from_path.to_dict()["batches"]


def test_a_wrong_graph_reports_its_max_and_mean_error_allowance_and_top1_agreement(params):
    weight, bias = params
    delta = np.array([0.25, 0.0, 0.0, 0.0])  # logit 0 off by 0.25: one of the four logits of every image
    model = Linear(weight, bias)
    report = verify_onnx(model, _graph(weight, bias, delta), SHAPE, batch_sizes=(1, 5, 64))
    assert not report.passed
    assert [c.batch for c in report.checks] == [1, 5, 64]
    for check, x in zip(report.checks, _inputs((1, 5, 64)), strict=True):
        with torch.no_grad():
            reference = model(x).numpy()
        agreement = float(((reference + delta).argmax(1) == reference.argmax(1)).mean())
        assert check.max_abs_error == pytest.approx(0.25, abs=1e-6)
        assert check.mean_abs_error == pytest.approx(0.25 / CLASSES, abs=1e-6)
        assert check.top1_agreement == agreement
        assert not check.passed
        # FP32's own error was measured to tell noise from a wrong graph; a linear layer has almost
        # none, so the plain bound stands
        assert check.fp32_error is not None and check.fp32_error < 1e-6
        assert check.bound == "rtol" and check.allowed == pytest.approx(DEFAULT_RTOL * max(1, check.logit_scale) + ATOL)
    assert report.max_abs_error == pytest.approx(0.25, abs=1e-6)
    assert report.top1_agreement == min(c.top1_agreement for c in report.checks) < 1.0  # 64 images: some flip


def test_an_rtol_of_zero_fails_a_wrong_graph_without_measuring_fp32_noise(params):
    weight, bias = params
    report = verify_onnx(Linear(weight, bias), _graph(weight, bias, np.full(CLASSES, 1e-3)), SHAPE, rtol=0.0)
    assert not report.passed
    assert all(c.fp32_error is None and c.bound == "rtol" and c.allowed == pytest.approx(ATOL) for c in report.checks)


def test_a_correct_graph_beyond_rtol_by_fp32_noise_passes_on_the_noise_allowance(params):
    weight, bias = params
    model = Linear(weight, bias, cancel=CANCEL)
    report = verify_onnx(model, _graph(weight, bias), SHAPE)
    assert report.passed and report.noise_floor_used
    for check, x in zip(report.checks, _inputs(), strict=True):
        with torch.no_grad():  # the float64 reference, computed here independently
            fp32 = model(x).double()
            exact = x.double().flatten(1) @ model.fc.weight.double().T + model.fc.bias.double()
        own_error = float((fp32 - exact).abs().max())
        assert check.fp32_error == pytest.approx(own_error, rel=1e-6, abs=1e-12)
        assert check.bound == "fp32-noise" and check.allowed == pytest.approx(NOISE_FACTOR * own_error)
        assert check.max_abs_error > DEFAULT_RTOL * max(1.0, check.logit_scale) + ATOL  # the plain bound alone fails
        assert check.max_abs_error == pytest.approx(own_error, rel=1e-3)  # ONNX Runtime is the exact one here
    # the float64 run used a copy: the caller's model is still float32
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_wrong_graph_fails_despite_the_noise_allowance_and_says_so(params):
    weight, bias = params
    model = Linear(weight, bias, cancel=CANCEL)
    report = verify_onnx(model, _graph(weight, bias, np.array([0.25, 0.0, 0.0, 0.0])), SHAPE)
    assert not report.passed and report.noise_floor_used
    for check in report.checks:
        assert check.bound == "fp32-noise" and check.max_abs_error > 4 * check.allowed  # not a near miss
        assert check.max_abs_error == pytest.approx(0.25, abs=4e-3)  # the 0.25, give or take FP32's noise
        factor = check.allowed / check.fp32_error
        assert factor == pytest.approx(NOISE_FACTOR)
        assert check.describe_allowed() == (
            f"{check.allowed:.3g} (4x PyTorch FP32's own error {check.fp32_error:.3g} vs float64)"
        )


def test_the_noise_factor_given_is_the_one_used_and_reported(params):
    weight, bias = params
    model = Linear(weight, bias, cancel=CANCEL)
    report = verify_onnx(model, _graph(weight, bias), SHAPE, noise_factor=16.0)
    assert report.passed and report.noise_factor == 16.0 and report.to_dict()["noise_factor"] == 16.0
    assert all(c.allowed == pytest.approx(16.0 * c.fp32_error) for c in report.checks)
    # below 1x, FP32's own error is not covered: the same correct graph fails
    assert not verify_onnx(model, _graph(weight, bias), SHAPE, noise_factor=0.5).passed


def test_the_inputs_are_seeded_so_a_seed_gives_the_same_report(params):
    weight, bias = params
    data = _graph(weight, bias, delta=np.array([0.0, 0.3, -0.2, 0.0]))
    first, again, other = (verify_onnx(Linear(weight, bias), data, SHAPE, seed=s) for s in (7, 7, 8))
    assert first.to_dict()["batches"] == again.to_dict()["batches"]
    assert [c.logit_scale for c in first.checks] != [c.logit_scale for c in other.checks]
    x7 = _inputs(seed=7)[0]
    with torch.no_grad():
        assert first.checks[0].logit_scale == pytest.approx(float(Linear(weight, bias)(x7).abs().max()), rel=1e-6)


def test_the_model_is_compared_in_eval_mode(params):
    weight, bias = params
    model = Linear(weight, bias, dropout=0.5).train()  # in train mode dropout would change every logit
    report = verify_onnx(model, _graph(weight, bias), SHAPE)
    assert report.passed and report.max_abs_error < 1e-5 and not model.training


# ---- what export_onnx says when verification fails -------------------------------------------------


def test_a_failed_export_names_the_worst_error_its_allowance_and_the_top1_agreement(tmp_path, monkeypatch):
    from resnet_deploy.convert import export as export_module
    from resnet_deploy.errors import VerificationError
    from resnet_deploy.models.source import open_model

    metadata = open_model(depth=20, input_size=8).metadata  # (3, 8, 8) inputs, as the model below takes
    features = 3 * 8 * 8
    weight = np.zeros((CLASSES, features), np.float32)
    weight[1:] = np.random.default_rng(0).normal(0, 0.01, (CLASSES - 1, features))
    bias = np.array([-10.0, 0.0, 0.0, 0.0], np.float32)  # PyTorch: logit 0 is exactly -10, never the top-1
    delta = np.array([100.0, 0.0, 0.0, 0.0])  # ONNX: logit 0 is 90, always the top-1

    proto = onnx.load_from_string(_graph(weight, bias, delta, shape=(3, 8, 8)))
    monkeypatch.setattr(export_module, "_to_proto", lambda *args, **kwargs: proto)
    with pytest.raises(VerificationError) as err:
        export_module.export_onnx(Linear(weight, bias), tmp_path / "wrong.onnx", metadata, opset=17)
    # max |error| 100 on both batches; the scale is the -10 logit, so 1e-4 x 10 + 1e-5 is allowed;
    # the first batch of the worst ratio is named
    assert math.isclose(DEFAULT_RTOL * 10 + ATOL, 0.00101)
    assert "max |error| 100 at batch 1 exceeds 0.00101 (top-1 agreement 0%); nothing written" in str(err.value)
    assert list(tmp_path.iterdir()) == []

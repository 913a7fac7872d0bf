"""int8 quantization (wjsentiment.quantize) and ONNX files in the service's engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_bright_dark

from wjsentiment import SentimentClassifier
from wjsentiment.export import load_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from wjsentiment.quantize import (  # noqa: E402
    POLICIES,
    QuantizationWarning,
    export_int8,
    fold_shapes,
    quantize_onnx,
)


@pytest.fixture(scope="module")
def data():
    """Bright vs dark images: a model learns them with confident probabilities."""
    X, y = make_bright_dark(24, seed=3)
    order = np.random.default_rng(0).permutation(len(y))
    return X[order], y[order]


@pytest.fixture(scope="module")
def model(data):
    X, y = data
    return SentimentClassifier(backbone="test_resnet", weights=None, image_size=32, epochs=3,
                               batch_size=8, calibration=None, verbose=0,
                               random_state=0).fit(X[:32], y[:32])


@pytest.fixture(scope="module")
def float_file(model, tmp_path_factory):
    return model.export_onnx(tmp_path_factory.mktemp("int8") / "float.onnx")


@pytest.fixture(scope="module")
def int8(model, data, tmp_path_factory):
    X, y = data
    path = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    return export_int8(model, path, X, y, n_calibration=16), path


def _ops(path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_int8_model_agrees_with_the_float_one(int8, model, float_file, data):
    report, path = int8
    X, y = data
    assert report.held_out and report.n_images == len(y) - 16
    assert report.agreement == 1.0 and report.mean_abs_difference < 0.01
    assert report.meets_parity and report.policy == POLICIES[0].name
    assert report.macro_f1 is not None and abs(report.macro_f1[1] - report.macro_f1[0]) <= 0.01
    assert "meets the parity" in report.summary()
    quantized = load_onnx(path)
    np.testing.assert_array_equal(quantized.predict(X[32:]), model.predict(X[32:]))
    assert "QuantizeLinear" in _ops(path) and "DequantizeLinear" in _ops(path)


def test_int8_file_keeps_the_metadata_and_adds_its_own(int8, float_file):
    _, path = int8
    before, after = load_onnx(float_file), load_onnx(path)
    for key in ("classes", "classes_dtype", "decision", "class_prior", "image_size"):
        assert after.metadata[key] == before.metadata[key], key
    np.testing.assert_array_equal(after.classes_, before.classes_)
    assert after.decision_rule_ == before.decision_rule_
    assert json.loads(after.metadata["quantization"])["calibration_images"] == 16
    assert json.loads(after.metadata["int8_parity"])["meets_parity"] is True


def test_pixels_stem_and_head_stay_float(int8):
    _, path = int8
    graph = onnx.load(str(path)).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert made_by.get(convs[0].input[1]) != "DequantizeLinear"  # the stem's weights: float
    assert all(made_by.get(c.input[1]) == "DequantizeLinear" for c in convs[1:])
    for node in graph.node:
        if node.op_type in ("Gemm", "Softmax"):
            assert made_by.get(node.input[0]) != "DequantizeLinear", node.op_type


def test_missing_parity_warns_and_says_so(float_file, data, tmp_path):
    X, y = data
    with pytest.warns(QuantizationWarning, match="does NOT meet the parity"):
        report = export_int8(float_file, tmp_path / "m.onnx", X, y, n_calibration=8,
                             tolerance=0.0)
    assert not report.meets_parity and report.mean_abs_difference > 0
    assert report.policy in [policy.name for policy in POLICIES]
    assert load_onnx(tmp_path / "m.onnx").predict(X[:4]).shape == (4,)


def test_labels_must_match_the_images(float_file, data, tmp_path):
    X, y = data
    with pytest.raises(ValueError, match="labels has 3 entries"):
        export_int8(float_file, tmp_path / "m.onnx", X, y[:3])


def test_fold_shapes_keeps_every_batch_size(data, tmp_path):
    X, y = data
    lite = SentimentClassifier(backbone="tf_efficientnet_lite0", weights=None, image_size=32,
                               epochs=1, batch_size=8, calibration=None, verbose=0,
                               random_state=0).fit(X[:8], y[:8])
    source = lite.export_onnx(tmp_path / "lite.onnx")
    assert fold_shapes(source, tmp_path / "folded.onnx", X[:4])
    before, after = _ops(source), _ops(tmp_path / "folded.onnx")
    assert "Shape" in before and "Shape" not in after and len(after) < len(before) / 2
    folded, original = load_onnx(tmp_path / "folded.onnx"), load_onnx(source)
    for n in (1, 2, 5):
        np.testing.assert_allclose(folded.predict_proba(X[:n]), original.predict_proba(X[:n]),
                                   atol=1e-5)
    assert folded.metadata == original.metadata
    quantize_onnx(tmp_path / "folded.onnx", tmp_path / "lite.int8.onnx", X[:8],
                  policy=POLICIES[-1])
    float_graph = onnx.load(str(tmp_path / "folded.onnx")).graph
    weights = {t.name: t for t in float_graph.initializer}
    depthwise = {c.name for c in float_graph.node if c.op_type == "Conv"
                 and weights[c.input[1]].dims[1] == 1}
    graph = onnx.load(str(tmp_path / "lite.int8.onnx")).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    convs = {c.name: c for c in graph.node if c.op_type == "Conv"}
    assert depthwise and depthwise <= set(convs)
    assert all(made_by.get(convs[name].input[1]) != "DequantizeLinear" for name in depthwise)
    assert any(made_by.get(c.input[1]) == "DequantizeLinear" for c in convs.values())


def test_quantizing_leaves_the_callers_log_settings_alone(float_file, data, tmp_path,
                                                         monkeypatch):
    import logging

    import onnxruntime

    X, _ = data
    severities = []
    monkeypatch.setattr(onnxruntime, "set_default_logger_severity", severities.append)
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        quantize_onnx(float_file, tmp_path / "m.int8.onnx", X[:8])
        assert logging.root.manager.disable == logging.INFO
    finally:
        logging.disable(previous)
    assert severities == []  # onnxruntime has no getter: what it cannot restore, it leaves


def test_fold_shapes_replaces_the_file_instead_of_rewriting_it(float_file, data, tmp_path):
    """A reader that has the old file open keeps reading the old file: the new one is written
    under a temporary name and renamed into place."""
    import os

    X, _ = data
    target = tmp_path / "folded.onnx"
    target.write_bytes(b"old")
    os.link(target, tmp_path / "reader")
    fold_shapes(float_file, target, X[:4])
    assert (tmp_path / "reader").read_bytes() == b"old"
    assert load_onnx(target).metadata == load_onnx(float_file).metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folded.onnx", "reader"]


# ------------------------------------------------------------ ONNX files in the service
def test_engine_runs_an_int8_file_as_the_float_model(int8, model, data):
    from wjsentiment.labels import ordinal_labels
    from wjsentiment.serve.engine import load_engine

    _, path = int8
    X, _ = data
    engine = load_engine(path)
    assert engine.heatmaps is False and engine.sizes == (32,)
    assert engine.classes == ordinal_labels(list(model.classes_))
    proba, labels = engine.predict({32: X[:6]})
    expected = load_onnx(path).predict_proba(X[:6])
    order = [list(model.classes_).index(c) for c in engine.classes]
    np.testing.assert_allclose(proba, expected[:, order], atol=1e-6)
    np.testing.assert_array_equal(labels, load_onnx(path).predict(X[:6]))

"""CUDA-only behaviour: bf16 training, CUDA graphs, moving models between devices.

Skipped where there is no GPU (as in CI); run on a GPU machine with ``pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import make_bright_dark

from wjsentiment import SentimentClassifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PARAMS = dict(weights=None, image_size=64, epochs=3, batch_size=16, verbose=0, random_state=0,
              augment=True)


def test_cuda_graphs_train_like_eager_steps():
    X, y = make_bright_dark(40, size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture would warn
        graphed = SentimentClassifier(**PARAMS, cuda_graphs=True).fit(X, y)
    eager = SentimentClassifier(**PARAMS, cuda_graphs=False).fit(X, y)
    g = [h["train_loss"] for h in graphed.history_]
    e = [h["train_loss"] for h in eager.history_]
    np.testing.assert_allclose(g, e, rtol=0.2, atol=0.05)
    assert graphed.score(X, y) >= 0.95 and eager.score(X, y) >= 0.95


def test_bf16_probabilities_match_cpu_fp32():
    X, y = make_bright_dark(16, size=64)
    clf = SentimentClassifier(**PARAMS).fit(X, y)
    cuda = clf.predict_proba(X)
    cpu = clf.set_params(device="cpu").predict_proba(X)
    assert np.abs(cuda - cpu).max() < 0.05


def test_model_trained_on_cuda_unpickles_on_a_cpu_only_machine(tmp_path):
    X, y = make_bright_dark(8, size=64)
    clf = SentimentClassifier(**PARAMS).fit(X, y)
    (tmp_path / "clf.pkl").write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", clf.set_params(device="cpu").predict_proba(X))
    code = (
        "import pickle, numpy as np, torch, sys; assert not torch.cuda.is_available();"
        f"clf = pickle.load(open({str(tmp_path / 'clf.pkl')!r}, 'rb'));"
        f"p = clf.predict_proba(np.load({str(tmp_path / 'X.npy')!r}));"
        f"e = np.load({str(tmp_path / 'expected.npy')!r});"
        "assert np.abs(p - e).max() < 1e-5, np.abs(p - e).max(); print('ok')"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_finetune_head_on_cuda():
    X, y = make_bright_dark(16, size=64)
    clf = SentimentClassifier(**{**PARAMS, "epochs": 10, "lr": 1e-2}, finetune="head").fit(X, y)
    assert clf.predict_proba(X).shape == (32, 2)


def test_cuda_graphs_with_streamed_batches(monkeypatch):
    # Images that do not stay on the GPU stream from pinned buffers filled by other threads,
    # which keep working while the train step is captured.
    from wjsentiment import batches

    monkeypatch.setattr(batches, "GPU_RESIDENT_SHARE", 0.0)
    X, y = make_bright_dark(40, size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture would warn
        clf = SentimentClassifier(**PARAMS, cuda_graphs=True).fit(X, y)
    assert clf.score(X, y) >= 0.95


def test_grad_cam_runs_on_cuda_like_on_the_cpu():
    from wjsentiment.explain import grad_cam

    X, y = make_bright_dark(8, size=64)
    clf = SentimentClassifier(**PARAMS).fit(X, y)
    target = clf.predict(X)
    cuda = grad_cam(clf, X, target=target)
    assert next(clf.model_.parameters()).device.type == "cuda"
    cpu = grad_cam(clf.set_params(device="cpu"), X, target=target)
    assert np.abs(cuda - cpu).mean() < 0.02  # TF32 convolutions on the GPU


def test_export_of_a_model_on_cuda_matches_the_cpu(tmp_path):
    pytest.importorskip("onnxruntime")
    from wjsentiment.export import load_onnx

    X, y = make_bright_dark(8, size=64)
    clf = SentimentClassifier(**PARAMS).fit(X, y)
    model = load_onnx(clf.export_onnx(tmp_path / "model.onnx"))
    assert next(clf.model_.parameters()).device.type == "cuda"  # exported from a CPU copy
    cpu = clf.set_params(device="cpu").predict_proba(X)
    assert np.abs(model.predict_proba(X) - cpu).max() < 1e-4


def sample_photos(folder, n: int, size=(500, 375)) -> list[str]:
    """Baseline JPEGs cut from scikit-learn's sample photos, Flickr-size."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    sources = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    paths = []
    for i in range(n):
        src = sources[i % 2]
        top, left = 7 * i % 50, 11 * i % 100
        crop = Image.fromarray(src[top:top + 330, left:left + 440]).resize(size)
        path = folder / f"photo_{i}.jpg"
        crop.save(path, quality=90)
        paths.append(str(path))
    return paths


def test_nvjpeg_pixels_agree_with_the_host_decoder(tmp_path):
    from PIL import Image

    from wjsentiment.images import clear_image_cache, decode_image, get_store
    from wjsentiment.images.device import HOST_TOLERANCE

    photos = sample_photos(tmp_path, 8)
    with Image.open(photos[0]) as first:
        first.save(tmp_path / "progressive.jpg", quality=90, progressive=True)
        first.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    data = bytearray(open(photos[1], "rb").read())
    sos = data.index(b"\xff\xda")
    data[sos + 2:sos + 4] = b"\x00\x00"
    (tmp_path / "broken.jpg").write_bytes(bytes(data))
    others = [str(tmp_path / n) for n in ("progressive.jpg", "cmyk.jpg", "broken.jpg")]
    clear_image_cache()
    store = get_store(224)
    result = store.add(photos + others, device=torch.device("cuda"), num_workers=4)
    assert [pos for pos, _ in result.errors] == [len(photos) + 2]  # the broken file, on the host
    pixels = store.gather(result.rows[:-1])
    gaps = [np.abs(p.astype(int) - decode_image(path, 224).astype(int)).mean()
            for p, path in zip(pixels, photos)]
    assert max(gaps) < HOST_TOLERANCE, gaps
    for p, path in zip(pixels[len(photos):], others[:2]):  # decoded on the host
        np.testing.assert_array_equal(p, decode_image(path, 224))
    clear_image_cache()


def test_fit_and_predict_decode_jpeg_files_on_the_gpu(tmp_path):
    from wjsentiment.images import clear_image_cache

    clear_image_cache()
    photos = sample_photos(tmp_path, 16)
    y = ["Negative", "Positive"] * 8
    clf = SentimentClassifier(**{**PARAMS, "image_size": 64}, decoder="cuda").fit(photos, y)
    proba = clf.predict_proba(photos)
    host = clf.set_params(decoder="cpu")
    clear_image_cache()
    assert np.abs(host.predict_proba(photos) - proba).max() < 0.1
    clear_image_cache()

"""Batched JPEG decoding on a torch device, tested on the CPU.

``torchvision.io.decode_jpeg`` runs on the CPU too, so the device path (which files go to
the device, batching, the per-file fallback, the host geometry, the store's bookkeeping) runs
here without a GPU. ``tests/test_gpu.py`` checks nvJPEG itself.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import ExifTags, Image
from test_jpeg_decoders import photo, save_jpeg

from wjsentiment import SentimentClassifier
from wjsentiment.images import BadImageError, clear_image_cache, decode_image, get_store
from wjsentiment.images import device as device_module
from wjsentiment.images.device import (
    DECODERS,
    HOST_TOLERANCE,
    decode_device,
    decode_files_on_device,
    read_device_jpeg,
)

CPU = torch.device("cpu")


@pytest.fixture
def device_calls(monkeypatch):
    """The number of files in each call of torchvision's decode_jpeg."""
    calls = []
    original = torchvision.io.decode_jpeg

    def spy(batch, *args, **kwargs):
        calls.append(len(batch))
        return original(batch, *args, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", spy)
    return calls


def on_device(paths, size=32, grayscale=False) -> list:
    with ThreadPoolExecutor(2) as pool:
        found = list(decode_files_on_device(paths, size, grayscale, CPU, pool))
    assert [pos for pos, _ in found] == list(range(len(paths)))
    return [pixels for _, pixels in found]


def jpegs(folder, n, width=96, height=72) -> list[str]:
    return [save_jpeg(folder / f"p{i}.jpg", photo(width, height, seed=i)) for i in range(n)]


def test_decoders_and_where_they_decode():
    assert DECODERS == ("auto", "cpu", "cuda")
    assert decode_device("cpu", CPU) is None
    assert decode_device("auto", CPU) is None  # the model runs on the CPU: decode there
    with pytest.raises(ValueError, match="decoder must be one of"):
        decode_device("gpu", CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_decoder_cuda_without_a_gpu_says_what_to_do():
    with pytest.raises(ValueError, match="decoder='cuda' needs a CUDA GPU"):
        decode_device("cuda", CPU)
    with pytest.raises(ValueError, match="decoder='cuda'"):
        SentimentClassifier(weights=None, decoder="cuda").fit(
            np.zeros((4, 8, 8, 3), dtype=np.uint8), [0, 1, 0, 1])


def test_an_unknown_decoder_is_refused_by_the_estimator():
    with pytest.raises(ValueError, match="decoder must be one of"):
        SentimentClassifier(weights=None, decoder="nvjpeg").fit(
            np.zeros((4, 8, 8, 3), dtype=np.uint8), [0, 1, 0, 1])


def test_only_upright_baseline_jpegs_go_to_the_device(tmp_path):
    pixels = photo(64, 48)
    baseline = save_jpeg(tmp_path / "b.jpg", pixels)
    progressive = save_jpeg(tmp_path / "p.jpg", pixels, progressive=True)
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "c.jpg")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    turned = save_jpeg(tmp_path / "t.jpg", pixels, exif=exif)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    whole = open(baseline, "rb").read()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "padded.jpg").write_bytes(whole + b"\0" * 16)

    found = read_device_jpeg(baseline)
    assert found is not None and found.header.width == 64 and found.header.height == 48
    assert bytes(found.data) == whole
    assert read_device_jpeg(tmp_path / "padded.jpg") is not None
    for name in ("p.jpg", "c.jpg", "t.jpg", "x.png", "cut.jpg", "missing.jpg"):
        assert read_device_jpeg(tmp_path / name) is None, name
    assert progressive and turned


def test_device_pixels_follow_the_host_geometry(tmp_path):
    paths = jpegs(tmp_path, 4, 500, 375)
    for size in (224, 64):
        for pixels, path in zip(on_device(paths, size), paths):
            host = decode_image(path, size)
            assert pixels.shape == host.shape == (size, size, 3) and pixels.dtype == np.uint8
            assert np.abs(pixels.astype(int) - host.astype(int)).mean() < HOST_TOLERANCE


def test_grayscale_output_on_the_device(tmp_path):
    (pixels,) = on_device(jpegs(tmp_path, 1), 32, grayscale=True)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


def test_files_are_batched(tmp_path, monkeypatch, device_calls):
    monkeypatch.setattr(device_module, "DEVICE_BATCH", 3)
    results = on_device(jpegs(tmp_path, 7))
    assert all(r is not None for r in results)
    assert device_calls == [3, 3, 1]


def test_batches_are_bounded_by_pixels(tmp_path, monkeypatch, device_calls):
    monkeypatch.setattr(device_module, "DEVICE_BATCH_PIXELS", 2 * 96 * 72)
    on_device(jpegs(tmp_path, 5))
    assert device_calls == [2, 2, 1]


def test_a_file_the_device_refuses_falls_back_alone(tmp_path, device_calls):
    paths = jpegs(tmp_path, 4)
    data = bytearray(open(paths[2], "rb").read())
    sos = data.index(b"\xff\xda")
    data[sos + 2:sos + 4] = b"\x00\x00"  # the scan header's length: no decoder reads on
    (tmp_path / "p2.jpg").write_bytes(bytes(data))
    results = on_device(paths)
    assert [r is None for r in results] == [False, False, True, False]
    assert device_calls == [4, 1, 1, 1, 1]  # the batch failed, then each file alone


def test_when_the_device_refuses_a_whole_batch_the_rest_stays_on_the_host(tmp_path,
                                                                         monkeypatch):
    calls = []

    def broken(batch, *args, **kwargs):
        calls.append(len(batch))
        raise RuntimeError("nvjpeg is not available")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", broken)
    monkeypatch.setattr(device_module, "DEVICE_BATCH", 2)
    assert on_device(jpegs(tmp_path, 6)) == [None] * 6
    assert calls == [2, 1, 1]  # the first batch, each of its files, then no more tries


def test_the_store_decodes_on_the_device_and_the_rest_on_the_host(tmp_path, device_calls):
    clear_image_cache()
    paths = jpegs(tmp_path, 3)
    Image.fromarray(photo(50, 40)).save(tmp_path / "x.png")
    progressive = save_jpeg(tmp_path / "prog.jpg", photo(80, 60), progressive=True)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    array = photo(30, 20)
    inputs = paths + [str(tmp_path / "x.png"), progressive, str(tmp_path / "bad.jpg"), array,
                      paths[0]]
    store = get_store(32)
    result = store.add(inputs, num_workers=2, device=CPU)
    assert device_calls == [3]  # the three baseline JPEGs, once each
    assert [pos for pos, _ in result.errors] == [5]
    assert isinstance(result.errors[0][1], BadImageError)
    assert result.rows[0] == result.rows[-1]
    again = store.add(paths, device=CPU)
    assert device_calls == [3]  # found in the store: nothing decoded again
    assert list(again.rows) == list(result.rows[:3])
    pixels = store.gather(result.rows[result.rows >= 0])
    device_pixels = on_device(paths)
    for got, expected in zip(pixels[:3], device_pixels):
        np.testing.assert_array_equal(got, expected)
    for got, item in zip(pixels[3:6], [str(tmp_path / "x.png"), progressive, array]):
        np.testing.assert_array_equal(got, decode_image(item, 32))  # the host's pixels
    clear_image_cache()


def test_the_estimator_decodes_where_its_decoder_says(monkeypatch, tmp_path, image_files,
                                                      device_calls):
    import wjsentiment.estimator as estimator_module

    clear_image_cache()
    asked = []

    def cpu_as_device(decoder, device):  # stands in for a GPU: the device path on the CPU
        asked.append((decoder, torch.device(device).type))
        return CPU if decoder == "cuda" else decode_device(decoder, device)

    monkeypatch.setattr(estimator_module, "decode_device", cpu_as_device)
    paths, y = image_files  # six JPEG and six PNG files
    clf = SentimentClassifier(weights=None, image_size=32, epochs=1, batch_size=4, verbose=0,
                              calibration=None, device="cpu", decoder="cuda")
    clf.fit(paths, y)
    assert device_calls == [6]  # the JPEG files, in one batch
    assert clf.predict_proba(paths).shape == (12, 2)
    assert device_calls == [6]  # already decoded
    clear_image_cache()
    clf.set_params(decoder="auto").predict_proba(paths)
    assert device_calls == [6]  # "auto" on a CPU model decodes on the host
    assert asked[-1] == ("auto", "cpu") and ("cuda", "cpu") in asked
    clf.save(tmp_path / "m")
    assert SentimentClassifier.load(tmp_path / "m").decoder == "auto"
    clear_image_cache()


def test_files_over_the_pixel_limit_are_left_to_the_host(tmp_path, monkeypatch):
    from wjsentiment.images import decode as decode_module

    (path,) = jpegs(tmp_path, 1)
    monkeypatch.setattr(decode_module, "MAX_IMAGE_PIXELS", 50 * 50)
    assert read_device_jpeg(path) is None
    clear_image_cache()
    result = get_store(16).add([path], device=CPU)
    assert "decompression bomb" in result.errors[0][1].reason  # named by the host path
    clear_image_cache()

"""An image this account may not read is one bad row, not the end of a prediction run (issue 19,
#8). The permission error is simulated (``open`` raises it for one path), so the tests also run
as root, where ``chmod 000`` does not stop reads."""

from __future__ import annotations

import builtins
import csv
import errno
import os

import numpy as np
import pytest
from PIL import Image

from wjsentiment import SentimentClassifier
from wjsentiment.images import clear_image_cache
from wjsentiment.scale import predict_csv, predict_frame


@pytest.fixture(scope="module")
def model():
    X = np.zeros((8, 16, 16, 3), dtype=np.uint8)
    X[1::2] = 230
    return SentimentClassifier(backbone="test_resnet", weights=None, image_size=16, epochs=1,
                               calibration=None, random_state=0, verbose=0).fit(
        X, ["Negative", "Positive"] * 4)


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, value in enumerate((20, 230, 20, 230)):
        path = tmp_path / f"img_{i}.png"
        Image.new("RGB", (16, 16), (value,) * 3).save(path)
        paths.append(str(path))
    clear_image_cache()
    yield paths
    clear_image_cache()


def deny(monkeypatch, locked: str, code: int = errno.EACCES) -> None:
    """Make ``open`` refuse ``locked`` as the system does for a file without read permission."""
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == locked:
            raise PermissionError(code, os.strerror(code), locked)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_predict_frame_gives_an_unreadable_image_an_error_row(model, images, monkeypatch, code):
    deny(monkeypatch, images[1], code)
    table = predict_frame(model, images)
    assert table["path"].tolist() == images
    assert table.loc[1, "error"].startswith("permission denied")
    assert table.loc[1, "label"] == "" and table.filter(like="proba_").loc[1].isna().all()
    others = table.drop(index=1)
    assert (others["error"] == "").all() and others["label"].isin(model.classes_).all()
    assert not others.filter(like="proba_").isna().any().any()


def test_the_image_reads_again_once_its_permissions_change(model, images, monkeypatch):
    deny(monkeypatch, images[1])
    assert predict_frame(model, images[:2])["error"].tolist()[1].startswith("permission denied")
    monkeypatch.undo()
    os.chmod(images[1], 0o644)  # what the fix does: a new inode change time, so a new key
    assert predict_frame(model, images[:2])["error"].tolist() == ["", ""]


def test_predict_csv_writes_the_row_and_resume_goes_on(model, images, monkeypatch, tmp_path):
    out = tmp_path / "predictions.csv"
    deny(monkeypatch, images[1])
    predict_csv(model, images[:3], out, batch_size=2)
    predict_csv(model, images, out, batch_size=2, resume=True)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["path"] for row in rows] == images
    assert rows[1]["error"].startswith("permission denied")
    assert all(row["error"] == "" for i, row in enumerate(rows) if i != 1)

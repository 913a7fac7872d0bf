"""Tests for fetch_image_sentiment (offline metadata; downloads from a local server)."""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest
from datasets_server import LocalImageServer, Reply, emoji_png, make_jpeg

from wjsentiment.datasets import crowdflower, fetch_image_sentiment, stratified_split
from wjsentiment.datasets import download as download_module
from wjsentiment.labels import SENTIMENT_LABELS

SHA256 = "b000ff8fd87e4e1ef94512608c662ec0be5ee4d3ffb2a273409044c51733f761"
COUNTS = {
    "Positive": 8551,
    "Neutral": 4227,
    "Negative": 2119,
    "Highly positive": 433,
    "Highly negative": 283,
}
COLUMNS = ["unit_id", "label", "confidence", "golden", "judgments", "url", "path", "available"]


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    home = tmp_path_factory.mktemp("data_home")
    return fetch_image_sentiment(home, download=False, verbose=0)


def test_shipped_csv_is_byte_identical_to_the_source():
    with gzip.open(crowdflower._METADATA, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    assert digest == SHA256


def test_metadata_rows_labels_and_columns(metadata):
    frame = metadata.frame
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 15613
    assert frame["label"].value_counts().to_dict() == COUNTS
    assert int(frame["golden"].sum()) == 613
    assert frame.loc[frame["golden"], "judgments"].between(27, 60).all()
    assert frame["unit_id"].is_unique
    assert frame["url"].str.startswith("http://").all()
    assert int((frame["confidence"] == 1).sum()) == 6001
    assert metadata.target_names == list(SENTIMENT_LABELS)
    assert "public domain" in metadata.DESCR and "dead" in metadata.DESCR


def test_nothing_on_disk_offline(metadata):
    assert metadata.paths == [] and len(metadata.target) == 0
    assert not metadata.frame["available"].any()
    assert metadata.download_report is None
    assert (
        metadata.frame["path"]
        .iloc[0]
        .endswith(os.path.join("crowdflower", "images", f"{metadata.frame['unit_id'].iloc[0]}.jpg"))
    )


def test_filters(tmp_path):
    confident = fetch_image_sentiment(tmp_path, download=False, min_confidence=0.66)
    assert len(confident.frame) == 13150
    assert (confident.frame["confidence"] >= 0.66).all()
    plain = fetch_image_sentiment(tmp_path, download=False, include_golden=False)
    assert len(plain.frame) == 15000 and not plain.frame["golden"].any()
    assert not (tmp_path / "crowdflower").exists()  # download=False writes nothing


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", None])
def test_bad_min_confidence(tmp_path, bad):
    with pytest.raises(ValueError, match="min_confidence"):
        fetch_image_sentiment(tmp_path, download=False, min_confidence=bad)


def test_reference_test_split_counts(metadata):
    y = metadata.frame["label"].to_numpy()
    train, test = stratified_split(y, (0.8, 0.2), random_state=0)
    labels, counts = np.unique(y[test], return_counts=True)
    assert dict(zip(labels.tolist(), counts.tolist(), strict=True)) == {
        "Positive": 1710,
        "Neutral": 845,
        "Negative": 423,
        "Highly positive": 86,
        "Highly negative": 56,
    }
    assert len(test) == 3120 and len(train) == 15613 - 3120


def test_data_home_from_environment(tmp_path, monkeypatch, metadata):
    monkeypatch.setenv("WJSENTIMENT_DATA", str(tmp_path))
    first = metadata.frame.iloc[0]
    image_dir = tmp_path / "crowdflower" / "images"
    image_dir.mkdir(parents=True)
    (image_dir / f"{first['unit_id']}.jpg").write_bytes(make_jpeg())
    ds = fetch_image_sentiment(download=False)
    assert ds.paths == [str(image_dir / f"{first['unit_id']}.jpg")]
    assert ds.target.tolist() == [first["label"]]
    assert int(ds.frame["available"].sum()) == 1


def test_download_from_local_server(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_BASE", 0.0)
    full = crowdflower._load_metadata()
    small = full.iloc[:6].copy()
    with LocalImageServer() as server:
        urls = [server.add(f"/{i}.jpg", Reply(body=emoji_png(i))) for i in range(4)]
        urls.append(server.add("/dead.jpg", Reply(404)))
        urls.append(server.add("/html.jpg", Reply(body=b"<html></html>", content_type="text/html")))
        small["url"] = urls
        monkeypatch.setattr(crowdflower, "_load_metadata", lambda: small.copy())

        ds = fetch_image_sentiment(tmp_path, n_jobs=2, retries=1, verbose=0)
        report = ds.download_report
        assert report.ok == urls[:4] and set(report.failed) == set(urls[4:])
        assert ds.frame["available"].tolist() == [True] * 4 + [False] * 2
        expected = [
            str(tmp_path.resolve() / "crowdflower" / "images" / f"{u}.jpg")
            for u in small["unit_id"].iloc[:4]
        ]
        assert ds.paths == expected
        assert ds.target.tolist() == small["label"].iloc[:4].tolist()
        assert all(os.path.isfile(p) for p in ds.paths)

        again = fetch_image_sentiment(tmp_path, n_jobs=2, retries=1, verbose=0)
        assert again.download_report.skipped == urls[:4]
        assert all(server.hits[f"/{i}.jpg"] == 1 for i in range(4))

        offline = fetch_image_sentiment(tmp_path, download=False)
        assert offline.paths == expected and offline.download_report is None


def test_the_download_deadline_reaches_the_downloader(tmp_path, monkeypatch):
    full = crowdflower._load_metadata()
    small = full.iloc[:1].copy()
    with LocalImageServer() as server:
        body = make_jpeg(size=96, seed=2)
        small["url"] = [server.add("/slow.jpg", Reply(body=body, content_type="image/jpeg",
                                                      chunk_size=8, chunk_delay=0.1))]
        monkeypatch.setattr(crowdflower, "_load_metadata", lambda: small.copy())
        ds = fetch_image_sentiment(tmp_path, timeout=2.0, deadline=0.5, retries=0, verbose=0)
    (reason,) = ds.download_report.failed.values()
    assert "deadline of 0.5 s" in reason
    assert ds.paths == []

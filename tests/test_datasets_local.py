"""Tests for the offline loaders: load_emoji_sentiment, load_image_folder, load_image_csv."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from wjsentiment.datasets import load_emoji_sentiment, load_image_csv, load_image_folder
from wjsentiment.labels import SENTIMENT_LABELS

PER_STYLE = {
    "Positive": 158,
    "Highly positive": 116,
    "Neutral": 106,
    "Negative": 61,
    "Highly negative": 20,
}


# --- emoji ---------------------------------------------------------------------------


def test_emoji_both_styles():
    ds = load_emoji_sentiment()
    assert len(ds.paths) == len(ds.target) == len(ds.groups) == 922
    assert ds.target_names == list(SENTIMENT_LABELS)
    assert Counter(ds.frame["style"]) == {"twitter": 461, "google": 461}
    for style in ("twitter", "google"):
        assert Counter(ds.target[(ds.frame["style"] == style).to_numpy()]) == PER_STYLE
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in ds.paths)
    assert "CC-BY 4.0" in ds.DESCR and "Apache" in ds.DESCR and "e0144296" in ds.DESCR


def test_emoji_groups_pair_the_two_styles():
    ds = load_emoji_sentiment()
    frame = ds.frame.assign(group=ds.groups, target=ds.target)
    by_group = frame.groupby("group")
    assert len(by_group) == 461
    assert (by_group["style"].apply(sorted).map(tuple) == ("google", "twitter")).all()
    assert (by_group["target"].nunique() == 1).all()


def test_emoji_images_open():
    paths = load_emoji_sentiment().paths
    for p in paths[:: len(paths) // 20]:
        with Image.open(p) as im:
            assert im.size == (64, 64)


def test_emoji_one_style_and_return_X_y():
    paths, y = load_emoji_sentiment(styles=("google",), return_X_y=True)
    assert len(paths) == 461 and Counter(y) == PER_STYLE
    assert all(f"{os.sep}google{os.sep}" in p for p in paths)
    assert isinstance(y, np.ndarray)


@pytest.mark.parametrize("styles", [("apple",), (), ["twitter", "noto"]])
def test_emoji_bad_style(styles):
    with pytest.raises(ValueError, match="style"):
        load_emoji_sentiment(styles=styles)


# --- folders -------------------------------------------------------------------------


def _png(path, color=(255, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format="PNG")


def test_folder_with_sentiment_names(tmp_path):
    _png(tmp_path / "highly_positive" / "a.png")
    _png(tmp_path / "negative" / "b.PNG")
    _png(tmp_path / "negative" / "sub" / "c.jpeg.png")
    _png(tmp_path / "Neutral" / "d.png")
    (tmp_path / "Neutral" / "notes.txt").write_text("ignored")
    (tmp_path / "Neutral" / ".hidden.png").write_text("ignored")
    ds = load_image_folder(tmp_path)
    assert ds.target_names == ["Negative", "Neutral", "Highly positive"]
    assert Counter(ds.target) == {"Negative": 2, "Neutral": 1, "Highly positive": 1}
    assert len(ds.paths) == 4 and all(os.path.isabs(p) for p in ds.paths)
    assert list(ds.frame.columns) == ["path", "label"]
    assert ds.frame["label"].tolist() == ds.target.tolist()


def test_folder_with_other_names_sorted(tmp_path):
    for name in ["dogs", "cats", "birds"]:
        _png(tmp_path / name / "x.png")
    ds = load_image_folder(tmp_path)
    assert ds.target_names == ["birds", "cats", "dogs"]
    assert ds.target.tolist() == ["birds", "cats", "dogs"]
    assert "3 images in 3 classes" in ds.DESCR


def test_folder_non_image_named(tmp_path):
    _png(tmp_path / "Positive" / "ok.png")
    (tmp_path / "Positive" / "broken.jpg").write_text("this is not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        load_image_folder(tmp_path)


def test_folder_empty_or_flat(tmp_path):
    with pytest.raises(ValueError, match="sub-folder per class"):
        load_image_folder(tmp_path)
    _png(tmp_path / "loose.png")
    with pytest.raises(ValueError, match="1 image"):
        load_image_folder(tmp_path)
    (tmp_path / "Positive").mkdir()
    with pytest.raises(ValueError, match="Positive"):
        load_image_folder(tmp_path)


def test_folder_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")


def test_folder_duplicate_sentiment_names(tmp_path):
    _png(tmp_path / "positive" / "a.png")
    _png(tmp_path / "Positive" / "b.png")
    with pytest.raises(ValueError, match="merge"):
        load_image_folder(tmp_path)


# --- csv -----------------------------------------------------------------------------


def test_csv_relative_and_absolute_paths(tmp_path):
    _png(tmp_path / "imgs" / "a.png")
    _png(tmp_path / "elsewhere" / "b.png")
    absolute = tmp_path / "elsewhere" / "b.png"
    (tmp_path / "labels.csv").write_text(
        f"file,sentiment,extra\nimgs/a.png,highly negative,1\n{absolute},POSITIVE,2\n"
    )
    ds = load_image_csv(tmp_path / "labels.csv", "file", "sentiment")
    assert ds.paths == [str(tmp_path.resolve() / "imgs" / "a.png"), str(absolute)]
    assert ds.target.tolist() == ["Highly negative", "Positive"]
    assert ds.target_names == ["Highly negative", "Positive"]
    assert ds.frame["extra"].tolist() == [1, 2]


def test_csv_root_and_plain_labels(tmp_path):
    _png(tmp_path / "pics" / "a.png")
    _png(tmp_path / "pics" / "b.png")
    csv_dir = tmp_path / "meta"
    csv_dir.mkdir()
    (csv_dir / "l.csv").write_text("img,kind\na.png,zebra\nb.png,ant\n")
    ds = load_image_csv(csv_dir / "l.csv", "img", "kind", root=tmp_path / "pics")
    assert ds.target_names == ["ant", "zebra"]
    assert ds.target.tolist() == ["zebra", "ant"]


def test_csv_missing_files_named_with_count(tmp_path):
    _png(tmp_path / "a.png")
    rows = "\n".join(f"gone{i}.png,Neutral" for i in range(7))
    (tmp_path / "l.csv").write_text(f"p,y\na.png,Neutral\n{rows}\n")
    with pytest.raises(FileNotFoundError, match=r"7 image file\(s\) not found.*gone0\.png") as e:
        load_image_csv(tmp_path / "l.csv", "p", "y")
    assert "and 2 more" in str(e.value)


def test_csv_non_image_named(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "fake.png").write_bytes(b"GIF89a but not really")
    (tmp_path / "l.csv").write_text("p,y\na.png,Neutral\nfake.png,Negative\n")
    with pytest.raises(ValueError, match="fake.png"):
        load_image_csv(tmp_path / "l.csv", "p", "y")


def test_csv_bad_columns_and_blank_rows(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("p,y\na.png,Neutral\n,Negative\n")
    with pytest.raises(ValueError, match="label_col='label'"):
        load_image_csv(tmp_path / "l.csv", "p", "label")
    with pytest.raises(ValueError, match="line 3"):
        load_image_csv(tmp_path / "l.csv", "p", "y")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_image_csv(tmp_path / "nope.csv", "p", "y")


# --- the folder walk ------------------------------------------------------------------


def test_walk_is_sorted_skips_hidden_and_walks_each_folder_once(tmp_path):
    from wjsentiment.datasets import SkippedEntry, iter_image_files

    for name in ["b/2.png", "b/1.JPG", "a.png", "c/.hidden/x.png", ".d/y.png", "c/3.gif"]:
        _png(tmp_path / name)
    (tmp_path / "c" / "notes.txt").write_text("not an image")
    (tmp_path / "link").symlink_to(tmp_path / "b")  # the same folder again
    (tmp_path / "c" / "up").symlink_to(tmp_path)  # a loop
    found = list(iter_image_files(tmp_path))
    assert found[:4] == [str(tmp_path / p) for p in ["a.png", "b/1.JPG", "b/2.png", "c/3.gif"]]
    assert [(type(s), s.path) for s in found[4:]] == [
        (SkippedEntry, str(tmp_path / "c" / "up")), (SkippedEntry, str(tmp_path / "link"))]
    assert all("walked already" in s.reason for s in found[4:])


def test_walk_goes_on_past_an_unreadable_folder_and_lists_lazily(tmp_path, monkeypatch):
    from wjsentiment.datasets import SkippedEntry, iter_image_files

    for name in ["a/1.png", "b/2.png", "c/3.png"]:
        _png(tmp_path / name)
    listed = []
    scandir = os.scandir

    def watched(path):
        listed.append(os.path.basename(path))
        if os.path.basename(path) == "b":  # as a folder without read permission
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", watched)
    walk = iter_image_files(tmp_path)
    assert next(walk) == str(tmp_path / "a" / "1.png")
    assert listed == [tmp_path.name, "a"]  # nothing further listed yet
    assert list(walk) == [SkippedEntry(str(tmp_path / "b"),
                                       "cannot list this folder: Permission denied"),
                          str(tmp_path / "c" / "3.png")]


def test_folder_loader_leaves_out_a_link_loop_with_a_warning(tmp_path):
    _png(tmp_path / "Positive" / "a.png")
    _png(tmp_path / "Negative" / "b.png")
    (tmp_path / "Negative" / "again").symlink_to(tmp_path / "Negative")
    with pytest.warns(UserWarning, match=r"Left out 1 folder\(s\).*again"):
        ds = load_image_folder(tmp_path)
    assert sorted(os.path.basename(p) for p in ds.paths) == ["a.png", "b.png"]

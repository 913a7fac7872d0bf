"""wjsentiment.exceptions: one base for the package's errors, named warnings (issue 18)."""

from __future__ import annotations

import pytest

from wjsentiment import exceptions


@pytest.mark.parametrize("name, base, old_home", [
    ("BadImageError", ValueError, "wjsentiment.images.decode"),
    ("ModelFileError", ValueError, "wjsentiment.persistence"),
    ("TrainingDivergedError", FloatingPointError, "wjsentiment.training"),
    ("WeightsUnavailableError", RuntimeError, "wjsentiment.models"),
    ("InputError", ValueError, None),
])
def test_errors_share_a_base_and_keep_theirs(name, base, old_home):
    import importlib

    error = getattr(exceptions, name)
    assert issubclass(error, exceptions.WjsentimentError) and issubclass(error, base)
    if old_home is not None:  # code that imported it from where it lived still works
        assert getattr(importlib.import_module(old_home), name) is error


def test_errors_keep_their_attributes_and_messages():
    bad = exceptions.BadImageError("'a.png'", "it is empty", "Fix it.")
    assert (bad.source, bad.reason, str(bad)) == ("'a.png'", "it is empty",
                                                  "Cannot use image 'a.png': it is empty. Fix it.")
    diverged = exceptions.TrainingDivergedError(3, 2, 5, " (loss nan)")
    assert (diverged.epoch, diverged.step) == (3, 2)
    assert str(diverged).startswith("Training diverged: the loss became non-finite at epoch 3, "
                                    "step 2 of 5 (loss nan).")
    assert exceptions.ModelFileError("m/config.json", "it is empty").path == "m/config.json"


@pytest.mark.parametrize("name", ["CalibrationWarning", "SkippedImagesWarning",
                                  "DivergenceWarning", "CudaGraphWarning", "DownloadWarning",
                                  "FeatureCacheWarning"])
def test_warnings_can_be_filtered_by_name_or_by_the_packages_base(name):
    import warnings

    category = getattr(exceptions, name)
    assert issubclass(category, exceptions.WjsentimentWarning)
    assert issubclass(category, UserWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", exceptions.WjsentimentWarning)
        exceptions.warn("hidden", category)
        warnings.simplefilter("error", category)
        with pytest.raises(category):
            exceptions.warn("raised", category)
    assert caught == []


def test_runtime_warnings_stay_runtime_warnings():
    """Code that filtered the loop's RuntimeWarnings keeps filtering them."""
    for name in ("DivergenceWarning", "CudaGraphWarning", "FeatureCacheWarning"):
        assert issubclass(getattr(exceptions, name), RuntimeWarning)

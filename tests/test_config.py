"""One configuration object: set_config / get_config / config_context, the environment variables
as defaults, and the old setters as thin wrappers over it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from wjsentiment import config_context, get_config, set_config
from wjsentiment.exceptions import InputError
from wjsentiment.images import clear_image_cache, get_store
from wjsentiment.models import feature_cache_dir


@pytest.fixture
def restored():
    saved = get_config()
    yield
    set_config(**saved)
    clear_image_cache()


def _in_a_fresh_process(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WJSENTIMENT_")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                          capture_output=True, text=True)


def test_set_and_get(restored, tmp_path):
    set_config(cache_memory_bytes=1234, cache_dir=tmp_path, torch_threads=1, decode_threads=3)
    settings = get_config()
    assert settings["cache_memory_bytes"] == 1234 and settings["cache_dir"] == str(tmp_path)
    assert settings["torch_threads"] == 1 and settings["decode_threads"] == 3
    settings["torch_threads"] = 99  # a copy: changes nothing
    assert get_config()["torch_threads"] == 1


def test_context_restores_the_settings_even_after_an_error(restored):
    before = get_config()
    with pytest.raises(RuntimeError):
        with config_context(feature_cache_dir="/somewhere", torch_threads=2):
            assert get_config()["feature_cache_dir"] == "/somewhere"
            assert feature_cache_dir() is not None and str(feature_cache_dir()) == "/somewhere"
            raise RuntimeError
    assert get_config() == before


@pytest.mark.parametrize("settings, match", [
    ({"cache_memory_bytes": -1}, "cache_memory_bytes must be an int >= 0"),
    ({"cache_disk_bytes": 1.5}, "cache_disk_bytes must be an int"),
    ({"cache_dir": 3}, "cache_dir must be a folder path or None"),
    ({"torch_threads": 0, "decode_threads": 2}, "torch_threads must be None"),
    ({"decode_threads": "many"}, "decode_threads must be 'auto'"),
])
def test_bad_values_are_refused_and_change_nothing(restored, settings, match):
    before = get_config()
    with pytest.raises(InputError, match=match):
        set_config(**{"torch_threads": 1, **settings})
    with pytest.raises(InputError, match=match), config_context(**settings):
        pass
    assert get_config() == before


def test_unknown_settings_are_a_type_error():
    with pytest.raises(TypeError):
        set_config(cache_budget=1)


def test_the_environment_gives_the_defaults(tmp_path):
    code = "from wjsentiment import get_config; print(sorted(get_config().items()))"
    out = _in_a_fresh_process(code, WJSENTIMENT_CACHE_MEMORY="1e6", WJSENTIMENT_CACHE_DISK="2e6",
                              WJSENTIMENT_CACHE_DIR=str(tmp_path / "spill"),
                              WJSENTIMENT_FEATURE_CACHE_DIR=str(tmp_path / "features"))
    assert out.returncode == 0, out.stderr
    settings = dict(eval(out.stdout))  # noqa: S307 - our own repr of str/int/None values
    assert settings["cache_memory_bytes"] == 1_000_000
    assert settings["cache_disk_bytes"] == 2_000_000
    assert settings["cache_dir"] == str(tmp_path / "spill")
    assert settings["feature_cache_dir"] == str(tmp_path / "features")
    assert settings["torch_threads"] is None and settings["decode_threads"] == "auto"


def test_a_bad_environment_value_names_the_variable_when_first_used():
    code = ("import wjsentiment\n"  # importing works: the variables are read when first needed
            "wjsentiment.get_config()")
    out = _in_a_fresh_process(code, WJSENTIMENT_CACHE_MEMORY="lots")
    assert out.returncode != 0 and "WJSENTIMENT_CACHE_MEMORY='lots'" in out.stderr
    assert "wjsentiment.exceptions.InputError" in out.stderr


def test_old_setters_are_wrappers_over_set_config(restored, tmp_path):
    set_config(cache_memory_bytes=4096, cache_dir=tmp_path, cache_disk_bytes=8192)  # 0.1.0's
    assert get_config()["cache_memory_bytes"] == 4096  # set_cache_budget is gone: set_config
    assert get_config()["cache_disk_bytes"] == 8192
    assert get_config()["cache_dir"] == str(tmp_path)
    set_config(feature_cache_dir=tmp_path / "features")  # (set_feature_cache_dir is gone)
    assert get_config()["feature_cache_dir"] == str(tmp_path / "features")
    assert str(feature_cache_dir()) == str(tmp_path / "features")
    set_config(feature_cache_dir=None)
    assert get_config()["feature_cache_dir"] is None and feature_cache_dir() is None


def test_lowering_the_memory_budget_gives_back_at_once(restored, tmp_path):
    clear_image_cache()
    set_config(cache_memory_bytes=2**30, cache_disk_bytes=0, cache_dir=tmp_path)
    store = get_store(16)
    store.add(list(np.zeros((300, 16, 16, 3), dtype=np.uint8)
                   + np.arange(300, dtype=np.uint8)[:, None, None, None]))
    assert store.ram_bytes > 0
    set_config(cache_memory_bytes=0)
    assert store.ram_bytes == 0


def test_context_refuses_unknown_settings():
    with pytest.raises(TypeError, match="unknown settings \\['cache_budget'\\]"):
        with config_context(cache_budget=1):
            pass

"""Saving and loading, in one place: safetensors for tensors, JSON for everything else.

Nothing is unpickled and no code runs on load. What a saved model's files hold is declared
once, as JSON schemas, one per format version (:mod:`.schemas`); files of an older version
are upgraded by explicit migrations, so models saved by earlier releases keep loading.
Loading checks everything it reads and reports any damage as one
:class:`~wjsentiment.exceptions.ModelFileError` naming the file (:mod:`.model_files`).
Saving writes into a temporary folder beside the target, syncs it to disk and swaps it into
place atomically; it refuses to replace anything but a saved model (:mod:`.files`).

This package reads and writes the estimators' states; it never imports the estimators,
which build themselves from what it returns.
"""

from ..exceptions import ModelFileError
from .files import atomic_file, atomic_folder, lock_folder, open_new_file
from .model_files import (
    CONFIG_FILE,
    ENSEMBLE_FILE,
    WEIGHTS_FILE,
    decode_classes,
    encode_classes,
    json_default,
    load_classifier,
    load_ensemble,
    save_classifier,
    save_ensemble,
)
from .schemas import FORMAT_VERSION

__all__ = ["CONFIG_FILE", "ENSEMBLE_FILE", "FORMAT_VERSION", "WEIGHTS_FILE", "ModelFileError",
           "atomic_file", "atomic_folder", "decode_classes", "encode_classes", "json_default",
           "load_classifier", "load_ensemble", "lock_folder", "open_new_file",
           "save_classifier", "save_ensemble"]

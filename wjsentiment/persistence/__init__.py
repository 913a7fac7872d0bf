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
from .files import TEMP_MARK, atomic_file, atomic_folder, remove_stale_temporaries
from .model_files import (
    CONFIG_FILE,
    ENSEMBLE_FILE,
    WEIGHTS_FILE,
    SavedEnsemble,
    SavedModel,
    check_tensor_shapes,
    decode_classes,
    encode_classes,
    is_saved_model,
    json_default,
    load_classifier,
    load_ensemble,
    model_file_errors,
    read_config,
    read_tensors,
    save_classifier,
    save_ensemble,
)
from .schemas import (
    CLASSES_SCHEMA,
    CLASSIFIER,
    CLASSIFIER_SCHEMA,
    ENSEMBLE,
    ENSEMBLE_SCHEMA,
    FORMAT_VERSION,
    MIGRATIONS,
    SCHEMAS,
    schema_problem,
)

__all__ = ["CLASSES_SCHEMA", "CLASSIFIER", "CLASSIFIER_SCHEMA", "CONFIG_FILE", "ENSEMBLE",
           "ENSEMBLE_FILE", "ENSEMBLE_SCHEMA", "FORMAT_VERSION", "MIGRATIONS", "SCHEMAS",
           "TEMP_MARK", "WEIGHTS_FILE", "ModelFileError", "SavedEnsemble", "SavedModel",
           "atomic_file", "atomic_folder", "check_tensor_shapes", "decode_classes",
           "encode_classes", "is_saved_model", "json_default", "load_classifier",
           "load_ensemble", "model_file_errors", "read_config", "read_tensors",
           "remove_stale_temporaries", "save_classifier", "save_ensemble", "schema_problem"]

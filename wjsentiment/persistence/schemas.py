"""What a saved model's JSON files hold, version by version, as JSON Schemas.

The schemas are data: ``saved_model.schema.json`` beside this module holds one per kind of
model and format version (``$defs/SentimentClassifier-2``, ...), each version stating what it
adds to the one before. A file's ``format_version`` decides how it is read: it is checked
against the schema of its own version, then upgraded one version at a time by
:data:`MIGRATIONS` to :data:`FORMAT_VERSION`, the only one the estimators build from. In these
schemas a JSON ``number`` is a finite one: ``NaN`` and ``Infinity`` are refused wherever a
number is expected.

Format history:

- 1 (wjsentiment 0.1.0): ``config.json`` without ``calibration``; ``ensemble.json`` without
  ``class_prior`` or ``params.decision`` (development builds after 0.1.0 wrote both into
  version-1 ensembles, and they load as they are).
- 2: ``config.json`` has ``calibration`` (temperature, logit adjustment, class prior);
  ``ensemble.json`` has ``class_prior`` and ``params.decision``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

__all__ = ["CLASSIFIER", "ENSEMBLE", "FORMAT_VERSION", "MIGRATIONS", "json_kind", "schema",
           "schema_problem"]

#: The format this wjsentiment writes, and the newest it reads.
FORMAT_VERSION = 2
#: The kinds of saved model: the ``"estimator"`` of their JSON file.
CLASSIFIER, ENSEMBLE = "SentimentClassifier", "SentimentEnsemble"


@functools.cache
def _schemas() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("saved_model.schema.json").read_text("utf-8")
    return json.loads(text)


def schema(kind: str, version: int) -> dict[str, Any]:
    """The JSON Schema of a ``kind`` of model's file in format ``version``.

    Examples
    --------
    >>> schema_problem({"format_version": 2}, schema(CLASSIFIER, 2))
    "the key 'params' is missing"
    """
    return {**_schemas(), "$ref": f"#/$defs/{kind}-{version}"}


def _classifier_1_to_2(config: dict[str, Any]) -> dict[str, Any]:
    """Format 1 had no calibration: temperature 1, no adjustment and a uniform prior (under
    which the "balanced" decision is argmax) predict as 0.1.0 did."""
    n = len(config["classes"]["values"])
    config["params"].setdefault("calibration", None)
    config["calibration"] = {"temperature": 1.0, "logit_adjustment": [0.0] * n,
                             "class_prior": [1.0 / n] * n}
    return config


def _ensemble_1_to_2(config: dict[str, Any]) -> dict[str, Any]:
    """0.1.0's ensembles had no decision rule: "auto" with a uniform prior is argmax."""
    n = len(config["classes"]["values"])
    config["params"].setdefault("decision", "auto")
    config.setdefault("class_prior", [1.0 / n] * n)
    return config


#: (kind, version) -> the function that turns a checked config of that version into the
#: next version's.
MIGRATIONS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    (CLASSIFIER, 1): _classifier_1_to_2,
    (ENSEMBLE, 1): _ensemble_1_to_2,
}


# ------------------------------------------------------------------ checking, in words
@functools.cache
def _validator() -> type:
    """jsonschema's Draft 2020-12 validator, where a ``number`` is a finite one (imported
    on first use: the command line starts without it)."""
    from jsonschema import Draft202012Validator, validators

    types = Draft202012Validator.TYPE_CHECKER

    def finite_number(checker: Any, instance: Any) -> bool:
        return types.is_type(instance, "number") and math.isfinite(instance)

    return validators.extend(Draft202012Validator,
                             type_checker=types.redefine("number", finite_number))


def schema_problem(value: Any, schema: dict[str, Any], where: str = "") -> str | None:
    """The first way ``value`` (parsed JSON) does not fit the JSON ``schema``, in words, or
    None if it fits.

    Examples
    --------
    >>> schema = {"type": "object", "required": ["spec"], "properties": {
    ...     "spec": {"type": "object", "properties": {"n_classes": {"type": "integer"}}}}}
    >>> schema_problem({"spec": {"n_classes": "2"}}, schema)
    "spec.n_classes must be an integer, got a string ('2')"
    >>> schema_problem({}, schema)
    "the key 'spec' is missing"
    >>> schema_problem({"spec": {"n_classes": 2}}, schema) is None
    True
    """
    error = next(iter(_validator()(schema).iter_errors(value)), None)
    if error is None:
        return None
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return f"the key {_path(where, [*error.absolute_path, missing])!r} is missing"
    name = _path(where, error.absolute_path) or "the config"
    return f"{name} must be {_describe(error.schema)}, got {_shown(error.instance)}"


def _path(where: str, parts: Any) -> str:
    text = where
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


#: JSON types named in other words than a noun: (one, several).
_WORDS = {"boolean": ("true or false", "booleans"), "null": ("null", "nulls")}


def _describe(schema: dict[str, Any], plural: bool = False) -> str:
    """What ``schema`` allows, e.g. "a list of positive numbers" or "null or a string"."""
    if "anyOf" in schema:
        return " or ".join(_describe(s, plural) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind in _WORDS:
        return _WORDS[kind][plural]
    noun = {"array": "list", None: "value"}.get(kind, kind)
    if "exclusiveMinimum" in schema or "minimum" in schema:
        noun = ("positive " if "exclusiveMinimum" in schema else "non-negative ") + noun
    noun += "s" if plural else ""
    if kind == "array" and "type" in schema.get("items", {}):
        noun += " of " + _describe(schema["items"], plural=True)
    return noun if plural else ("an " if noun[0] in "aeiou" else "a ") + noun


def json_kind(value: Any) -> str:
    """The JSON type of a parsed value, in words: "a string", "true or false", "null"..."""
    kinds = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
             (dict, "object"), (list, "array"), (type(None), "null"))
    return _describe({"type": next((name for t, name in kinds if isinstance(value, t)), None)})


def _shown(value: Any) -> str:
    """A refused value, with its JSON type: "a string ('2')", "true or false (true)"."""
    if isinstance(value, str):
        return f"a string ({value[:37]!r})"
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # NaN, Infinity or -Infinity
    try:
        text = json.dumps(value)
    except (RecursionError, ValueError, TypeError):
        text = "..."
    return f"{json_kind(value)} ({text if len(text) <= 40 else text[:37] + '...'})"

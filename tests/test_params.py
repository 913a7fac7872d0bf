"""Each parameter is declared once (wjsentiment.params): the estimators' signatures, their
docstrings, their _parameter_constraints and the command line must agree with the declarations."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys

import pytest
from sklearn.utils._param_validation import InvalidParameterError

from wjsentiment import SentimentClassifier, SentimentEnsemble, cli
from wjsentiment.params import CLASSIFIER_PARAMS, ENSEMBLE_PARAMS, describe

ESTIMATORS = [(SentimentClassifier, CLASSIFIER_PARAMS), (SentimentEnsemble, ENSEMBLE_PARAMS)]
IDS = ["SentimentClassifier", "SentimentEnsemble"]


def docstring_parameters(cls: type) -> dict[str, str]:
    """Name -> the text after ``default=`` in the numpydoc Parameters section of ``cls``."""
    doc = inspect.getdoc(cls)
    section = re.search(r"^Parameters\n-+\n(.*?)(?:^\w[\w ]*\n-+\n|\Z)", doc, re.S | re.M)
    assert section, f"{cls.__name__} has no Parameters section"
    found = {}
    for name, spec in re.findall(r"^(\w+) : (.+)$", section.group(1), re.M):
        default = re.search(r"default=(.+)$", spec)
        found[name] = default.group(1) if default else None
    return found


@pytest.mark.parametrize("cls, params", ESTIMATORS, ids=IDS)
def test_signature_defaults_are_the_declared_ones(cls, params):
    signature = inspect.signature(cls.__init__).parameters
    assert list(signature)[1:] == [p.name for p in params]
    for p in params:
        assert signature[p.name].default == p.default, p.name


@pytest.mark.parametrize("cls, params", ESTIMATORS, ids=IDS)
def test_constraints_come_from_the_declarations(cls, params):
    assert cls._parameter_constraints == {p.name: p.constraints for p in params}


@pytest.mark.parametrize("cls, params", ESTIMATORS, ids=IDS)
def test_docstring_documents_every_parameter_with_its_default(cls, params):
    documented = docstring_parameters(cls)
    assert list(documented) == [p.name for p in params]
    for p in params:
        assert documented[p.name] is not None, f"{p.name}: no default= in the docstring"
        assert ast.literal_eval(documented[p.name]) == p.default, p.name


def test_every_declared_default_is_valid():
    SentimentClassifier()._validate_params()
    SentimentEnsemble()._validate_params()


def fit_options() -> dict[str, object]:
    """The fit subcommand's actions that set estimator parameters, by destination."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    fit = sub.choices["fit"]
    names = {p.name for p in CLASSIFIER_PARAMS} - {"verbose"}  # -q/-v of every command
    return {a.dest: a for a in fit._actions if a.dest in names}  # noqa: SLF001


def test_the_command_line_exposes_the_declared_parameters_with_their_defaults():
    exposed = [p for p in CLASSIFIER_PARAMS if p.cli is not None]
    assert set(fit_options()) == {p.name for p in exposed}
    args = cli.parse_args(["fit", "--folder", "x", "--out", "y"])
    for p in exposed:
        assert getattr(args, p.name) == p.default, p.name


def test_the_command_line_choices_are_the_declared_ones():
    options = fit_options()
    for p in CLASSIFIER_PARAMS:
        if p.cli is not None and p.choices is not None:
            texts = ["none" if c is None else str(c) for c in p.choices]
            assert options[p.name].choices == texts, p.name


def test_every_command_line_choice_reaches_the_estimator_as_a_valid_value():
    for p in CLASSIFIER_PARAMS:
        if p.cli is None or p.choices is None:
            continue
        for choice in p.choices:
            text = "none" if choice is None else str(choice)
            args = cli.parse_args(["fit", "--folder", "x", "--out", "y", p.option, text])
            assert getattr(args, p.name) == choice
            SentimentClassifier(**{p.name: choice}).get_params()  # accepted by the constraints
            assert p.accepts(choice)


def test_a_bad_value_gets_scikit_learns_error_and_says_what_is_allowed():
    with pytest.raises(InvalidParameterError) as info:
        SentimentClassifier(head="transformer").fit([[0]], [0])
    message = str(info.value)
    assert message.startswith("The 'head' parameter of SentimentClassifier must be")
    assert "head must be one of ['linear', 'mlp']" in message


def test_describe_names_non_finite_numbers_and_wrong_types():
    by_name = {p.name: p for p in CLASSIFIER_PARAMS}
    assert describe(by_name["weight_decay"], float("inf")) == "a finite number"
    assert describe(by_name["epochs"], "ten") == "an int"
    assert describe(by_name["epochs"]) == "in [1, inf)"
    assert describe(by_name["class_weight"]) == "None, 'balanced' or a dict"


def test_fit_help_imports_neither_torch_nor_scikit_learn():
    """The options come from the declarations without scikit-learn's constraint objects."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "wjsentiment", "fit",
                          "--help"], capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
    assert "(default: resnet18)" in out.stdout
    assert "torch" not in imported and "sklearn" not in imported

"""score a saved model on labelled images

Evaluate a saved model on labelled images: prints the decision rule of its labels,
accuracy, macro-F1 and a per-class report; with --out also saves OUT/report.json,
OUT/confusion_matrix.png and OUT/reliability.png.

examples:
  wjsentiment evaluate runs/photos/model --folder test_photos/ --out runs/eval
  wjsentiment evaluate runs/photos/model --csv test.csv --label-col sentiment
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import arguments as a
from . import labelled
from .checks import saved_model, writable_folder


def register(sub: Any) -> None:
    p = a.add_command(sub, "evaluate", __doc__, run)
    a.add_model_arguments(p)
    labelled.add_data_source(p, crowdflower=False)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for report.json, confusion_matrix.png and reliability.png")
    a.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    labelled.check_source_options(args)
    model_dir = saved_model(args.model)
    labelled.check_source_path(args)
    out = writable_folder(args.out) if args.out is not None else None
    from ..evaluation import report_from_predictions
    from ..inference import rule_sentence
    from ..persistence import atomic_file, json_default
    from ..plotting import plot_confusion_matrix, plot_reliability_diagram, save_figure

    model = a.load_model(model_dir, args.device)
    data = labelled.load_labelled(args)
    proba = model.predict_proba(data.paths)
    report = report_from_predictions(data.target, proba, model.classes_,
                                     y_pred=model.predict_from_proba(proba),
                                     decision_rule=model.decision_rule_)
    print(rule_sentence(model.decision_rule_))
    print(report)
    if out is not None:
        with atomic_file(out / "report.json", "w", encoding="utf-8") as fh:
            json.dump(report.to_dict(), fh, indent=2, default=json_default)
        save_figure(plot_confusion_matrix(report), out / "confusion_matrix.png")
        save_figure(plot_reliability_diagram(data.target, proba, model.classes_),
                    out / "reliability.png")
        a.info(args, f"Saved {out / 'report.json'}, {out / 'confusion_matrix.png'} and "
                     f"{out / 'reliability.png'}")
    return 0

"""download the CrowdFlower image sentiment photos

Download the CrowdFlower 'Image Sentiment Polarity' photos (15,613 Flickr images;
the labels ship with wjsentiment). Only missing images are fetched, so running it
again resumes. Many Flickr links are dead: the summary says how many images you have.

examples:
  wjsentiment download --data-home data --min-confidence 0.66
  wjsentiment download --data-home data --no-download   # count what is there
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from . import arguments as a
from .checks import CommandError


def register(sub: Any) -> None:
    p = a.add_command(sub, "download", __doc__, run)
    p.add_argument("--data-home", metavar="DIR", default=None,
                   help="where to store the data (default: $WJSENTIMENT_DATA or "
                        "~/wjsentiment_data)")
    p.add_argument("--min-confidence", type=a.fraction, default=0.0, metavar="P",
                   help="only images whose label confidence is >= P (0 to 1)")
    p.add_argument("--no-golden", dest="include_golden", action="store_false",
                   help="leave out the 613 'golden' test-question rows")
    p.add_argument("--n-jobs", type=a.positive_int, default=16, metavar="N",
                   help="downloads in flight at once")
    p.add_argument("--timeout", type=a.positive_float, default=10.0, metavar="SECONDS",
                   help="socket timeout per request")
    p.add_argument("--deadline", type=a.positive_float, default=None, metavar="SECONDS",
                   help="longest time for one file, retries included (default: 10 x "
                        "--timeout); a slower file is recorded as failed")
    p.add_argument("--retries", type=a.non_negative_int, default=3, metavar="N",
                   help="extra attempts for transient failures")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fetch nothing; only report which images are already on disk")
    a.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    from ..datasets import fetch_image_sentiment

    data = fetch_image_sentiment(
        args.data_home, download=args.download, min_confidence=args.min_confidence,
        include_golden=args.include_golden, n_jobs=args.n_jobs, timeout=args.timeout,
        deadline=args.deadline, retries=args.retries, verbose=min(args.verbose, 1))
    frame, report = data.frame, data.download_report
    folder = os.path.dirname(frame["path"].iloc[0]) if len(frame) else "(nothing selected)"
    if report is not None:
        a.info(args, f"Download: {report.summary()}.")
        if report.n_failed and args.verbose > 1:
            a.info(args, repr(report))
    print(f"{len(data.paths)} of {len(frame)} selected images are on disk in {folder}")
    if report is not None and not data.paths and len(frame) > 0:
        first = next(iter(report.failed.items()), None)
        reason = f" (first failure: {first[0]}: {first[1]})" if first else ""
        raise CommandError(f"no image could be downloaded{reason}; check the network.")
    return 0

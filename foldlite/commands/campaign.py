"""``foldlite campaign``: the training campaign's commands (``foldlite.train.campaign``).

    foldlite campaign pack --job N -o .carry      # here: the data job N carries
    foldlite campaign job --packs .carry/*.fldpack -o OUT --budget 540   # on the accelerator
    foldlite campaign adopt OUT                   # here: OUT becomes campaign/state
    foldlite campaign status                      # the jobs so far, as a table
    foldlite campaign compare OUT/weights.npz [--ship]   # against the shipped weights (test)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from foldlite import fileio
from foldlite.model.weights_io import default_weights_path
from foldlite.train import campaign


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--campaign", default=str(campaign.REPO / "campaign"), metavar="DIR",
                        help="the campaign folder (default: campaign/ of the repository)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("pack", help="write the training shard and validation pack of a job")
    p.add_argument("--job", type=int, default=None,
                   help="job number (default: the next job of the campaign)")
    p.add_argument("-o", "--out", required=True, help="folder for the packs (e.g. .carry)")
    p = sub.add_parser("job", help="run one job: continue the state, train, save, evaluate")
    p.add_argument("--packs", nargs="+", required=True, help="the carried .fldpack files")
    p.add_argument("-o", "--out", required=True, help="output folder (state, weights, report)")
    p.add_argument("--budget", type=float, default=540.0, metavar="SECONDS",
                   help="wall time of the whole job, set-up and evaluation included (540)")
    p.add_argument("--started", type=float, default=None, metavar="EPOCH",
                   help="when the job started (seconds since the epoch; default: now), so the "
                        "budget counts the time spent before this command")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config value for this job (e.g. data.batch_size=16)")
    p.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("adopt", help="make a job's output folder the campaign's state")
    p.add_argument("job_out", help="the job's output folder")
    sub.add_parser("status", help="print the table of jobs")
    p = sub.add_parser("compare", help="score a job's weights against the shipped ones on the "
                                       "test chains (the model card's protocol)")
    p.add_argument("weights", help="the candidate weights (a job's weights.npz)")
    p.add_argument("--current", default=None,
                   help="the weights to beat (default: the shipped weights)")
    p.add_argument("--ship", action="store_true",
                   help="copy the candidate over the shipped weights when it is better on "
                        "lDDT-CA and TM, with and without the profile")
    p.add_argument("--workers", type=int, default=2,
                   help="processes that score while the model predicts")


def run(args: argparse.Namespace) -> int:
    if args.action == "pack":
        job = len(campaign.read_jobs(args.campaign)) if args.job is None else args.job
        t = time.time()
        stats = campaign.make_packs(args.campaign, job, args.out)
        print(json.dumps({"job": job, **stats, "seconds": round(time.time() - t, 1)}))
    elif args.action == "job":
        record = campaign.run_job(args.campaign, args.packs, args.out, args.budget,
                                  overrides=args.set, progress=not args.no_progress,
                                  started=args.started)
        print(campaign.job_report(record))
    elif args.action == "adopt":
        record = campaign.adopt(args.campaign, args.job_out)
        print(f"foldlite campaign: job {record['job']} adopted (steps {record['step_from']} -> "
              f"{record['step_to']}); commit {args.campaign}", file=sys.stderr)
        print(campaign.status_table(args.campaign))
    elif args.action == "compare":
        current = args.current or default_weights_path()
        ccfg = campaign.load_campaign(args.campaign)
        result = campaign.compare_weights(args.weights, current, dataset=ccfg.dataset,
                                          splits=campaign.REPO / ccfg.splits,
                                          workers=args.workers)
        print(campaign.format_comparison(result))
        if args.ship and result["better"]:
            fileio.write_bytes(current, open(args.weights, "rb").read())
            print(f"foldlite campaign: {args.weights} copied to {current}; update the model "
                  "card with the table above", file=sys.stderr)
        return 0 if result["better"] or not args.ship else 1
    else:
        print(campaign.status_table(args.campaign))
    return 0

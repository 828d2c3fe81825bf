"""``actionlab study``: run every registered experiment into one folder, resumably."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

__all__ = ["register"]

DESCRIPTION = """\
Run the registered experiments one after the other into DIR/<experiment>/
and index them in DIR/study.json; then build DIR/report.html (and its
Markdown twin DIR/report.md).

Resumable: an experiment whose run folder is finished is kept (use --rerun to
redo it), an interrupted one is restarted (the files its run wrote are
cleared; files you put there stay), and a failing one is recorded with its
traceback while the others go on. A folder another live process is writing is
left alone. Exit status 1 when any experiment failed or was left alone.

Example:
  actionlab study --preset quick --out runs/study
  actionlab report runs/study
"""


def register(subparsers, common) -> None:
    p = subparsers.add_parser(
        "study",
        parents=[common],
        help="run every registered experiment (resumable) and build the report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="default", choices=["quick", "default", "full"], help="parameter preset of every experiment (default: default)")
    p.add_argument("--quick", dest="preset", action="store_const", const="quick", help="same as --preset quick")
    p.add_argument("--full", dest="preset", action="store_const", const="full", help="same as --preset full")
    p.add_argument("--only", nargs="+", metavar="NAME", default=None, help="run only these experiments (names or a comma-separated list)")
    p.add_argument("--skip", nargs="+", metavar="NAME", default=None, help="leave these experiments out")
    p.add_argument("--rerun", action="store_true", help="rerun experiments that are already finished")
    p.add_argument("--list", action="store_true", help="list the experiments the study would run, with their state, and exit")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True, help="build DIR/report.html at the end (default: yes)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="show the progress bar (default: on a terminal)")
    p.set_defaults(_handler=_handler)


def _handler(args: argparse.Namespace, options) -> int:
    from actionlab.runs import FAILED, default_out, folder_state, lock_holder
    from actionlab.study import plan_study, run_study

    out = Path(args.out) if args.out is not None else default_out("study")
    if args.list:
        for exp in plan_study(only=args.only, skip=args.skip):
            srcs = ",".join(getattr(exp, "sources", ())) or "-"
            state = "in use" if lock_holder(out / exp.name) is not None else folder_state(out / exp.name)
            print(f"{exp.name:<20} sources {srcs:<16} {state:<10} {exp.help}")
        return 0
    if args.out is None:
        options.command = f"{options.command} --out {shlex.quote(str(out))}"
    try:
        study = run_study(out, preset=args.preset, only=args.only, skip=args.skip, rerun=args.rerun,
                          options=options, progress=args.progress)
    except KeyboardInterrupt:
        print(f"\nstudy interrupted; {out / 'study.json'} is saved — run the same command again to resume "
              "(finished experiments are kept, the interrupted one restarts)")
        raise
    counts = study.counts
    print(f"study folder: {out}  ({', '.join(f'{n} {k}' for k, n in counts.items())})")
    for e in study.failed:
        print(f"  {e.name}: {e.status}: {e.error}  (traceback: {out / e.folder / FAILED})")
    for e in study.busy:
        print(f"  {e.name}: left alone, {e.note}; run the study again when that process is done")
    if args.report and study.entries:
        from actionlab.report import build_report

        files = build_report([out])
        print(f"report: {files.html}  (Markdown twin: {files.markdown})")
    else:
        print(f"build the report with: actionlab report {out}")
    return 1 if study.failed or study.busy else 0

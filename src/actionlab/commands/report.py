"""``actionlab report DIR…``: one self-contained HTML report (and a Markdown twin) from run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]

DESCRIPTION = """\
Build report.html — one self-contained page, figures embedded, no network
needed — and its Markdown twin report.md from run folders: a study folder
(made by `actionlab study --out DIR`), single run folders, or folders that
hold run folders. The report has one section per source document (000–004)
with its claims, the measured values, a verdict per claim, the figures and
the provenance (command, seed, data, versions, date) of every number.

Examples:
  actionlab report runs/study                 # writes runs/study/report.html
  actionlab report runs/expand runs/fim-spectrum --out reports/
"""


def register(subparsers, common) -> None:
    """``--out`` is the shared option (here: the report folder or .html file); ``--seed --device
    --dtype`` are accepted for uniformity and have no effect on a report."""
    p = subparsers.add_parser(
        "report",
        parents=[common],
        help="build one self-contained HTML report (and a Markdown twin) from run folders",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="DIR", help="run folders, study folders or folders of run folders")
    p.set_defaults(out=None)  # --out (shared): folder for report.html / report.md, or a name ending in .html;
    # default: the folder given, or ./report/ when several are given
    p.add_argument("--title", default=None, help="title of the report (default: actionlab report)")
    p.add_argument("--markdown", action=argparse.BooleanOptionalAction, default=True, help="also write the Markdown twin (default: yes)")
    p.set_defaults(_handler=_handler)


def _handler(args: argparse.Namespace, options) -> int:
    from actionlab.report import build_report

    files = build_report(args.paths, args.out, markdown=args.markdown, title=args.title)
    print(f"report: {files.html}  ({files.runs} run folder(s), {files.problems} unfinished)")
    if files.markdown is not None:
        print(f"Markdown twin: {files.markdown}")
    print(f"open it in a browser: file://{files.html.resolve()}")
    return 0

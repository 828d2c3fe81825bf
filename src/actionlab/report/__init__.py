"""``actionlab report``: one self-contained HTML page (and a Markdown twin) from run folders.

The report opens with **Key findings** — one plain sentence, with its
numbers, per firm verdict on the claims that matter most (`KEY_FINDINGS`) —
and, when every run used the quick preset, one sentence saying the study is
a smoke test. It is then organised by source document (000–004, see
``shared/seeds``): for each document, the claims the experiments checked —
what the document says, what was measured, a verdict (holds / does not hold
/ inconclusive / not yet measured) and its strength (firm / indicative) —
then, per run folder, its figures, its measured values and the provenance of
every number (command, preset, seed, data, library versions, date, git
commit). Where several runs judge one claim id, the firmest judgement, then
the latest, decides; the others are listed under it. A document that no run
folder covers is listed as *not yet measured*, with the registered
experiments that would measure it and the command to run them.

The HTML file needs no network: figures are embedded as base64 ``data:``
URIs, the style sheet is inline and there is no script (a figure enlarges on
a click through a CSS toggle). The Markdown twin (``report.md``) links the
PNG files of the run folders by relative path, for reading on GitHub next to
the runs. Both are jinja2 templates in ``actionlab/templates/``.

Modules: `collect` reads run folders (the only one that reads files),
`build` arranges them into the `model`, `findings` holds the key-findings
table, `values` writes values as text and `render` fills the templates.

Input: any mix of run folders (``results.json``), study folders
(``study.json``, see `actionlab.study`) and folders holding run folders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from actionlab._checks import DataError

from .build import build_model
from .collect import collect, read_run
from .findings import KEY_FINDINGS
from .model import DOCUMENTS, ClaimGroup, DocumentSection, KeyFinding, Problem, ReportData, ReportFiles, RunFolderRecord
from .render import render_html, render_markdown
from actionlab._values import format_value

__all__ = [
    "DOCUMENTS",
    "KEY_FINDINGS",
    "RunFolderRecord",
    "Problem",
    "ClaimGroup",
    "DocumentSection",
    "KeyFinding",
    "ReportData",
    "ReportFiles",
    "collect",
    "read_run",
    "build_model",
    "render_html",
    "render_markdown",
    "build_report",
    "format_value",
]


def build_report(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    markdown: bool = True,
    registry: Mapping[str, Any] | Iterable[Any] | None = None,
    title: str | None = None,
) -> ReportFiles:
    """Write ``report.html`` (and ``report.md``) for the run folders under ``paths``.

    ``out`` is a folder (the files are ``out/report.html`` and
    ``out/report.md``) or a path ending in ``.html``; by default the single
    folder given, or ``./report/`` when several are given.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no folder given; pass run folders or a study folder (made by `actionlab study --out DIR`)")
    data = build_model(paths, registry=registry, title=title)
    if out is None:
        out = paths[0] if len(paths) == 1 and paths[0].is_dir() else Path("report")
    out = Path(out)
    html_path = out if out.suffix.lower() in (".html", ".htm") else out / "report.html"
    from actionlab.config import check_out_dir
    from actionlab.runs import atomic_write_text

    check_out_dir(html_path.parent)  # not a file, not below one, writable (a named error otherwise)
    atomic_write_text(html_path, render_html(data))
    md_path = None
    if markdown:
        md_path = html_path.with_suffix(".md")
        atomic_write_text(md_path, render_markdown(data, md_path.parent))
    return ReportFiles(html=html_path, markdown=md_path, runs=len(data.runs), problems=len(data.problems))

"""Rendering the report model with jinja2 templates (``actionlab/templates/report.html.j2``, ``report.md.j2``).

HTML is autoescaped (a claim holding ``<script>`` shows as text); the
Markdown template escapes table cells with the ``md`` filter. The HTML page
is self-contained: the style sheet is inlined, figures are ``data:`` URIs,
there is no script and no external resource. A figure fills the width of
the page and opens at the size of the window on a click (a CSS checkbox
toggle, no script).
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from actionlab.runs import VERDICTS

from .build import slug
from .collect import IMAGE_TYPES
from .model import OTHER, ReportData, RunFolderRecord
from actionlab._values import flatten, fmt_number, format_value, is_number

__all__ = ["render_html", "render_markdown", "environment"]

#: how many numbers a claim's measured value lists in full before it is summarised
CLAIM_ITEMS = 32
#: figures at least this many pixels wide fill the width of the page; narrower ones keep their size (click: enlarge)
FULL_WIDTH_PX = 640


def _data_uri(path: Path) -> str:
    mime = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _image_width(path: Path) -> int | None:
    """The pixel width of a PNG (from its IHDR chunk); None for other formats."""
    with path.open("rb") as f:
        head = f.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big")
    return None


def _figure_class(path: Path) -> str:
    """``full`` (shown at the width of the page) for a figure at least `FULL_WIDTH_PX` wide."""
    w = _image_width(path)
    return "full" if w is not None and w >= FULL_WIDTH_PX else ""


def _versions(prov: dict) -> str:
    v = prov.get("versions")
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    return format_value(v)


def provenance_rows(r: RunFolderRecord) -> list[tuple[str, str]]:
    """(label, text) rows of a run's provenance, the command first."""
    p = r.provenance
    rows = [
        ("command", str(p.get("command") or "—")),
        ("preset", r.preset or "— (not recorded)"),
        ("seed", format_value(p.get("seed"))),
        ("data", format_value(p.get("data"))),
        ("date", str(p.get("date") or "—")),
        ("versions", _versions(p)),
        ("git commit", str(p.get("git_commit") or "— (not a git checkout or no commit yet)")),
        ("wall time", f"{fmt_number(p['wall_time_s'])} s" if is_number(p.get("wall_time_s")) else "—"),
        ("machine", format_value(p.get("machine"))),
        ("run folder", str(r.path)),
    ]
    known = {"command", "preset", "seed", "data", "date", "versions", "git_commit", "wall_time_s", "machine"}
    return rows + [(k, format_value(v)) for k, v in p.items() if k not in known]


def _md(x: Any) -> str:
    """A Markdown table cell: the value as text, pipes and angle brackets escaped, on one line."""
    s = x if isinstance(x, str) else format_value(x)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _run_command(exp: Any) -> str:
    return f"actionlab {exp.name} --quick --out runs/{exp.name}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The template environment: package templates, HTML autoescaped, strict undefined names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("actionlab", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fmt=format_value,
        measured=lambda v: format_value(v, max_items=CLAIM_ITEMS),
        slug=slug,
        md=_md,
        data_uri=_data_uri,
        figure_class=_figure_class,
        quote=quote,
    )
    env.globals.update(
        VERDICTS=VERDICTS,
        OTHER=OTHER,
        provenance_rows=provenance_rows,
        flatten=flatten,
        run_command=_run_command,
    )
    return env


def _context(data: ReportData) -> dict[str, Any]:
    from actionlab import __version__

    return {
        "data": data,
        "version": __version__,
        "by_name": {e.name: e for e in data.registry},
        "problems_by_name": {p.experiment: p for p in data.problems},
        "ran": {r.experiment: r for r in data.runs},
    }


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML page (no script, no external resource)."""
    env = environment()
    css = env.loader.get_source(env, "report.css")[0]
    return env.get_template("report.html.j2").render(**_context(data), css=css)


def render_markdown(data: ReportData, md_dir: str | Path) -> str:
    """The report as Markdown, figures linked by paths relative to ``md_dir``."""
    md_dir = Path(md_dir)

    def figure_link(r: RunFolderRecord, f: str) -> str:
        return quote(Path(os.path.relpath(r.path / f, md_dir)).as_posix())

    return environment().get_template("report.md.j2").render(**_context(data), figure_link=figure_link)

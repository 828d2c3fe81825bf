"""``actionlab report``: sections per document, verdicts, embedded figures, provenance, Markdown twin, docs build.

The run folders here are real (written by :class:`actionlab.runs.RunFolder`
through ``run_study`` with small synthetic experiments, figures made by
matplotlib), so the report reads exactly what experiments write.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from actionlab._checks import DataError
from actionlab.report import DOCUMENTS, build_model, build_report, format_value
from actionlab.runs import Claim, RunFolder
from actionlab.study import run_study

_spec = importlib.util.spec_from_file_location("_study_helpers", Path(__file__).with_name("test_study.py"))
_helpers = sys.modules.setdefault("_study_helpers", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_helpers)
make_experiment, FakeConfig = _helpers.make_experiment, _helpers.FakeConfig

REPO = Path(__file__).resolve().parents[1]


class PageParser(HTMLParser):
    """Collects ids, internal links, images and external references of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.scripts = 0
        self.toc_links: list[str] = []
        self._in_toc = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "nav" and a.get("id") == "toc":
            self._in_toc += 1
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            v = a.get(key)
            if v and re.match(r"^(https?:)?//", v):
                self.external.append(v)
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
            if self._in_toc:
                self.toc_links.append(a["href"][1:])
        if tag == "img":
            self.images.append(a.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "nav" and self._in_toc:
            self._in_toc -= 1


def parse(page: str) -> PageParser:
    p = PageParser()
    p.feed(page)
    return p


def section(page: str, anchor: str) -> str:
    """The HTML of ``<section … id="anchor">`` up to the next document-level section."""
    start = page.index(f'id="{anchor}"')
    nxt = page.find('<section class="doc"', start)
    tail = [i for i in (nxt, page.find('<section id="problems"', start), page.find('<section id="coverage"', start)) if i > 0]
    return page[start: min(tail) if tail else len(page)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study folder: two finished runs with figures (000+001, 004), one failed run, one unrun experiment (003)."""
    out = tmp_path_factory.mktemp("study")
    reg = {
        "expansion-like": make_experiment("expansion-like", sources=("000", "001"), order=1, figure=True),
        "fisher-like": make_experiment("fisher-like", sources=("004",), order=2, figure=True, verdict="does not hold"),
        "broken": make_experiment("broken", sources=("002",), order=3, fail=RuntimeError("singular matrix in block 3")),
    }
    run_study(out, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    unrun = make_experiment("rngd-like", sources=("003",), order=4)
    registry = {**reg, "rngd-like": unrun}
    files = build_report([out], registry=registry)
    return {"out": out, "registry": registry, "files": files, "html": files.html.read_text(), "md": files.markdown.read_text()}


def test_one_section_per_document_with_claims_and_verdicts(study):
    page = study["html"]
    for doc, (title, _) in DOCUMENTS.items():
        assert f'id="doc-{doc}"' in page and html.escape(title) in page
    s000 = section(page, "doc-000")
    assert "expansion-like: the sum of 0..n-1 is n(n-1)/2" in s000
    assert 'class="verdict v-holds">holds<' in s000
    assert ">3<" in s000  # the measured sum of 0..2 under the quick preset
    s004 = section(page, "doc-004")
    assert "fisher-like: the sum" in s004 and 'v-does-not-hold">does not hold<' in s004
    # documents without a run folder are not yet measured; the registered experiment that would measure it is named
    s003 = section(page, "doc-003")
    assert "not yet measured" in s003 and "rngd-like" in s003 and "actionlab rngd-like --quick" in s003
    s002 = section(page, "doc-002")
    assert "not yet measured" in s002 and "broken" in s002
    assert 'v-failed">failed</span> <a href="#problem-1">see why</a>' in s002
    # the overview counts verdicts per document
    ov = page[page.index('id="overview"'): page.index('id="doc-000"')]
    assert re.search(r">000</a></td><td>[^<]*</td><td class=\"num\">1</td>", ov)


def test_figures_are_embedded_once_and_match_the_files(study):
    page, out = study["html"], study["out"]
    p = parse(page)
    assert len(p.images) == 2  # one per finished run, even though expansion-like covers two documents
    expected = sorted((out / name / "curve.png").read_bytes() for name in ("expansion-like", "fisher-like"))
    got = sorted(base64.b64decode(src.split(",", 1)[1]) for src in p.images)
    assert all(src.startswith("data:image/png;base64,") for src in p.images)
    assert got == expected
    assert got[0][:8] == b"\x89PNG\r\n\x1a\n"
    # 001 links to the run shown in full under 000
    s001 = section(page, "doc-001")
    assert 'href="#run-expansion-like"' in s001 and "<img" not in s001


def test_self_contained_and_every_internal_link_resolves(study):
    p = parse(study["html"])
    assert p.external == [] and p.scripts == 0
    assert len(p.ids) == len(set(p.ids)), "duplicate ids"
    missing = sorted(set(p.links) - set(p.ids))
    assert missing == []
    assert {"overview", "doc-000", "doc-004", "run-expansion-like", "run-fisher-like", "problems", "coverage"} <= set(p.toc_links)


def test_provenance_of_every_run(study):
    page, out = study["html"], study["out"]
    for name in ("expansion-like", "fisher-like"):
        prov = json.loads((out / name / "provenance.json").read_text())
        run_html = page[page.index(f'id="run-{name}"'):]
        run_html = run_html[: run_html.index("</section>")]
        assert prov["command"] == f"actionlab {name} --preset quick --out {out / name} --seed 0 --device cpu --dtype float32"
        assert prov["command"] in run_html and prov["date"] in run_html
        assert f"torch {prov['versions']['torch']}" in run_html and "synthetic" in run_html  # versions, data
        assert "<b>seed</b></td><td>0</td>" in run_html
        # the claim row links to the run, the link carries the command that produced its number
        assert f'<a href="#run-{name}" title="{html.escape(prov["command"])}">{name}</a>' in page
        assert page.count(html.escape(prov["command"])) >= 3  # claim link, provenance table, figure caption


def test_failed_run_is_listed_with_its_traceback(study):
    page = study["html"]
    probs = page[page.index('id="problems"'): page.index('id="coverage"')]
    assert "broken" in probs and "RuntimeError: singular matrix in block 3" in probs
    assert "Traceback (most recent call last)" in probs
    assert "actionlab broken --preset quick" in probs


def test_markdown_twin(study):
    md, md_path = study["md"], study["files"].markdown
    assert md_path == study["out"] / "report.md"
    assert "| 1 | expansion-like: the sum of 0..n-1 is n(n-1)/2 | n(n-1)/2 | 3 | **holds** |" in md
    assert "**does not hold**" in md and "**not yet measured**" in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(images) == 2
    for rel in images:
        assert (md_path.parent / rel).is_file()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', md))
    links = set(re.findall(r"\]\(#([^)]+)\)", md))
    assert links and links <= anchors
    assert "actionlab fisher-like --preset quick" in md


def test_several_run_folders_and_other_claims(tmp_path):
    reg = {"a": make_experiment("a", sources=("004",), figure=True)}
    run_study(tmp_path / "s1", preset="quick", experiments=reg, progress=False, log=lambda s: None)
    # a hand-made run folder whose claims name two documents and no document
    rf = RunFolder(tmp_path / "manual", experiment="manual", config={"k": 1}, seed=7)
    rf.add_claim(Claim(source="000, 002", claim="shared claim", document_value=1, measured=1.0, verdict="holds"))
    rf.add_claim(Claim(source="design", claim="an engineering claim", measured=[1, 2, 3], verdict="inconclusive"))
    rf.finish({"x": float("nan")})
    # an interrupted folder
    (tmp_path / "stuck").mkdir()
    (tmp_path / "stuck" / "RUNNING").write_text("x")
    files = build_report([tmp_path / "s1" / "a", tmp_path / "manual", tmp_path / "stuck"], tmp_path / "out" / "r.html", registry=reg)
    assert files.html == tmp_path / "out" / "r.html" and files.markdown == tmp_path / "out" / "r.md"
    assert files.runs == 2 and files.problems == 1
    page = files.html.read_text()
    assert "shared claim" in section(page, "doc-000") and "shared claim" in section(page, "doc-002")
    assert 'id="doc-other"' in page and "an engineering claim" in section(page, "doc-other")
    assert "inconclusive" in page and "stuck" in page and "RUNNING marker" in page
    p = parse(page)
    assert set(p.links) <= set(p.ids) and len(p.images) == 1
    data = build_model([tmp_path], registry=reg)  # the parent folder is searched too
    assert sorted(r.experiment for r in data.runs) == ["a", "manual"]


def test_unloadable_registry_still_reports(tmp_path, monkeypatch):
    import actionlab.experiments as experiments

    run_study(tmp_path, preset="quick", experiments={"a": make_experiment("a", sources=("001",))}, progress=False, log=lambda s: None)

    def boom():
        raise ImportError("module actionlab.experiments.xyz is broken")

    monkeypatch.setattr(experiments, "load_all", boom)
    page = build_report([tmp_path]).html.read_text()
    assert "could not be loaded" in page and "xyz is broken" in page
    assert "a: the sum" in section(page, "doc-001")


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_report([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no run folders found.*actionlab study"):
        build_report([tmp_path / "empty"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json")
    data = build_model([bad], registry={})
    assert data.runs == [] and data.problems[0].state == "unreadable"


def test_format_value():
    assert format_value(0.123456789) == "0.123457"
    assert format_value(1.5e-9) == "1.5000e-09"
    assert format_value([1, 2.5, 3]) == "[1, 2.5, 3]"
    long = format_value([float(i) for i in range(100)])
    assert long.startswith("array 100 (100 values): min 0, max 99, mean 49.5")
    assert format_value([[1.0, 2.0], [3.0, "nan"]]).startswith("array 2×2 (4 values): min 1, max 3")
    assert format_value(None) == "—" and format_value(True) == "true"
    assert format_value({"a": 1, "b": [1, 2]}) == "{a: 1, b: [1, 2]}"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    """The documentation (user guide + API reference from docstrings) builds with no warning."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings-python is not installed: pip install -e '.[docs]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "WARNING" not in proc.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "run_study" in api and "build_report" in api


def test_two_studies_of_the_same_experiment_stay_apart(tmp_path):
    reg = {"a": make_experiment("a", sources=("001",))}
    for seed in (0, 1):
        run_study(tmp_path / f"seed{seed}", preset="quick", seed=seed, experiments=reg, progress=False, log=lambda s: None)
    files = build_report([tmp_path / "seed0", tmp_path / "seed1"], tmp_path / "both", registry=reg)
    page = files.html.read_text()
    p = parse(page)
    assert {"run-a-seed0-a", "run-a-seed1-a"} <= set(p.ids)
    assert len(p.ids) == len(set(p.ids)) and set(p.links) <= set(p.ids)
    s001 = section(page, "doc-001")
    assert s001.count("a: the sum of 0..n-1") == 2
    assert f"--out {tmp_path / 'seed1' / 'a'} --seed 1" in s001
    assert len(files.markdown.read_text().split("### Run: a (")) == 3

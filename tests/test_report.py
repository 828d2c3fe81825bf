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
from actionlab.config import RunOptions
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
    # issue 13.2: a dict reads as "key: value; key: value", never as a dict string
    assert format_value({"a": 1, "b": [1, 2]}) == "a: 1; b: [1, 2]"
    assert format_value({"random": {"note": 0.5, "exact": 1.0}, "n": 3}) == "random: (note: 0.5, exact: 1); n: 3"
    long_text = "x" * 1000
    assert format_value(long_text) == long_text and format_value([long_text, "y"]) == f"[{long_text}, y]"


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
        run_study(tmp_path / f"seed{seed}", preset="quick", options=RunOptions(seed=seed), experiments=reg, progress=False, log=lambda s: None)
    files = build_report([tmp_path / "seed0", tmp_path / "seed1"], tmp_path / "both", registry=reg)
    page = files.html.read_text()
    p = parse(page)
    assert {"run-a-seed0-a", "run-a-seed1-a"} <= set(p.ids)
    assert len(p.ids) == len(set(p.ids)) and set(p.links) <= set(p.ids)
    s001 = section(page, "doc-001")
    assert s001.count("a: the sum of 0..n-1") == 2
    assert f"--out {tmp_path / 'seed1' / 'a'} --seed 1" in s001
    assert len(files.markdown.read_text().split("### Run: a (")) == 3


# --------------------------------------------------------------------------- strength, claim groups, key findings (issue 13.2)


def write_run(folder: Path, experiment: str, claims: list, *, date: str, preset: str | None = "default",
              results: dict | None = None, legacy: bool = False) -> Path:
    """A run folder written by RunFolder, then dated / given a preset as the CLI would record them.

    ``legacy``: strip ``id``, ``strength``, ``evidence`` and the preset, as in results.json files
    written before claims had them.
    """
    rf = RunFolder(folder, experiment=experiment, config={"n": 3}, seed=0, data={"name": "synthetic"})
    for c in claims:
        rf.add_claim(c)
    rf.finish(results or {"x": 1.0})
    path = folder / "results.json"
    data = json.loads(path.read_text())
    data["provenance"].update(date=date, command=f"actionlab {experiment} --preset {preset} --out {folder}")
    data["provenance"]["preset"] = preset
    data["preset"] = preset
    if legacy:
        for c in data["claims"]:
            for k in ("id", "strength", "evidence"):
                c.pop(k, None)
        data.pop("preset")
        data["provenance"].pop("preset")
        data["provenance"]["command"] = f"actionlab {experiment} --out {folder}"
    path.write_text(json.dumps(data))
    return folder


def claim_rows(page: str) -> list[str]:
    """The <tr> rows of every claims table (those holding a verdict badge)."""
    return re.findall(r'<tr (?:id="claim-[^"]+"|class="other")>.*?</tr>', page, flags=re.S)


RNGD = "003.rngd-faster-per-epoch"


def rngd_claim(verdict: str, strength: str, ratio: float) -> Claim:
    return Claim(source="003 §5", claim="RNGD learns faster per epoch than SGD and Adam", document_value="faster",
                 measured={"epochs to 90%: RNGD / Adam": ratio, "seeds": 5}, verdict=verdict, id=RNGD, strength=strength)


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Three runs judging one claim id (firm old, indicative newest, indicative middle) plus other claims."""
    root = tmp_path_factory.mktemp("judged")
    write_run(root / "full", "rngd-mnist", [rngd_claim("does not hold", "firm", 1.31)], date="2026-01-01T00:00:00+00:00", preset="full")
    write_run(root / "quick", "rngd-mnist", [rngd_claim("holds", "indicative", 0.72)], date="2026-03-01T00:00:00+00:00", preset="quick")
    write_run(root / "quick-old", "rngd-mnist", [rngd_claim("inconclusive", "indicative", 0.97)], date="2026-02-01T00:00:00+00:00",
              preset="quick")
    write_run(root / "notes", "notes-check", [
        Claim(source="001 eq. 6", claim="U·W term of S_2 has coefficient σ'(0)/(2M)", id="001.s2-uw-coefficient",
              document_value={"random": 0.0625, "fashion-mnist": 0.05}, verdict="does not hold", strength="firm",
              measured={"random": 0.125, "fashion-mnist": {"exact": 0.1, "abs. error": 3.2e-16}},
              evidence={"preset": "default", "problems": 2}),
        Claim(source="004 B.12", claim="B.12 <script>alert('x')</script> for relu", id="004.B12-relu",
              document_value=1.0, measured=0.5, verdict="does not hold", strength="indicative"),
    ], date="2026-01-05T00:00:00+00:00")
    files = build_report([root], registry={})
    return {"root": root, "files": files, "html": files.html.read_text(), "md": files.markdown.read_text(),
            "data": build_model([root], registry={})}


def test_strength_beside_every_verdict(judged, study):
    for page in (judged["html"], study["html"]):
        rows = claim_rows(page)
        assert rows
        for row in rows:
            assert re.search(r'class="verdict v-[a-z-]+">[a-z ]+</span></td><td><span class="strength s-(firm|indicative)"', row), row
    for md in (judged["md"], study["md"]):
        rows = [ln for ln in md.splitlines() if re.match(r"\| (\d+|↳) \|", ln)]
        assert rows
        for ln in rows:
            assert re.search(r"\| \*\*(holds|does not hold|inconclusive|not yet measured)\*\* \| (firm|indicative) \|", ln), ln
    # the study fixture's claims carry no explicit strength and were run quick: indicative
    assert 'class="strength s-indicative"' in study["html"] and 's-firm"' not in section(study["html"], "doc-000")
    assert len(claim_rows(judged["html"])) == 5  # 3 judgements of one claim + 2 claims


def test_firmest_then_latest_decides_and_the_others_are_listed_under_it(judged):
    s003 = section(judged["html"], "doc-003")
    rows = claim_rows(s003)
    assert len(rows) == 3
    # the firm judgement decides although the two indicative ones are later
    assert rows[0].startswith('<tr id="claim-003-1">') and "1.31" in rows[0] and 'v-does-not-hold"' in rows[0]
    assert "decides over 2 other judgement(s)" in rows[0] and re.search(r's-firm"[^>]*>firm<', rows[0])
    # the others under it, the later of the two indicative ones first
    assert all(r.startswith('<tr class="other">') for r in rows[1:])
    assert "0.72" in rows[1] and "2026-03-01" in rows[1] and "0.97" in rows[2] and "2026-02-01" in rows[2]
    group = next(s for s in judged["data"].sections if s.doc == "003").groups
    assert len(group) == 1 and group[0].key == RNGD
    assert [c["measured"]["epochs to 90%: RNGD / Adam"] for c, _ in [group[0].decisive, *group[0].others]] == [1.31, 0.72, 0.97]
    # one claim, one verdict in the counts
    assert next(s for s in judged["data"].sections if s.doc == "003").counts["does not hold"] == 1
    md_rows = [ln for ln in judged["md"].splitlines() if "RNGD learns faster" in ln and ln.startswith("|")]
    assert md_rows[0].startswith("| 1 |") and "1.31" in md_rows[0] and "| firm |" in md_rows[0]
    assert [ln.split(" | ")[0] for ln in md_rows[1:]] == ["| ↳", "| ↳"] and "0.72" in md_rows[1] and "0.97" in md_rows[2]


def test_the_later_wins_among_equals(tmp_path):
    write_run(tmp_path / "a", "rngd-mnist", [rngd_claim("holds", "firm", 0.8)], date="2026-01-01T00:00:00+00:00")
    write_run(tmp_path / "b", "rngd-mnist", [rngd_claim("does not hold", "firm", 1.2)], date="2026-01-02T00:00:00+00:00")
    data = build_model([tmp_path], registry={})
    (g,) = next(s for s in data.sections if s.doc == "003").groups
    assert g.claim["verdict"] == "does not hold" and g.run.path == tmp_path / "b"
    assert [r.path for _, r in g.others] == [tmp_path / "a"]
    # key findings follow the decisive judgement
    assert [k.claim_id for k in data.key_findings] == [RNGD] and "1.2" in data.key_findings[0].sentence


def test_legacy_claims_without_id_or_strength(tmp_path):
    claim = Claim(source="001", claim="S_0 = ln M", document_value="ln M", measured=2.302585, verdict="holds")
    write_run(tmp_path / "old", "demo", [claim], date="2025-01-01T00:00:00+00:00", legacy=True)
    write_run(tmp_path / "new", "demo", [claim], date="2025-02-01T00:00:00+00:00", legacy=True)
    data = build_model([tmp_path], registry={})
    (g,) = next(s for s in data.sections if s.doc == "001").groups
    assert g.key == "001 | S_0 = ln M" and g.claim["strength"] == "indicative" and len(g.others) == 1
    assert g.run.path == tmp_path / "new"
    assert all(r.preset is None for r in data.runs) and not data.quick_only  # no preset recorded, no claim of one


def test_quick_only_study_says_so_at_the_top(study, judged):
    for page in (study["html"], study["md"]):
        top = page[: page.index("Contents")]
        assert top.count("built only from quick presets") == 1
    for page in (judged["html"], judged["md"]):  # quick and full runs mixed: no such sentence
        assert "built only from quick presets" not in page


def test_key_findings_list_only_firm_claims_with_their_numbers(judged, study):
    page = judged["html"]
    kf = page[page.index('<section id="key-findings">'): page.index('<section id="overview">')]
    items = re.findall(r"<li>(.*?)</li>", kf, flags=re.S)
    assert len(items) == 2  # the S_2 coefficient and RNGD; B.12 is indicative
    assert "U·W term of S₂" in items[0] and "0.0625" in items[0] and "0.125" in items[0] and "does not hold" in items[0]
    assert "(exact: 0.1, abs. error: 3.2000e-16)" in items[0]
    assert "RNGD" in items[1] and "1.31" in items[1] and "0.72" not in items[1]
    assert 'href="#claim-001-1"' in items[0] and 'href="#claim-003-1"' in items[1]
    assert "B.12" not in kf and "0.5" not in items[1]
    md = judged["md"]
    mkf = md[md.index("## Key findings"): md.index("## Overview")]
    assert mkf.count("\n- ") == 2 and "1.31" in mkf and "0.125" in mkf
    # a report without firm claims says so in one sentence
    for page in (study["html"], study["md"]):
        assert "No firm verdict on the claims that matter most is in this report yet" in page


def test_measured_dicts_read_as_text(judged):
    s001 = section(judged["html"], "doc-001")
    (row,) = claim_rows(s001)
    cells = re.findall(r'<td class="val">(.*?)</td>', row)
    assert cells == ["random: 0.0625; fashion-mnist: 0.05", "random: 0.125; fashion-mnist: (exact: 0.1, abs. error: 3.2000e-16)"]
    assert "evidence: preset: default; problems: 2" in row
    md_lines = [ln for ln in judged["md"].splitlines() if re.match(r"\| (\d+|↳) \||- ", ln) and ("0.125" in ln or "1.31" in ln)]
    assert len(md_lines) == 4  # the S_2 and RNGD claim rows, and their two key findings
    for text in (row, *md_lines):
        assert "{" not in text and "…" not in text


def test_html_escapes_claim_text(judged):
    page = judged["html"]
    assert "<script" not in page and parse(page).scripts == 0
    assert "B.12 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; for relu" in page
    assert "B.12 &lt;script&gt;alert('x')&lt;/script&gt; for relu" in judged["md"]

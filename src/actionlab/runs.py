"""Run folders: where every experiment writes what it measured.

A run folder holds

* ``results.json`` – the measured numbers (the experiment's Result dataclass,
  serialised by :func:`to_jsonable`), under the key ``"results"``, beside
  ``"experiment"``, ``"config"``, ``"claims"`` and ``"provenance"``;
* ``*.png`` – figures, listed in ``results.json`` under ``"figures"``;
* ``summary.md`` – claim by claim, what the source document says and what was
  measured;
* ``provenance.json`` – the command that repeats the run (as a user types it,
  e.g. ``actionlab demo --preset quick --out runs/demo``; handed in through
  ``RunOptions.command``, never read from ``sys.argv``), preset, seed, device,
  dtype, data, library versions, date, git commit, wall time.

Markers: this module is the one owner of the files that say what state a run
folder is in (:func:`folder_state` reads them; nothing else should look at
them):

* ``RUNNING`` – written when the :class:`RunFolder` opens, removed by
  :meth:`RunFolder.finish`. A folder that keeps it was interrupted (Ctrl-C in
  ``actionlab study``, a killed process) or is still being written;
* ``FAILED`` – written by :func:`mark_failed` when the command or experiment
  writing the folder raised (also on Ctrl-C of a single command): it holds the
  command and the error text (the traceback), and the ``RUNNING`` marker is
  removed, so a failed command never leaves a folder with only a ``RUNNING``
  marker. A new :class:`RunFolder` in the same folder removes it.

A folder with ``results.json`` and neither marker is *finished*.

Strength: a claim measured under the ``quick`` preset is at most
``"indicative"`` — :class:`RunFolder` downgrades every claim of a quick run
(the preset comes with ``RunOptions.preset``).

Claims are rows ``{"source": "001", "claim": ..., "document_value": ...,
"measured": ..., "verdict": "holds" | "does not hold" | "not yet measured" |
"inconclusive", "details": ...}`` so that ``actionlab report`` can gather them
across run folders.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["RunFolder", "to_jsonable", "provenance", "Claim", "VERDICTS", "STRENGTHS", "default_out",
           "RUNNING", "FAILED", "FOLDER_STATES", "folder_state", "mark_failed", "failure_text"]

#: marker file of a run folder that is being written (or was interrupted)
RUNNING = "RUNNING"
#: marker file of a run folder whose command raised; holds the command and the error text
FAILED = "FAILED"
_LEGACY_FAILED = "ERROR.txt"  # what `actionlab study` wrote before FAILED existed
#: the states :func:`folder_state` returns
FOLDER_STATES = ("absent", "running", "finished", "failed", "incomplete")

VERDICTS = ("holds", "does not hold", "inconclusive", "not yet measured")
STRENGTHS = ("firm", "indicative")


@dataclasses.dataclass
class Claim:
    """One claim of a source document set against a measurement."""

    source: str  # document id, e.g. "001" or "004"
    claim: str  # what the document says, in words
    document_value: Any = None  # the document's number or formula
    measured: Any = None  # what this run measured
    verdict: str = "not yet measured"
    details: str = ""  # how it was measured, tolerance, where it fails
    id: str = ""  # one stable identifier per claim, e.g. "001.j-range"; one experiment owns it
    # what the verdict rests on: preset, seeds, sample sizes, widths, the statistic, its
    # interval, the threshold used (plain JSON values)
    evidence: dict | None = None
    strength: str = "indicative"  # "firm" or "indicative" (quick preset, one seed, interval straddling the threshold)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.strength not in STRENGTHS:
            raise ValueError(f"strength must be one of {STRENGTHS}, got {self.strength!r}")
        if self.evidence is not None and not isinstance(self.evidence, dict):
            raise ValueError(f"evidence must be a dict (preset, seeds, statistic, interval, threshold, ...), got {type(self.evidence).__name__}")


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tensors, arrays, paths and numpy scalars to plain JSON types (NaN/inf become strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else str(x)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    return obj


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(seed: int | None = None, data: Any = None, extra: dict | None = None, command: str | None = None) -> dict:
    """Everything needed to repeat a run: command, seed, data description, versions, date, commit.

    ``command`` is the command line that repeats the run, as the caller knows
    it (the CLI and ``actionlab study`` pass ``RunOptions.command``); ``None``
    when the run was started from Python.
    """
    import scipy
    import sklearn

    from actionlab import __version__

    info = {
        "command": command,
        "seed": seed,
        "data": to_jsonable(data),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "versions": {
            "actionlab": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
    }
    if extra:
        info.update(to_jsonable(extra))
    return info


def folder_state(path: str | Path) -> str:
    """The state of a run folder on disk, one of :data:`FOLDER_STATES`.

    ``absent`` (no folder), ``running`` (a ``RUNNING`` marker: being written,
    or interrupted), ``failed`` (a ``FAILED`` marker), ``finished``
    (``results.json`` and no marker) or ``incomplete`` (none of these).
    """
    p = Path(path)
    if not p.is_dir():
        return "absent"
    if (p / RUNNING).exists():
        return "running"
    if (p / FAILED).is_file() or ((p / _LEGACY_FAILED).is_file() and not (p / "results.json").is_file()):
        return "failed"
    if (p / "results.json").is_file():
        return "finished"
    return "incomplete"


def mark_failed(path: str | Path, error: str, *, command: str | None = None, create: bool = False) -> Path | None:
    """Mark a run folder failed: write ``FAILED`` (the command, then ``error``) and remove ``RUNNING``.

    Nothing is written when the folder does not exist, unless ``create``
    (``actionlab study`` records a failure even when the experiment raised
    before opening its folder). Returns the marker's path, or ``None``.
    """
    p = Path(path)
    if not p.is_dir():
        if not create:
            return None
        p.mkdir(parents=True)
    marker = p / FAILED
    marker.write_text(f"{command}\n\n{error}" if command else error)
    (p / RUNNING).unlink(missing_ok=True)
    return marker


def failure_text(path: str | Path) -> str | None:
    """The text of a failed run folder's ``FAILED`` marker (command and error), or ``None``."""
    p = Path(path)
    for name in (FAILED, _LEGACY_FAILED):
        if (p / name).is_file():
            return (p / name).read_text()
    return None


def default_out(name: str) -> Path:
    """``runs/<name>-<UTC timestamp>`` under the current directory."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


class RunFolder:
    """A folder that collects one experiment's results, figures, claims and provenance.

    Usage (``options`` is the experiment's :class:`actionlab.config.RunOptions`:
    its ``out``, ``seed``, ``preset`` and ``command`` go into the folder)::

        run = RunFolder(options, experiment="demo", config=cfg)
        run.save_figure(fig, "loss")            # loss.png
        run.add_claim(Claim(...))
        run.finish(result, summary_md)          # results.json, summary.md, provenance.json

    A plain path instead of ``options`` works too (no preset, no command).
    Under the ``quick`` preset every claim's strength becomes ``"indicative"``.
    """

    def __init__(self, path: Any, experiment: str, config: Any = None, seed: int | None = None, data: Any = None):
        options = None if isinstance(path, (str, Path)) else path
        if options is not None and getattr(options, "out", None) is None:
            raise ValueError("RunFolder needs RunOptions with an output folder (options.out is None)")
        self.path = Path(options.out if options is not None else path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.experiment = experiment
        self.config = config
        self.seed = seed if seed is not None or options is None else options.seed
        self.data = data
        self.preset: str | None = getattr(options, "preset", None)
        self.command: str | None = getattr(options, "command", None)
        self._options = options
        self.figures: list[str] = []
        self.claims: list[Claim] = []
        self._t0 = time.perf_counter()
        (self.path / FAILED).unlink(missing_ok=True)
        (self.path / RUNNING).write_text(_dt.datetime.now(_dt.timezone.utc).isoformat())

    def save_figure(self, fig, name: str, dpi: int = 120) -> Path:
        """Save a matplotlib figure as ``name.png`` and close it."""
        import matplotlib.pyplot as plt

        target = self.path / (name if name.endswith(".png") else f"{name}.png")
        fig.savefig(target, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        if target.name not in self.figures:
            self.figures.append(target.name)
        return target

    def add_claim(self, claim: Claim) -> Claim:
        """Record a claim; under the ``quick`` preset its strength is lowered to ``"indicative"``. Returns it."""
        if self.preset == "quick" and claim.strength != "indicative":
            claim = dataclasses.replace(claim, strength="indicative")
        self.claims.append(claim)
        return claim

    def write_json(self, name: str, obj: Any) -> Path:
        target = self.path / name
        target.write_text(json.dumps(to_jsonable(obj), indent=2, allow_nan=False))
        return target

    def finish(self, result: Any, summary: str | None = None) -> Path:
        """Write results.json, provenance.json and summary.md; remove the RUNNING marker."""
        wall = time.perf_counter() - self._t0
        extra: dict[str, Any] = {"preset": self.preset}
        if self._options is not None:
            extra.update(device=str(self._options.device), dtype=str(self._options.dtype))
        extra["wall_time_s"] = wall
        prov = provenance(seed=self.seed, data=self.data, extra=extra, command=self.command)
        payload = {
            "experiment": self.experiment,
            "preset": self.preset,
            "config": to_jsonable(self.config),
            "results": to_jsonable(result),
            "claims": to_jsonable(self.claims),
            "figures": list(self.figures),
            "provenance": prov,
        }
        self.write_json("provenance.json", prov)
        if summary is not None:
            (self.path / "summary.md").write_text(summary)
        out = self.write_json("results.json", payload)
        (self.path / RUNNING).unlink(missing_ok=True)
        return out


def claims_table_md(claims: list[Claim]) -> str:
    """A Markdown table of claims (source, claim, document, measured, verdict)."""
    lines = ["| source | claim | document | measured | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        def cell(v: Any) -> str:
            s = v if isinstance(v, str) else json.dumps(to_jsonable(v))
            return s.replace("|", "\\|").replace("\n", " ")

        lines.append(f"| {c.source} | {cell(c.claim)} | {cell(c.document_value)} | {cell(c.measured)} | **{c.verdict}** |")
    return "\n".join(lines) + "\n"


__all__.append("claims_table_md")

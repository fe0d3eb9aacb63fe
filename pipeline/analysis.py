"""Findings and events as pandas DataFrames: the forensics API.

``scan`` runs the engine (the same prefilter, grammars and detector as ``logwarden scan``)
and returns the findings as a DataFrame. ``read_events`` returns every parsed line, read
by the engine's bulk path (:mod:`pipeline.bulk`). The frames' layout (see
:data:`EVENT_COLUMNS`, :data:`FINDING_COLUMNS`) is :mod:`pipeline.schema`'s:

* times are tz-aware (``datetime64[ns, tz]``), in the zone asked for (default: the
  machine's), missing times are ``NaT``;
* ``host``, ``program``, ``rule``, ``format``, ``source`` and ``level`` are categoricals;
  ``severity`` is an ordered categorical ``info < low < medium < high < critical``;
* a finding's captured ``fields`` stay one column of dicts (each rule captures different
  names); :func:`expand_fields` turns them into columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, overload

import pandas as pd

from pipeline.bulk import EventReader, ProgressFn
from pipeline.detection.loader import load_rules
from pipeline.detection.model import Rule
from pipeline.engine import Engine, ScanOptions, ScanStats
from pipeline.errors import Problem
from pipeline.model import Finding
from pipeline.progress import terminal_bar
from pipeline.schema import (
    EVENT_COLUMNS,
    FINDING_COLUMNS,
    SEVERITY_DTYPE,
    ZoneArg,
    empty_findings,
    events_frame,
    findings_frame,
)
from pipeline.schema import finish_events as _finish_events
from pipeline.schema import zone_of as _zone
from pipeline.timeinfer import local_zone, parse_when

if TYPE_CHECKING:
    from pipeline.context import Context
    from pipeline.sources.journal import JournalSpec

__all__ = [
    "EVENT_COLUMNS",
    "FINDING_COLUMNS",
    "SEVERITY_DTYPE",
    "Scan",
    "ZoneArg",
    "empty_findings",
    "events_frame",
    "expand_fields",
    "findings_frame",
    "read_events",
    "scan",
]

TimeArg = datetime | str | None
PathsArg = str | Path | Sequence[str | Path]


# -- arguments -------------------------------------------------------------------------------


def _when(value: TimeArg, zone: tzinfo) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    return parse_when(value, zone)


def _paths(paths: PathsArg) -> list[str]:
    if isinstance(paths, str | Path):
        return [str(paths)]
    return [str(p) for p in paths]


def _options(
    since: TimeArg, until: TimeArg, tz: ZoneArg, year: int | None, fmt: str | None
) -> ScanOptions:
    zone = _zone(tz)
    return ScanOptions(
        since=_when(since, zone), until=_when(until, zone), year=year, tz=zone, format=fmt
    )


def _rules(rules: Sequence[Rule] | PathsArg | None, builtin: bool) -> list[Rule]:
    if rules is None:
        return load_rules(builtin=builtin)
    if isinstance(rules, str | Path):
        return load_rules([rules], builtin=builtin)
    items = list(rules)
    if all(isinstance(r, Rule) for r in items):
        return [r for r in items if isinstance(r, Rule)]
    return load_rules([str(r) for r in items if not isinstance(r, Rule)], builtin=builtin)


def expand_fields(findings: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """The frame with each captured field as a column of its own (missing: ``NaN``)."""
    extra = pd.DataFrame(list(findings["fields"]), index=findings.index)
    extra.columns = [f"{prefix}{c}" for c in extra.columns]
    return findings.drop(columns=["fields"]).join(extra)


@overload
def read_events(
    paths: PathsArg,
    *,
    since: TimeArg = ...,
    until: TimeArg = ...,
    tz: ZoneArg = ...,
    year: int | None = ...,
    input_format: str | None = ...,
    batch_size: None = ...,
    bulk: bool = ...,
    progress: ProgressFn | None = ...,
) -> pd.DataFrame: ...
@overload
def read_events(
    paths: PathsArg,
    *,
    since: TimeArg = ...,
    until: TimeArg = ...,
    tz: ZoneArg = ...,
    year: int | None = ...,
    input_format: str | None = ...,
    batch_size: int,
    bulk: bool = ...,
    progress: ProgressFn | None = ...,
) -> Iterator[pd.DataFrame]: ...
def read_events(
    paths: PathsArg,
    *,
    since: TimeArg = None,
    until: TimeArg = None,
    tz: ZoneArg = None,
    year: int | None = None,
    input_format: str | None = None,
    batch_size: int | None = None,
    bulk: bool = True,
    progress: ProgressFn | None = None,
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Every parsed line of the inputs as a DataFrame (columns :data:`EVENT_COLUMNS`).

    ``paths`` are files, directories, globs (as for ``logwarden scan``). Lines no grammar
    reads, comments and blank lines are counted, not returned. ``since``/``until`` keep the
    lines in ``[since, until)`` (lines without a time are then left out). With
    ``batch_size``, an iterator of frames of about that many rows each (whole chunks), so
    inputs larger than memory can be processed in a loop. ``bulk=False`` reads every line
    through the grammars (the reference the bulk path equals).
    """
    options = _options(since, until, tz, year, input_format)
    zone = options.tz or local_zone()
    if batch_size is None:
        # one frame: a bar on a terminal unless the caller follows progress itself
        with terminal_bar("reading", quiet=progress is not None) as bar:
            reader = EventReader(_paths(paths), options, bulk=bulk, progress=progress or bar)
            parts = [p for p in reader.chunks() if len(p)]
        if not parts:
            return events_frame([], tz=zone)
        return _finish_events(pd.concat(parts, ignore_index=True), zone)
    reader = EventReader(_paths(paths), options, bulk=bulk, progress=progress)
    return _batches(reader, batch_size, zone)


def _batches(reader: EventReader, size: int, zone: tzinfo) -> Iterator[pd.DataFrame]:
    pending: list[pd.DataFrame] = []
    rows = 0
    for part in reader.chunks():
        if not len(part):
            continue
        pending.append(part)
        rows += len(part)
        if rows >= size:
            yield _finish_events(pd.concat(pending, ignore_index=True), zone)
            pending, rows = [], 0
    if pending:
        yield _finish_events(pd.concat(pending, ignore_index=True), zone)


@dataclass
class Scan:
    """The result of :func:`scan`: findings as a DataFrame plus the scan's counts."""

    findings: pd.DataFrame
    stats: ScanStats
    problems: list[Problem]
    rules: list[Rule]
    #: the findings as :class:`~pipeline.model.Finding` values (for stores and reports)
    objects: list[Finding]
    paths: list[str]
    started: datetime
    finished: datetime

    @property
    def counts(self) -> dict[str, object]:
        return self.stats.as_dict()

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def report_html(
        self, title: str = "logwarden report", context: int | Mapping[str, Context] | None = None
    ) -> str:
        """A self-contained HTML report (see :mod:`pipeline.report`). With ``context`` N, each
        finding shows the N lines before and after its own, read from the inputs again (or
        give what :func:`pipeline.context.finding_context` returned for these findings)."""
        from pipeline.report import render_report

        if isinstance(context, int):
            from pipeline.context import finding_context

            lines: Mapping[str, Context] | None = finding_context(self.objects, context)
        else:
            lines = context
        return render_report(
            self.findings,
            self.rules,
            counts=self.counts,
            paths=self.paths,
            problems=self.problems,
            title=title,
            context=lines,
        )

    def to_sqlite(self, path: str | Path) -> int:
        """Append the findings and a ``scans`` row to a SQLite store; the scan's id."""
        from pipeline.store.sqlite import save_scan

        return save_scan(
            path,
            self.objects,
            paths=self.paths,
            started=self.started,
            finished=self.finished,
            counts=self.counts,
        )

    def to_parquet(self, directory: str | Path) -> int:
        """Append the findings to a Parquet dataset under ``directory/findings``."""
        from pipeline.store.parquet import write_findings

        return write_findings(directory, self.findings)

    def _repr_html_(self) -> str:
        s = self.stats
        counts = (
            f"{s.files} files, {s.lines:,} lines, {s.candidates:,} candidates, "
            f"{s.parsed:,} parsed, {sum(s.unparsed.values()):,} candidates unparsed, "
            f"{s.findings} findings"
        )
        by_sev = self.findings["severity"].value_counts().sort_index(ascending=False)
        sev = ", ".join(f"{k}: {v}" for k, v in by_sev.items() if v)
        shown = self.findings.drop(columns=["fields", "key", "tags"])
        table = shown.to_html(max_rows=50, index=False, na_rep="-", escape=True)
        return (
            f"<div><p><b>logwarden scan</b>: {escape(counts)}"
            + (f"<br>by severity: {escape(sev)}" if sev else "")
            + f"</p>{table}</div>"
        )

    def __repr__(self) -> str:
        s = self.stats
        return f"<Scan {s.files} files, {s.lines} lines, {len(self.findings)} findings>"


def scan(
    paths: PathsArg,
    rules: Sequence[Rule] | PathsArg | None = None,
    *,
    since: TimeArg = None,
    until: TimeArg = None,
    tz: ZoneArg = None,
    year: int | None = None,
    input_format: str | None = None,
    builtin_rules: bool = True,
    workers: int | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    host: str | None = None,
    hosts: Sequence[tuple[str, str]] = (),
    journals: Sequence[JournalSpec] = (),
) -> Scan:
    """Scan inputs with the rules (default: the built-in pack) as ``logwarden scan`` does.

    ``rules`` is a list of :class:`~pipeline.detection.model.Rule`, or rule directories /
    files loaded next to the built-in pack (without it when ``builtin_rules=False``).
    ``since``/``until`` are datetimes or ISO 8601 text (naive ones in ``tz``); ``tz`` is the
    zone of local-time logs and of the frame's times (default: the machine's).
    ``workers`` (0: one per CPU; unset: 1, on Dask one per CPU), ``engine="dask"`` and
    ``scheduler`` are ``scan``'s ``--workers``, ``--engine`` and ``--scheduler``; the
    findings are the same either way. ``host`` is ``--host``; ``hosts`` (path or glob,
    host) pairs name the host per input, as a config's ``paths`` entries do; ``journals``
    are systemd journal reads scanned after the paths (``--journal``).
    """
    from pipeline.parallel import runner_for

    started = datetime.now(UTC)
    loaded = _rules(rules, builtin_rules)
    options = replace(_options(since, until, tz, year, input_format), host=host, hosts=tuple(hosts))
    inputs = _paths(paths)
    runner = runner_for(workers, engine, scheduler)
    result = Engine(loaded, options).scan(inputs, runner=runner, journals=journals)
    return Scan(
        findings=findings_frame(result.findings, tz=options.tz),
        stats=result.stats,
        problems=result.problems,
        rules=loaded,
        objects=list(result.findings),
        paths=inputs,
        started=started,
        finished=datetime.now(UTC),
    )

"""The ``logwarden`` command line: a thin layer over the engine. Only this module prints or exits.

Exit status: 0 success; 1 findings at or above ``--fail-on`` (scan), failing rule tests,
a notifier that failed ``notify test``, or ``watch`` stopped while a write still failed;
2 usage errors, missing inputs, invalid rules, an unusable or locked state database, and a
finding or line ``show`` cannot find; 3 ``scan`` was incomplete: an input could not be read,
or notifications were left undelivered (a line on stderr says which, also with ``-q``).
``status``: 0 the daemon runs, 1 it is stalled (alive, but no status record for a while),
2 the state directory has no state database, 3 it is not running or no daemon has run here
(a state database without a status record).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from pipeline import __version__
from pipeline.errors import Location, LogwardenError
from pipeline.model import Finding, Severity

# Arrow's own allocator keeps the memory a block's columns used for the next one; the C
# library's gives most of it back (the same speed, tens of MB less at the peak of a scan).
# Read by pyarrow when it is first imported; a value set by the user wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# Everything heavier (rich, the engine, the rule loader, the grammars, pandas) is imported
# in the commands that use it, so that --version and --help start at once.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from pipeline.config import WatchConfig
    from pipeline.context import Context
    from pipeline.detection.model import Rule
    from pipeline.engine import Engine, ScanOptions, ScanResult, ScanStats
    from pipeline.imports.logcheck import LogcheckMatcher
    from pipeline.model import Event
    from pipeline.resume import Resume
    from pipeline.sources.journal import JournalSpec
    from pipeline.state import StateDB

F = TypeVar("F", bound=Callable[..., Any])

#: what ``scan`` reads when no PATH is given: Debian's usual logs and their rotations
DEFAULT_PATHS = (
    "/var/log/syslog*",
    "/var/log/mail.log*",
    "/var/log/apache2/error.log*",
)
#: rows per Parquet file written by ``scan --parquet DIR --events``
EVENT_BATCH = 500_000
#: how long ``scan --notify`` keeps retrying before it leaves the rest pending
NOTIFY_WAIT = 30.0
#: exit status of a ``scan`` that could not read an input or deliver every notification
EXIT_INCOMPLETE = 3
#: problem kinds that mean an input (or part of one) could not be read at all
UNREAD_KINDS = ("unreadable", "read-error", "journal-error")
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c not in (0x09,)}


def visible(text: str | None) -> str:
    """Log text made safe for a terminal: control characters shown as ``\\xNN``."""
    return "" if text is None else text.translate(_CONTROL)


@functools.cache
def _err_console() -> Console:
    """stderr's console: one, so that lines printed under a progress bar go above it."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _console(out: TextIO | None = None) -> Console:
    """A console for tables: the terminal's width, or a wide fixed one when piped."""
    from rich.console import Console

    out = out or sys.stdout
    tty = out.isatty()
    return Console(file=out, highlight=False, soft_wrap=False, width=None if tty else 200)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"logwarden: error: {message}", err=True)
    sys.exit(code)


# -- one vocabulary of options -------------------------------------------------------------
#
# An option that more than one command takes is defined here, once: the same name, short
# flag, metavar and help everywhere. A command may only change how the value is taken
# (default, repeatable, type), never how it is shown; tests/test_cli.py checks the tree.

#: ``--format`` names: the same name for the same kind of output on every command (``jsonl``
#: and ``json`` both name a stream of JSON objects, one a line; ``digest`` is scan's and
#: report's summary by rule and host)
FORMAT_NAMES = ("digest", "table", "jsonl", "json", "csv")
#: what a shared option's user may set for itself
_LOCAL = frozenset({"default", "multiple", "show_default", "type"})


def shared_option(*decls: str, **attrs: Any) -> Callable[..., Callable[[F], F]]:
    """A shared option's definition; call it (with local settings) to get the decorator."""

    def make(**local: Any) -> Callable[[F], F]:
        if not set(local) <= _LOCAL:
            raise TypeError(f"{decls[-1]}: only {sorted(_LOCAL)} are set per command")
        return click.option(*decls, **{**attrs, **local})

    return make


def _all(*options: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for opt in reversed(options):
            func = opt(func)
        return func

    return apply


rules_option = shared_option(
    "--rules",
    "rule_dirs",
    multiple=True,
    type=click.Path(),
    metavar="DIR",
    help="Also load the YAML rules in DIR (a directory or a file); repeatable.",
)
no_builtin_rules_option = shared_option(
    "--no-builtin-rules",
    is_flag=True,
    help="Leave out the built-in rule pack (use only --rules).",
)
_WHEN = (
    "ISO 8601 (2026-11-30, 2026-11-30T08:00) or relative as journalctl takes it (-2h, "
    "-1h30min, +1d, now, today, yesterday); watch: on the first run only."
)
since_option = shared_option(
    "--since", metavar="TIME", help=f"Only lines at or after TIME: {_WHEN}"
)
until_option = shared_option("--until", metavar="TIME", help=f"Only lines before TIME: {_WHEN}")
year_option = shared_option(
    "--year",
    type=click.IntRange(1, 9999),
    metavar="Y",
    help="Year of the first year-less syslog line (default: from the file's mtime).",
)
tz_option = shared_option(
    "--tz",
    metavar="TZ",
    help="Zone of local-time logs, e.g. Europe/Berlin (default: this machine's).",
)
input_format_option = shared_option(
    "--input-format",
    metavar="NAME",
    help="Parse every input as this format instead of sniffing it.",
)
output_option = shared_option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write to FILE instead of standard output (report: the HTML file, default "
    "report.html; watch: appended, one JSON object per finding).",
)
journal_option = shared_option(
    "--journal",
    is_flag=True,
    help="Also read the systemd journal: this machine's, or that of --journal-directory / "
    "--journal-file (watch: a directory). Without PATH, only the journal is read (watch: "
    "the config's paths as well).",
)
journal_directory_option = shared_option(
    "--journal-directory",
    "journal_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="Read the journal files in DIR (journalctl --directory); repeatable (watch: once); "
    "implies --journal.",
)
journal_file_option = shared_option(
    "--journal-file",
    "journal_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="Read this journal file; repeatable, the files are read together, interleaved by "
    "time (journalctl --file); implies --journal.",
)
config_option = shared_option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="A YAML config file (watch's settings): its rules, tz, hosts and min_severity apply "
    "where this command has them, and its notifiers on watch and scan (report sends "
    "nothing); options given here win. rules validate checks it, notify test tests its "
    "notifiers.",
)
notify_option = shared_option(
    "--notify",
    "notify_urls",
    multiple=True,
    metavar="URL",
    help="Notify this apprise URL of the findings, besides --config's notifiers; repeatable.",
)
host_option = shared_option(
    "--host",
    metavar="NAME",
    help="The host of lines that carry none (Apache error logs), for paths without a host "
    "of their own in --config. Without it, such lines are grouped per rotation set and "
    "their findings show no host.",
)
min_severity_option = shared_option(
    "--min-severity",
    type=click.Choice([str(s) for s in Severity]),
    metavar="LEVEL",
    help="Show, write, report and notify only findings at or above this severity (scan's "
    "--store, --parquet and --fail-on, and watch's state database, still see all).",
)
logcheck_option = shared_option(
    "--logcheck",
    "logcheck_dir",
    is_flag=False,
    flag_value="/etc/logcheck",
    default=None,
    metavar="[DIR]",
    help="Also judge every line with logcheck's rules from DIR (default /etc/logcheck): "
    "cracking.d critical, violations.d high, lines no ignore.d pattern explains low "
    "(folded per host, program and hour).",
)
logcheck_level_option = shared_option(
    "--logcheck-level",
    type=click.Choice(["workstation", "server", "paranoid"]),
    default=None,
    help="Which ignore.d.<level> directories explain lines (default server; a level "
    "includes the stricter ones).",
)
state_dir_option = shared_option(
    "--state-dir",
    metavar="DIR",
    help="Where the daemon's state database lives (default: /var/lib/logwarden).",
)
state_option = shared_option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="A state database (SQLite). scan continues detection state (open windows, "
    "suppression, joins) from it and saves it back with how far each file was read, so the "
    "next scan reads only lines not read before (also after rotation or compression) and "
    "goes on where this one ended (when it notifies, by --notify or --config, it "
    "also keeps the findings and the outbox there); show looks KEY up in the findings of "
    "such a file or of the daemon's state.sqlite.",
)
store_option = shared_option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False),
    metavar="FILE.sqlite",
    help="A SQLite store of findings (the daemon's schema): scan appends its findings and "
    "counts to it; show looks KEY up in it.",
)
quiet_option = shared_option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print only errors on stderr: no counts, progress bar, summaries or notices.",
)
context_option = shared_option(
    "-C",
    "--context",
    "context_lines",
    type=click.IntRange(min=0),
    metavar="N",
    help="Show each finding's lines with the N lines before and after them, read from the "
    "logs again (scan: with --format jsonl; report --from-store: a SQLite store).",
)


def rules_options(func: F) -> F:
    """``--rules DIR`` (repeatable) and ``--no-builtin-rules``, shared by every rule user."""
    return _all(rules_option(), no_builtin_rules_option())(func)


def fail2ban_options(func: F) -> F:
    """``--fail2ban [DIR]`` (the enabled jails) and ``--fail2ban-filter SPEC`` (one filter)."""
    func = click.option(
        "--fail2ban-filter",
        "f2b_filters",
        multiple=True,
        metavar="NAME[PARAMS]",
        help="Also run this fail2ban filter of the --fail2ban DIR (default /etc/fail2ban), "
        "e.g. 'sshd[mode=aggressive]'; each failure is a finding; repeatable.",
    )(func)
    func = click.option(
        "--fail2ban",
        "f2b_dir",
        is_flag=False,
        flag_value="/etc/fail2ban",
        default=None,
        metavar="[DIR]",
        help="Also run the enabled jails of this fail2ban configuration (default "
        "/etc/fail2ban): jail.conf, jail.local, jail.d/*, their filters.",
    )(func)
    return func


def _with_fail2ban(
    rules: list[Rule], f2b_dir: str | None, f2b_filters: tuple[str, ...]
) -> list[Rule]:
    """``rules`` plus the jails of ``f2b_dir`` and the ``f2b_filters``."""
    if not f2b_dir and not f2b_filters:
        return rules
    from pipeline.imports.f2brules import fail2ban_rules

    try:
        return [*rules, *fail2ban_rules(f2b_dir, f2b_filters)]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fail2ban-filter") from None


def time_options(func: F) -> F:
    return _all(since_option(), until_option(), year_option(), tz_option(), input_format_option())(
        func
    )


def journal_options(func: F) -> F:
    return _all(journal_option(), journal_directory_option(), journal_file_option())(func)


def deprecated_dir(command: str, directory: str | None, rule_dirs: Sequence[str]) -> list[str]:
    """The old positional DIR of ``rules validate|test|list``: still read as ``--rules DIR``,
    with a one-line notice on stderr."""
    if directory is None:
        return list(rule_dirs)
    click.echo(
        f"logwarden: notice: `{command} DIR` is deprecated; use `{command} --rules DIR`",
        err=True,
    )
    return [directory, *rule_dirs]


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LogwardenError as exc:
            fail(str(exc))
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(0)

    return wrapper  # type: ignore[return-value]


def _options(
    since: str | None,
    until: str | None,
    year: int | None,
    tz: str | None,
    input_format: str | None,
) -> ScanOptions:
    from pipeline.engine import ScanOptions
    from pipeline.grammars import FORMATS
    from pipeline.timeinfer import parse_when, parse_zone

    zone = parse_zone(tz)
    if input_format is not None and input_format not in FORMATS:
        raise click.BadParameter(
            f"unknown format {input_format!r}; known: {', '.join(sorted(FORMATS))}",
            param_hint="--input-format",
        )
    return ScanOptions(
        since=parse_when(since, zone) if since else None,
        until=parse_when(until, zone) if until else None,
        year=year,
        tz=zone,
        format=input_format,
    )


def writable_file(path: str) -> None:
    """Exit 2 with a clear message unless ``path`` can be written (created if missing)."""
    existed = os.path.exists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        fail(f"{path}: cannot write: {exc.strerror}")
    if not existed:
        os.unlink(path)


def writable_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        fail(f"{path}: cannot create the directory: {exc.strerror}")
    if not os.access(path, os.W_OK):
        fail(f"{path}: cannot write into this directory")


def _default_paths() -> list[str]:
    import glob

    found = [p for pattern in DEFAULT_PATHS for p in sorted(glob.glob(pattern))]
    if not found:
        fail(
            "no PATH given and none of " + ", ".join(DEFAULT_PATHS) + " exists; on a system "
            "that logs only to the systemd journal, use --journal"
        )
    return [os.path.dirname(p) + "/" + os.path.basename(p) for p in found]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__)
def main() -> None:
    """logwarden: find known failure signatures in Linux server logs.

    Reads syslog (traditional, RFC 3339, RFC 5424), mail.log, Apache error logs and
    journal JSON, plain or compressed, and reports what the YAML rules detect.
    """


# -- scan ---------------------------------------------------------------------------------


def _write_counts(stats: ScanStats, result: ScanResult, console: Console) -> None:
    for line in _counts_texts(stats, result):
        console.print(line)


def _counts_texts(stats: ScanStats, result: ScanResult) -> list[Text]:
    """The counts line, then the problems with their locations."""
    from rich.text import Text

    unparsed = sum(stats.unparsed.values())
    parts = [
        f"{stats.files} files",
        f"{stats.lines} lines",
        f"{stats.candidates} candidates",
        f"{stats.parsed} parsed",
        f"{unparsed} candidates unparsed"
        + (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(stats.unparsed.items())) + ")"
            if unparsed
            else ""
        ),
        f"{stats.findings} findings",
    ]
    if stats.comments:
        parts.append(f"{stats.comments} comment lines")
    if stats.out_of_range:
        parts.append(f"{stats.out_of_range} outside --since/--until")
    if stats.duplicates:
        parts.append(f"{stats.duplicates} copies from another file set aside")
    if stats.seconds > 0:
        parts.append(f"{stats.lines / stats.seconds:,.0f} lines/s")
    lines = [Text("counts: " + ", ".join(parts))]
    if stats.problems:
        lines.append(
            Text(
                "problems: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.problems.items())),
                style="yellow",
            )
        )
        for p in result.problems:
            lines.append(Text(f"  {visible(str(p))}", style="yellow"))
        if result.problems_omitted:
            lines.append(Text(f"  ... and {result.problems_omitted} more", style="yellow"))
    return lines


class _Bar:
    """A rich progress bar over a scan (bytes, lines/s, ETA), or nothing.

    A context: the bar stays up after the scan, as ``writing N findings`` (:meth:`status`),
    until the block ends, so the screen does not stand still while output is prepared.
    """

    def __init__(self, engine: Engine, enabled: bool) -> None:
        self.engine = engine
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Bar:
        if not self.enabled:
            return self
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=_err_console(),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("scanning", total=None, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Take the bar off the screen (again: nothing)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        bar, task = self._progress, self._task
        if bar is None:
            return fn(*args, **kwargs)
        import time

        started = time.monotonic()

        def update(done: int, total: int, lines: int) -> None:
            rate = lines / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=total or None, rate=f"{rate:,.0f} lines/s")

        self.engine.progress = update
        try:
            return fn(*args, **kwargs)
        finally:
            self.engine.progress = None

    def status(self, text: str) -> None:
        """Replace the bar's label (the bytes read stay shown)."""
        if self._progress is not None:
            self._progress.update(self._task, description=text, rate="")


def progress_bar(engine: Engine, quiet: bool) -> _Bar:
    """A bar on a terminal; none with --quiet or when stderr is not a terminal."""
    return _Bar(engine, not quiet and sys.stderr.isatty())


CSV_COLUMNS = (
    "timestamp",
    "severity",
    "rule",
    "title",
    "host",
    "program",
    "source",
    "message",
    "count",
    "last_seen",
)


#: what ``scan --format`` takes; ``json`` is ``jsonl``
OUTPUT_FORMATS = FORMAT_NAMES


def console_lines(
    findings: Sequence[Finding],
    fmt: str,
    width: int,
    tz: tzinfo,
    *,
    details: bool = False,
    max_lines: int | None = None,
    shown: str = "",
) -> list[Text]:
    """The digest (``fmt`` digest), then with ``details`` or ``fmt`` table the findings."""
    from rich.text import Text

    from pipeline.output.console import render_digest, render_table
    from pipeline.output.digest import digest

    lines: list[Text] = []
    if fmt == "digest":
        lines = render_digest(
            digest(findings), width, tz, max_lines=None if details else max_lines, shown=shown
        )
    if fmt == "table" or (details and findings):
        if lines:
            lines.append(Text(""))
        lines.extend(render_table(findings, width, tz))
    return lines


def _screen_lines(
    findings: Sequence[Finding],
    fmt: str,
    tz: tzinfo,
    details: bool,
    shown: str,
    counts: Sequence[Text],
) -> list[Text]:
    """Output for this terminal: the digest is kept to one screen, with the counts printed
    after it and a line each for the command and the next prompt."""
    from pipeline.output.console import lines_of

    console = _console()
    width = console.width
    below = 2 + sum(lines_of(t.plain, width) for t in counts)
    return console_lines(
        findings,
        fmt,
        width,
        tz,
        details=details,
        max_lines=max(console.height - below, 1),
        shown=shown,
    )


def print_lines(lines: Iterable[Text], console: Console) -> None:
    """Lines laid out for ``console``'s width, in one print (one per line is slower)."""
    from rich.text import Text

    console.print(Text("\n").join(lines), no_wrap=True, overflow="ellipsis", crop=True)


def write_findings(
    findings: Iterable[Finding],
    fmt: str,
    out: TextIO,
    context: Mapping[str, Context] | None = None,
    *,
    tz: tzinfo | None = None,
    details: bool = False,
    shown: str = "",
) -> None:
    # the block path's rows are written from their columns (pipeline.block.TableView)
    write_rows = getattr(findings, "write_jsonl", None)
    if fmt in ("jsonl", "json") and context is None and write_rows is not None:
        write_rows(out)
    elif fmt in ("jsonl", "json"):
        encode = json.JSONEncoder(ensure_ascii=False).encode
        for f in findings:
            d = f.as_dict()
            if context is not None:
                _add_context(d, context[f.key])
            out.write(encode(d) + "\n")
    elif fmt == "csv":
        w = csv.writer(out)
        # on a terminal, control characters in log text could drive it: show them escaped
        tty = out.isatty()
        w.writerow([*CSV_COLUMNS, "fields"])
        for f in findings:
            d = f.as_dict()
            row = [
                *(d[c] if d[c] is not None else "" for c in CSV_COLUMNS),
                json.dumps(d["fields"], ensure_ascii=False),
            ]
            w.writerow([visible(str(x)) if tty else x for x in row])
    else:  # digest, table
        console = _console(out)
        rows = findings if isinstance(findings, Sequence) else list(findings)
        lines = console_lines(rows, fmt, console.width, tz or UTC, details=details, shown=shown)
        print_lines(lines, console)


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@rules_options
@fail2ban_options
@click.option(
    "--format",
    "out_format",
    type=click.Choice(OUTPUT_FORMATS),
    default="digest",
    show_default=True,
    help="How findings are written: digest (one row per rule and host), table (one row per "
    "finding), jsonl or json (one object per line), csv.",
)
@click.option(
    "--details",
    is_flag=True,
    help="After the digest, the findings themselves (as --format table).",
)
@min_severity_option()
@output_option()
@time_options
@click.option(
    "--fail-on",
    type=click.Choice([str(s) for s in Severity]),
    help="Exit 1 when a finding at or above this severity exists.",
)
@state_option()
@journal_options
@config_option()
@notify_option()
@click.option("--dry-run", is_flag=True, help="With --notify: print what would be sent.")
@click.option(
    "--notify-wait",
    type=click.FloatRange(0, 3600),
    default=NOTIFY_WAIT,
    show_default=True,
    metavar="SECONDS",
    help="With --notify: how long to keep retrying before the rest counts as undelivered.",
)
@store_option()
@click.option(
    "--parquet",
    "parquet_dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Append the findings to a Parquet dataset in DIR, partitioned by date (needs pyarrow).",
)
@click.option("--events", is_flag=True, help="With --parquet: also write every parsed line.")
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=0),
    help="Processes reading the inputs (large plain files are cut into ranges); 0: one per "
    "usable CPU. Default: 1, with --engine dask one per usable CPU. Findings are the same "
    "for any number.",
)
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="dask: read the inputs as Dask tasks, on a local cluster of --workers processes or "
    "on --scheduler's cluster (needs logwarden[dask]).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="A running dask.distributed scheduler (tcp://host:8786); implies --engine dask. Its "
    "workers must read the same paths, or use fsspec URLs (s3://..., file://...).",
)
@host_option()
@logcheck_option()
@logcheck_level_option()
@quiet_option()
@context_option()
@handle_errors
def scan(
    paths: tuple[str, ...],
    rule_dirs: tuple[str, ...],
    no_builtin_rules: bool,
    f2b_dir: str | None,
    f2b_filters: tuple[str, ...],
    out_format: str,
    details: bool,
    min_severity: str | None,
    output: str | None,
    since: str | None,
    until: str | None,
    year: int | None,
    tz: str | None,
    input_format: str | None,
    fail_on: str | None,
    state_path: str | None,
    journal: bool,
    journal_dirs: tuple[str, ...],
    journal_files: tuple[str, ...],
    config_path: str | None,
    notify_urls: tuple[str, ...],
    dry_run: bool,
    notify_wait: float,
    store_path: str | None,
    parquet_dir: str | None,
    events: bool,
    workers: int | None,
    engine_name: str,
    scheduler: str | None,
    host: str | None,
    logcheck_dir: str | None,
    logcheck_level: str | None,
    quiet: bool,
    context_lines: int | None,
) -> None:
    """Scan log files for known failure signatures (batch forensics).

    PATH is a file, a directory (walked, formats sniffed per file), a glob or - for
    stdin. Rotated sets (mail.log.2.gz, mail.log.1, mail.log) are read oldest first,
    also when given as separate PATHs, and the sets in an order of their own, so the
    findings do not depend on the order of the PATHs; .gz, .bz2 and .xz are read
    transparently. Without PATH: Debian's syslog, mail.log and Apache error log with
    their rotations. A line found in more than one set (mail.log and syslog) counts once.

    --journal scans the systemd journal as well; its findings' source is
    journal:local, journal:DIR or journal:FILE[,FILE...] with the entry's position in
    that read as the line.

    The counts on stderr: lines read, the candidates the prefilter selected (only
    those are parsed), how many candidates parsed and how many no grammar could read
    ("candidates unparsed"; lines that are not candidates are not parsed, so not
    counted there), findings.

    --config FILE (watch's config) gives a cron scan the daemon's notifiers (with their
    severity floors, routes and limits), min_severity, rules, tz and hosts; options given
    here win.
    """
    from pipeline.detection.loader import load_rules
    from pipeline.engine import Engine

    cfg = _load_config(config_path)
    rule_dirs, no_builtin_rules, tz, host = _with_config(cfg, rule_dirs, no_builtin_rules, tz, host)
    if min_severity is None and cfg is not None:
        min_severity = cfg.min_severity
    rules = load_rules(list(rule_dirs), builtin=not no_builtin_rules)
    rules = _with_fail2ban(rules, f2b_dir, f2b_filters)
    if not rules and not logcheck_dir:
        fail("no rules loaded (--no-builtin-rules without --rules?)")
    options = _host_options(_options(since, until, year, tz, input_format), host, cfg)
    engine = Engine(rules, options, logcheck=_logcheck(logcheck_dir, logcheck_level))
    journals = _journal_specs(journal, journal_dirs, journal_files)
    inputs = list(paths) if paths or journals else _default_paths()
    if events and not parquet_dir:
        raise click.UsageError("--events needs --parquet DIR")
    if details and out_format != "digest":
        raise click.UsageError(f"--details follows the digest: not with --format {out_format}")
    if events and ("-" in inputs or journals):
        # the events are read in a second pass over the inputs
        raise click.UsageError("--events reads the inputs again: not with - or --journal")
    if context_lines is not None:
        _check_context(out_format, inputs, bool(journals))
    # fail before a long scan, not after it, when a result cannot be written
    if output:
        writable_file(output)
    if parquet_dir:
        writable_dir(parquet_dir)
    from pipeline.parallel import runner_for

    runner = runner_for(workers, engine_name, scheduler)
    started = datetime.now(UTC)
    floor = Severity.parse(min_severity) if min_severity else None
    # closed by the click context also when the scan fails, else after the output is ready
    bar = click.get_current_context().with_resource(progress_bar(engine, quiet))
    lock = None
    if state_path:
        from pipeline.state import StateDB, StateLock

        # the same lock as the daemon: one writer of a state database at a time
        lock = StateLock(state_path).acquire()
        with StateDB(state_path) as db:
            detector = engine.new_detector()
            saved = db.load_detector("scan")
            if saved is not None:
                detector.restore(saved)
            engine.resume = _load_resume(db)
            result = bar.run(
                engine.scan, inputs, detector=detector, journals=journals, runner=runner
            )
            _save_resume(db, detector.snapshot(), engine.resume, quiet)
    else:
        result = bar.run(engine.scan, inputs, journals=journals, runner=runner)
    findings: Sequence[Finding]
    shown: Sequence[Finding]
    sorted_view = getattr(result.findings, "sorted_view", None)
    if sorted_view is not None:  # the block path's rows (pipeline.block), in the same order
        view = sorted_view()
        findings, shown = view, view.at_least(floor)
    else:
        findings = sorted(
            result.findings,
            key=lambda f: (
                f.timestamp.timestamp() if f.timestamp else float("-inf"),
                f.source,
                f.line,
            ),
        )
        shown = findings if floor is None else [f for f in findings if f.severity >= floor]
    above = f"at or above {floor}" if floor is not None else ""
    context = None
    if context_lines is not None:
        context = _findings_context(shown, context_lines, quiet)
    bar.status(f"writing {len(shown)} findings")
    to_screen = not output and sys.stdout.isatty()
    screen: list[Text] | None = None
    if output:
        with open(output, "w", encoding="utf-8", newline="") as out:
            write_findings(
                shown, out_format, out, context, tz=engine.tz, details=details, shown=above
            )
    elif not to_screen:  # piped: the bar on stderr stays up meanwhile
        write_findings(
            shown, out_format, sys.stdout, context, tz=engine.tz, details=details, shown=above
        )
    elif out_format in ("digest", "table"):  # laid out under the bar, printed at once
        counts = [] if quiet else _counts_texts(result.stats, result)
        screen = _screen_lines(shown, out_format, engine.tz, details, above, counts)
    bar.close()
    if to_screen:
        if screen is not None:
            print_lines(screen, _console())
        else:
            write_findings(shown, out_format, sys.stdout, tz=engine.tz, details=details)
    if not quiet:
        _write_counts(result.stats, result, _err_console())
    if store_path or parquet_dir:
        _store_scan(engine, result, inputs, started, store_path, parquet_dir, events, quiet)
    undelivered = 0
    if notify_urls or (cfg is not None and cfg.notify):
        undelivered = _notify_scan(
            shown,
            rules + engine.imported_rules(),
            notify_urls,
            state_path,
            dry_run,
            quiet,
            notify_wait,
            cfg,
        )
    if lock is not None:
        lock.release()
    if _incomplete(result.stats, undelivered, bool(state_path)):
        sys.exit(EXIT_INCOMPLETE)
    if fail_on and any(f.severity >= Severity.parse(fail_on) for f in findings):
        sys.exit(1)


def _load_config(config_path: str | None) -> WatchConfig | None:
    """``--config FILE``, validated with file:line (as ``watch`` loads it), or None."""
    if not config_path:
        return None
    from pipeline.config import load_config

    return load_config(config_path)


def _with_config(
    cfg: WatchConfig | None,
    rule_dirs: tuple[str, ...],
    no_builtin_rules: bool,
    tz: str | None,
    host: str | None,
) -> tuple[tuple[str, ...], bool, str | None, str | None]:
    """The config's rules, tz and host where the command line gives none."""
    if cfg is None:
        return rule_dirs, no_builtin_rules, tz, host
    return (
        rule_dirs or cfg.rules,
        no_builtin_rules or not cfg.builtin_rules,
        tz or cfg.tz,
        host if host is not None else cfg.host,
    )


def _host_options(options: ScanOptions, host: str | None, cfg: WatchConfig | None) -> ScanOptions:
    """``--host`` checked, and the config's per-path hosts."""
    if host is not None:
        if not host or any(c.isspace() for c in host):
            raise click.BadParameter("a host name, without spaces", param_hint="--host")
        options = replace(options, host=host)
    if cfg is not None and cfg.hosts:
        options = replace(options, hosts=cfg.hosts)
    return options


def _check_context(out_format: str, inputs: Sequence[str], journals: bool) -> None:
    if out_format not in ("jsonl", "json"):
        raise click.UsageError("--context needs --format jsonl (or use logwarden show)")
    if "-" in inputs or journals:
        raise click.UsageError("--context reads the inputs again: not with - or --journal")


def _findings_context(findings: Sequence[Finding], n: int, quiet: bool) -> dict[str, Context]:
    """Each finding's context (one more read of each input with findings); what could not
    be shown is counted and listed on stderr, up to 20 lines."""
    from rich.text import Text

    from pipeline.context import finding_context

    context = finding_context(findings, n)
    problems = [p for c in context.values() for p in c.problems]
    if problems and not quiet:
        err = _err_console()
        err.print(Text(f"context: {len(problems)} lines could not be shown", style="yellow"))
        for p in problems[:20]:
            err.print(Text(f"  {visible(str(p))}", style="yellow"))
        if len(problems) > 20:
            err.print(Text(f"  ... and {len(problems) - 20} more", style="yellow"))
    return context


def _add_context(d: dict[str, Any], ctx: Context) -> None:
    d["context"] = [cl.as_dict() for cl in ctx.lines]
    if ctx.problems:
        d["context_problems"] = [str(p) for p in ctx.problems]


def _logcheck(directory: str | None, level: str | None) -> LogcheckMatcher | None:
    """``--logcheck``: the rule directory's patterns compiled (its problems are the scan's)."""
    if directory is None:
        return None
    from pipeline.imports.logcheck import LogcheckMatcher, LogcheckSet

    return LogcheckMatcher(LogcheckSet.load(directory, level or "server"))


def _load_resume(db: StateDB) -> Resume:
    """What earlier ``scan --state`` runs read of which files."""
    from pipeline.resume import STATE_SOURCE, Resume
    from pipeline.state import StateError

    saved = db.source_states().get(STATE_SOURCE)
    try:
        return Resume.from_state(saved[0] if saved else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(
            f"the positions of scanned files are corrupt ({type(exc).__name__}: {exc})",
            Location(str(db.path)),
        ) from None


def _save_resume(db: StateDB, snapshot: dict[str, Any], resume: Resume, quiet: bool) -> None:
    """Detection state and how far each input was read, in one transaction."""
    from rich.text import Text

    from pipeline.resume import STATE_SOURCE
    from pipeline.state import StateWriteError

    try:
        db.checkpoint(
            detector=("scan", snapshot), sources={STATE_SOURCE: resume.checkpoint()}, findings=[]
        )
    except StateWriteError as exc:
        # before any output: the next run reads the same lines and reports them then
        raise StateWriteError(
            exc.message,
            exc.location or Location(str(db.path)),
            exc.reason,
            exc.free,
            hint="no findings were written; once there is space, the next run reports them",
        ) from None
    if resume.resumed_inputs and not quiet:
        _err_console().print(
            Text(
                f"--state: {resume.skipped_lines} lines of {resume.resumed_inputs} files "
                "read by earlier scans skipped"
            )
        )


def _incomplete(stats: ScanStats, undelivered: int, kept: bool) -> bool:
    """Say on stderr (also with ``-q``) what a scan left undone; True when it left some."""
    unread = {k: stats.problems[k] for k in UNREAD_KINDS if stats.problems.get(k)}
    if unread:
        counts = ", ".join(f"{k}: {v}" for k, v in unread.items())
        click.echo(f"logwarden: error: some input could not be read ({counts})", err=True)
    if undelivered:
        where = "kept in --state for the next run" if kept else "dropped: no --state to keep them"
        click.echo(
            f"logwarden: error: {undelivered} notifications left undelivered ({where})", err=True
        )
    return bool(unread or undelivered)


def _store_scan(
    engine: Engine,
    result: ScanResult,
    inputs: list[str],
    started: datetime,
    store_path: str | None,
    parquet_dir: str | None,
    events: bool,
    quiet: bool,
) -> None:
    """``scan --store`` / ``--parquet``: keep the findings (and events) for later analysis."""
    from rich.text import Text

    from pipeline.analysis import findings_frame

    finished = datetime.now(UTC)
    err = _err_console()
    if store_path:
        from pipeline.store.sqlite import save_scan

        scan_id = save_scan(
            store_path,
            result.findings,
            paths=inputs,
            started=started,
            finished=finished,
            counts=result.stats.as_dict(),
        )
        if not quiet:
            err.print(
                Text(f"stored: scan {scan_id}, {len(result.findings)} findings in {store_path}")
            )
    if parquet_dir:
        from pipeline.analysis import read_events
        from pipeline.store.parquet import write_events, write_findings

        n = write_findings(parquet_dir, findings_frame(result.findings, tz=engine.tz))
        line = f"parquet: {n} findings"
        if events:
            o = engine.options
            frames = read_events(
                inputs,
                since=o.since,
                until=o.until,
                tz=engine.tz,
                year=o.year,
                input_format=o.format,
                batch_size=EVENT_BATCH,
            )
            line += f", {write_events(parquet_dir, frames)} events"
        if not quiet:
            err.print(Text(f"{line} in {parquet_dir}"))


def _journal_specs(
    journal: bool, directories: Sequence[str], files: Sequence[str]
) -> list[JournalSpec]:
    """The journal reads of ``scan``: each directory, the files together, else the local one."""
    from pipeline.sources.journal import JournalSpec

    specs = [JournalSpec(directory=d) for d in directories]
    if files:
        specs.append(JournalSpec(files=tuple(files)))
    if journal and not specs:
        specs.append(JournalSpec())
    return specs


def _notify_scan(
    findings: Sequence[Finding],
    rules: list[Any],
    urls: tuple[str, ...],
    state_path: str | None,
    dry_run: bool,
    quiet: bool,
    wait: float = NOTIFY_WAIT,
    cfg: WatchConfig | None = None,
) -> int:
    """Queue the findings' notifications in an outbox and deliver them (or print them).

    Returns how many were left undelivered."""
    import tempfile

    from rich.text import Text

    from pipeline.notify.notifiers import NotifyError, parse_notifiers
    from pipeline.notify.outbox import Deliverer
    from pipeline.notify.route import router
    from pipeline.state import StateDB

    try:
        if cfg is not None and cfg.source:
            notifiers = parse_notifiers(cfg.notify, cfg.source, urls)
        else:
            notifiers = parse_notifiers([], "--notify", urls)
    except NotifyError as exc:
        fail(str(exc))
    route = router(notifiers, rules)
    err = _err_console()
    if dry_run:
        for f in findings:
            for name, title, body, fmt in route(f):
                masked = next(n.masked for n in notifiers if n.name == name)
                click.echo(f"--- to {masked} ({fmt})\n{title}\n\n{body}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        db_path = state_path or str(Path(tmp) / "outbox.sqlite")
        with StateDB(db_path) as db:
            fresh = db.checkpoint(detector=None, sources={}, findings=findings, route=route)
        deliverer = Deliverer(db_path, notifiers, retry_base=1.0, retry_max=10.0)
        got = deliverer.drain(timeout=wait)
        left = deliverer.pending()
    if not quiet:
        err.print(
            Text(
                f"notifications: {len(fresh)} new findings, {got.sent} sent, "
                f"{got.digests} digests, {got.failed} failed attempts, {left} still pending"
                + (" (kept in --state for the next run)" if left and state_path else ""),
                style="yellow" if left else "",
            )
        )
    return left


# -- report -------------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@rules_options
@time_options
@output_option(default="report.html")
@journal_options
@config_option()
@host_option()
@click.option(
    "--from-store",
    "store",
    type=click.Path(exists=True),
    metavar="STORE",
    help="Report the findings kept in a SQLite store or Parquet directory instead of scanning.",
)
@click.option(
    "--title",
    default="logwarden report",
    show_default=True,
    metavar="TEXT",
    help="The report's title.",
)
@min_severity_option()
@context_option()
@quiet_option()
@handle_errors
def report(
    paths: tuple[str, ...],
    rule_dirs: tuple[str, ...],
    no_builtin_rules: bool,
    since: str | None,
    until: str | None,
    year: int | None,
    tz: str | None,
    input_format: str | None,
    output: str,
    journal: bool,
    journal_dirs: tuple[str, ...],
    journal_files: tuple[str, ...],
    config_path: str | None,
    host: str | None,
    store: str | None,
    title: str,
    context_lines: int | None,
    min_severity: str | None,
    quiet: bool,
) -> None:
    """Write a self-contained HTML report of the findings.

    The report holds counts, a timeline, the findings and the rules' details.

    Scans PATHs (and with --journal the systemd journal) as scan does (without PATH:
    Debian's usual logs), or reads the findings of an earlier scan --store / --parquet
    with --from-store. The file needs no network access to be viewed.
    """
    from pipeline.analysis import scan as scan_frame
    from pipeline.detection.loader import load_rules
    from pipeline.report import render_report

    cfg = _load_config(config_path)
    rule_dirs, no_builtin_rules, tz, host = _with_config(cfg, rule_dirs, no_builtin_rules, tz, host)
    if min_severity is None and cfg is not None:
        min_severity = cfg.min_severity
    rules = load_rules(list(rule_dirs), builtin=not no_builtin_rules)
    options = _host_options(_options(since, until, year, tz, input_format), host, cfg)
    writable_file(output)
    if store and (paths or journal or journal_dirs or journal_files):
        raise click.UsageError("--from-store reports stored findings: not with PATH or --journal")
    if store:
        from pipeline.store import load_findings

        context = None
        if context_lines is not None:
            if Path(store).is_dir():
                raise click.UsageError("--context with --from-store needs a SQLite store")
            from pipeline.store.sqlite import stored_findings

            context = _findings_context(stored_findings(store), context_lines, quiet)
        findings = _at_least(load_findings(store, tz=options.tz), min_severity)
        html = render_report(findings, rules, paths=[store], title=title, context=context)
    else:
        journals = _journal_specs(journal, journal_dirs, journal_files)
        inputs = list(paths) if paths or journals else _default_paths()
        if context_lines is not None:
            _check_context("jsonl", inputs, bool(journals))
        result = scan_frame(
            inputs,
            rules,
            host=options.host,
            hosts=options.hosts,
            journals=journals,
            since=options.since,
            until=options.until,
            tz=options.tz,
            year=options.year,
            input_format=options.format,
        )
        findings = result.findings = _at_least(result.findings, min_severity)
        context = None
        if context_lines is not None:
            context = _findings_context(result.objects, context_lines, quiet)
        html = result.report_html(title=title, context=context)
    Path(output).write_text(html, encoding="utf-8")
    if not quiet:
        click.echo(f"wrote {output}: {len(findings)} findings", err=True)


# -- show ---------------------------------------------------------------------------------


@main.command()
@click.argument("target", metavar="KEY|FILE:LINE")
@context_option(default=3, show_default=True)
@click.option(
    "--findings",
    "findings_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE.jsonl",
    help="Look KEY up in this JSONL file (scan --format jsonl, watch --output); repeatable.",
)
@store_option(multiple=True)
@state_option(multiple=True)
@handle_errors
def show(
    target: str,
    context_lines: int,
    findings_files: tuple[str, ...],
    store_path: tuple[str, ...],
    state_path: tuple[str, ...],
) -> None:
    """Show a finding, or FILE:LINE, with the lines around it.

    The lines are read from the original (possibly compressed) log.
    KEY is a finding's key or a unique start of it (at least 4 hex digits), looked up in
    --findings, --store and --state files. Its own lines (a correlation has several, perhaps in
    several files) are marked with >, runs of lines that do not touch are separated by --.
    A file rotated since the finding is followed into its rotation set (mail.log ->
    mail.log.1 -> mail.log.2.gz). Exits 2 when the finding or one of its lines cannot be
    found (the file is gone, shorter, or no longer holds the line).
    """
    from pipeline.context import Target, find_finding, finding_targets, gather, parse_location

    where = parse_location(target)
    finding = None
    if where is not None:
        targets = [Target(*where)]
    else:
        finding = find_finding(target, findings_files, (*store_path, *state_path))
        targets = finding_targets(finding)
        if not targets:
            fail(f"finding {finding.key} has no log line to show: {visible(finding.message)}")
    (ctx,) = gather([targets], context_lines)
    if finding is not None:
        _show_finding(finding)
    _show_context(ctx)
    for p in ctx.problems:
        click.echo(f"logwarden: error: {visible(str(p))}", err=True)
    if ctx.problems:
        sys.exit(2)


def _show_finding(f: Finding) -> None:
    when = f.timestamp.isoformat() if f.timestamp else "-"
    head = f"{f.severity} {f.rule} {when} {visible(f.host) or '-'} key {f.key}"
    click.echo(click.style(head, bold=True))
    click.echo(f"  {visible(f.title)}")
    click.echo(f"  {visible(f.message)}" + (f" (x{f.count})" if f.count > 1 else ""))
    if f.fields:
        click.echo("  " + "  ".join(f"{k}={visible(v)}" for k, v in sorted(f.fields.items())))


def _show_context(ctx: Context) -> None:
    """grep -C style: a ``==> file <==`` header per file, ``>`` on the own lines, ``--``
    between runs; control characters shown escaped."""
    for recorded, found in ctx.moved:
        click.echo(f"({visible(recorded)} is now {visible(found)}: the file was rotated)")
    width = max((len(str(cl.line)) for cl in ctx.lines), default=1)
    current = None
    for hunk in ctx.hunks():
        if hunk[0].source != current:
            current = hunk[0].source
            click.echo(f"==> {visible(current)} <==")
        else:
            click.echo("--")
        for cl in hunk:
            text = f"{'>' if cl.match else ' '} {cl.line:>{width}}  {visible(cl.text)}"
            click.echo(click.style(text, bold=True) if cl.match else text)


def _at_least(findings: Any, level: str | None) -> Any:
    """The rows of a findings frame at or above ``level`` (all without one)."""
    if level is None:
        return findings
    return findings[findings["severity"] >= level].reset_index(drop=True)


# -- notify -------------------------------------------------------------------------------


@main.group()
def notify() -> None:
    """Check notifiers and the outbox."""


def _notifiers_from(config_path: str | None, urls: tuple[str, ...]) -> list[Any]:
    from pipeline.config import load_config
    from pipeline.notify.notifiers import parse_notifiers

    cfg_entries: tuple[Any, ...] = ()
    source = "--notify"
    if config_path:
        cfg = load_config(config_path)
        cfg_entries, source = cfg.notify, config_path
    return parse_notifiers(cfg_entries, source, urls)


@notify.command("test")
@config_option()
@notify_option()
@click.option("--tag", "tags", multiple=True, metavar="T", help="Only notifiers with this tag.")
@handle_errors
def notify_test(
    config_path: str | None, notify_urls: tuple[str, ...], tags: tuple[str, ...]
) -> None:
    """Send a test message to each notifier; report the results.

    The notifiers are those of --config and --notify; each one's result is printed.
    """
    from pipeline.notify.outbox import apprise_send

    notifiers = _notifiers_from(config_path, notify_urls)
    if tags:
        notifiers = [n for n in notifiers if set(n.tags) & set(tags)]
    if not notifiers:
        fail("no notifiers configured (use --config FILE or --notify URL)")
    failed = 0
    for n in notifiers:
        ok, err = apprise_send(
            n,
            "logwarden test message",
            f"This is a test from logwarden to {n.name}. Findings will arrive like this.\n",
            n.format,
        )
        failed += not ok
        click.echo(
            f"{'ok    ' if ok else 'FAILED'} {n.name}: {n.masked}" + (f" ({err})" if err else "")
        )
    sys.exit(1 if failed else 0)


@notify.command("pending")
@state_dir_option()
@handle_errors
def notify_pending(state_dir: str | None) -> None:
    """List the notifications waiting in the outbox.

    Those that failed, wait for a retry or were folded into a digest.
    """
    import sqlite3

    from rich.table import Table
    from rich.text import Text

    from pipeline.config import DEFAULT_STATE_DIR

    path = Path(state_dir or DEFAULT_STATE_DIR) / "state.sqlite"
    if not path.exists():
        fail(f"no state database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT notifier, status, attempts, next_at, last_error, title FROM outbox "
            "WHERE status IN ('pending', 'folded') ORDER BY id"
        ).fetchall()
    except sqlite3.Error as exc:
        fail(f"cannot read the outbox: {exc}")
    finally:
        conn.close()
    if not rows:
        click.echo("the outbox is empty")
        return
    table = Table(header_style="bold")
    for col in ("notifier", "status", "attempts", "next try", "last error", "title"):
        table.add_column(col, overflow="fold")
    import datetime as _dt

    for name, status, attempts, next_at, err, title in rows:
        when = _dt.datetime.fromtimestamp(next_at, _dt.UTC).isoformat(timespec="seconds")
        table.add_row(name, status, str(attempts), when, Text(err or ""), Text(visible(title)))
    _console().print(table)
    click.echo(f"{len(rows)} pending")


# -- parse --------------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["jsonl", "json", "table"]),
    default="jsonl",
    show_default=True,
    help="How events are written (jsonl and json: one JSON object a line).",
)
@output_option()
@click.option("--print-unparsed", is_flag=True, help="Also print lines no grammar could read.")
@time_options
@journal_options
@quiet_option()
@handle_errors
def parse(
    paths: tuple[str, ...],
    out_format: str,
    output: str | None,
    print_unparsed: bool,
    since: str | None,
    until: str | None,
    year: int | None,
    tz: str | None,
    input_format: str | None,
    journal: bool,
    journal_dirs: tuple[str, ...],
    journal_files: tuple[str, ...],
    quiet: bool,
) -> None:
    """Parse every line and print it as an event.

    Each event has its timestamp, host, program, pid, level, format and message. Reads
    PATHs and with --journal the systemd journal (at least one of them).
    """
    from pipeline.engine import Engine

    engine = Engine([], _options(since, until, year, tz, input_format))
    journals = _journal_specs(journal, journal_dirs, journal_files)
    if not paths and not journals:
        raise click.UsageError("give a PATH or --journal")
    if output:
        writable_file(output)
    with (
        open(output, "w", encoding="utf-8", newline="") if output else contextlib.nullcontext()
    ) as opened:
        _parse_to(engine, list(paths), journals, out_format, print_unparsed, quiet, opened)


def _parse_to(
    engine: Engine,
    paths: list[str],
    journals: list[JournalSpec],
    out_format: str,
    print_unparsed: bool,
    quiet: bool,
    opened: TextIO | None,
) -> None:
    from rich.table import Table
    from rich.text import Text

    from pipeline.engine import ScanStats, Unparsed

    stats = ScanStats()
    table = Table(header_style="bold") if out_format == "table" else None
    if table is not None:
        for col in ("source", "time", "host", "program", "pid", "level", "format", "message"):
            table.add_column(col, overflow="fold")
    out = opened or sys.stdout
    for rec in engine.parse(paths, stats, journals):
        if isinstance(rec, Unparsed):
            if print_unparsed:
                obj = {
                    "source": str(rec.location),
                    "unparsed": True,
                    "format": rec.format,
                    "reason": rec.reason,
                    "text": rec.text,
                }
                if table is not None:
                    table.add_row(
                        Text(str(rec.location)),
                        "",
                        "",
                        "",
                        "",
                        "",
                        "UNPARSED",
                        Text(visible(rec.text)),
                    )
                else:
                    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            continue
        if table is not None:
            table.add_row(
                Text(f"{rec.source}:{rec.line}"),
                Text(rec.timestamp.isoformat() if rec.timestamp else "-"),
                Text(visible(rec.host) or "-"),
                Text(visible(rec.program) or "-"),
                Text(str(rec.pid) if rec.pid is not None else "-"),
                Text(rec.level or "-"),
                Text(rec.format),
                Text(visible(rec.message)),
            )
        else:
            out.write(json.dumps(_event_json(rec), ensure_ascii=False) + "\n")
    if table is not None:
        _console(out).print(table)
    if quiet:
        _incomplete(stats, 0, False)  # an unreadable input is an error: said also with -q
        return
    unparsed = sum(stats.unparsed.values())
    click.echo(
        f"{stats.lines} lines, {stats.parsed} parsed, {unparsed} unparsed"
        + (f", {stats.comments} comment lines" if stats.comments else "")
        + (f", {stats.blank} blank" if stats.blank else "")
        + (f", {stats.out_of_range} outside --since/--until" if stats.out_of_range else "")
        + (
            "; problems: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.problems.items()))
            if stats.problems
            else ""
        ),
        err=True,
    )


def _event_json(e: Event) -> dict[str, Any]:
    d = e.as_dict()
    if not d["fields"]:
        del d["fields"]
    return d


# -- rules --------------------------------------------------------------------------------


@main.group()
def rules() -> None:
    """List, validate and test rules."""


_OLD_DIR = "[DIR]"


@rules.command("list")
@click.argument("directory", required=False, type=click.Path(), metavar=_OLD_DIR)
@rules_options
@fail2ban_options
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["table", "jsonl", "json"]),
    default="table",
    show_default=True,
    help="How the rules are listed (jsonl and json: one JSON object a line).",
)
@handle_errors
def rules_list(
    directory: str | None,
    rule_dirs: tuple[str, ...],
    no_builtin_rules: bool,
    f2b_dir: str | None,
    f2b_filters: tuple[str, ...],
    out_format: str,
) -> None:
    """List the loaded rules (the built-in pack and --rules DIR).

    With --fail2ban, also the imported ones, each at its filter's failregex or jail's line;
    their tags say what their patterns run on. DIR is the old spelling of --rules DIR
    (deprecated).
    """
    from rich.table import Table
    from rich.text import Text

    from pipeline.detection.loader import load_rules
    from pipeline.output.console import SEVERITY_STYLE

    dirs = deprecated_dir("rules list", directory, rule_dirs)
    loaded = load_rules(dirs, builtin=not no_builtin_rules)
    loaded = _with_fail2ban(loaded, f2b_dir, f2b_filters)
    if out_format in ("jsonl", "json"):
        for r in loaded:
            click.echo(
                json.dumps(
                    {
                        "id": r.id,
                        "type": r.kind,
                        "severity": str(r.severity),
                        "title": r.title,
                        "enabled": r.enabled,
                        "reports": r.report,
                        "tags": list(r.tags),
                        "location": str(r.location),
                    }
                )
            )
        return
    table = Table(header_style="bold")
    for col in ("id", "type", "severity", "title", "tags", "defined at"):
        table.add_column(col, overflow="fold")
    for r in loaded:
        kind = r.kind + ("" if r.enabled else ", off") + ("" if r.report else ", helper")
        table.add_row(
            r.id,
            kind,
            Text(str(r.severity), style=SEVERITY_STYLE[r.severity]),
            r.title,
            ", ".join(r.tags),
            str(r.location),
        )
    _console().print(table)


def _rule_set(dirs: list[str], no_builtin_rules: bool) -> tuple[list[str], bool]:
    """The rule dirs and whether the built-in pack loads first: ``rules validate|test
    --rules DIR`` load what ``scan --rules DIR`` loads (without DIR: the built-in pack)."""
    if not dirs:
        if no_builtin_rules:
            fail("--no-builtin-rules needs a DIR of rules (--rules DIR)")
        return [], True
    return dirs, not no_builtin_rules


def _defined_in(rules: list[Rule], dirs: list[str]) -> list[Rule]:
    """The rules defined in the files of ``dirs`` (all of them without dirs)."""
    from pipeline.detection.loader import rule_files

    if not dirs:
        return rules
    mine = {str(p) for p in rule_files(dirs)}
    return [r for r in rules if r.location.path in mine]


@rules.command("validate")
@click.argument("directory", required=False, type=click.Path(), metavar=_OLD_DIR)
@rules_options
@config_option()
@handle_errors
def rules_validate(
    directory: str | None,
    rule_dirs: tuple[str, ...],
    no_builtin_rules: bool,
    config_path: str | None,
) -> None:
    """Check rule files and print every error with file:line.

    The rules checked are those of --rules DIR, or the built-in pack.

    DIR is checked together with the built-in pack, as scan --rules DIR loads it, so its
    rules may build on built-in rules and override them. With --config, the config is
    checked too (notifier URLs included). A DIR without --rules is the old spelling
    (deprecated).
    """
    from pipeline.detection.fields import check_fields
    from pipeline.detection.loader import builtin_rules_dir, check_rule_dirs

    dirs = deprecated_dir("rules validate", directory, rule_dirs)
    if config_path:
        from pipeline.config import load_config

        load_config(config_path)
    dirs, builtin = _rule_set(dirs, no_builtin_rules)
    all_loaded, errors = check_rule_dirs(dirs, builtin=builtin)
    loaded = _defined_in(all_loaded, dirs)
    paths = {r.location.path for r in loaded}
    for e in errors:
        click.echo(f"error: {e}", err=True)
    for w in check_fields(all_loaded)[1]:
        if w.location is None or w.location.path in paths or not dirs:
            click.echo(f"warning: {w}", err=True)
    for r in loaded:
        if r.kind == "line" and not r.literals:
            click.echo(
                f"warning: {r.location}: [{r.id}] has no required literal; every line will "
                "be parsed for it (slower, still correct)",
                err=True,
            )
    if errors:
        where = ", ".join(dirs) if dirs else str(builtin_rules_dir())
        click.echo(f"{len(errors)} errors in {where}", err=True)
        sys.exit(2)
    click.echo(f"{len(loaded)} rules valid")


@rules.command("test")
@click.argument("directory", required=False, type=click.Path(), metavar=_OLD_DIR)
@rules_options
@click.option(
    "--samples",
    "samples_dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Annotated sample logs to check (default: the samples/ next to the built-in rules).",
)
@handle_errors
def rules_test(
    directory: str | None,
    rule_dirs: tuple[str, ...],
    no_builtin_rules: bool,
    samples_dir: str | None,
) -> None:
    """Run the rules' examples and samples; fail on a mismatch.

    The examples are each rule's inline ones, the samples the annotated sample logs.

    --rules DIR loads with the built-in pack, as for validate and scan; the rules defined
    in DIR are tested, with the built-in rules they build on. A DIR without --rules is
    the old spelling (deprecated).
    """
    from pipeline.detection.loader import builtin_rules_dir, check_rule_dirs, dependencies
    from pipeline.detection.testing import TestFailure, check_examples, check_samples

    dirs = deprecated_dir("rules test", directory, rule_dirs)
    dirs, builtin = _rule_set(dirs, no_builtin_rules)
    loaded, errors = check_rule_dirs(dirs, builtin=builtin)
    for e in errors:
        click.echo(f"error: {e}", err=True)
    if errors:
        sys.exit(2)
    tested = _defined_in(loaded, dirs)
    failures, n_examples = check_examples(tested, loaded)
    if samples_dir is None and not dirs:
        default = builtin_rules_dir().parent / "samples"
        samples_dir = str(default) if default.is_dir() else None
    n_sample_lines = 0
    if samples_dir is not None:
        ids = {r.id for r in tested}
        needed = dependencies(tested, {r.id: r for r in loaded})
        # the rules under test, and silently the (built-in) rules they build on
        scanned = [
            r if r.id in ids else replace(r, report=False)
            for r in loaded
            if r.id in ids or r.id in needed
        ]
        s_fail, n_sample_lines, seen = check_samples(scanned, Path(samples_dir))
        failures.extend(s_fail)
        failures.extend(
            TestFailure(r.location, r.id, f"no sample under {samples_dir} yields this rule")
            for r in tested
            if r.id not in seen and r.report and r.enabled
        )
    for f in failures:
        click.echo(f"FAIL {f}", err=True)
    click.echo(
        f"{len(tested)} rules, {n_examples} examples, {n_sample_lines} annotated sample lines: "
        f"{'ok' if not failures else f'{len(failures)} failures'}"
    )
    if failures:
        sys.exit(1)


# -- watch and status ---------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@journal_option()
@journal_directory_option()
@rules_options
@fail2ban_options
@state_dir_option()
@output_option()
@config_option()
@click.option(
    "--from-beginning",
    is_flag=True,
    default=None,
    help="On the first run, read existing files from their start.",
)
@since_option()
@until_option()
@tz_option()
@host_option()
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.05, 60),
    metavar="SECONDS",
    help="How often to look without a change notice (default 1).",
)
@notify_option()
@min_severity_option()
@click.option(
    "--metrics",
    metavar="ADDR:PORT",
    help="Serve Prometheus metrics on http://ADDR:PORT/metrics (e.g. 127.0.0.1:9108).",
)
@click.option(
    "--reset-state",
    is_flag=True,
    help="When the state database is empty or corrupt, move it aside (with a warning) and "
    "start afresh instead of refusing to start.",
)
@logcheck_option()
@logcheck_level_option()
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@handle_errors
def watch(
    paths: tuple[str, ...],
    journal: bool,
    journal_dirs: tuple[str, ...],
    rule_dirs: tuple[str, ...],
    no_builtin_rules: bool,
    f2b_dir: str | None,
    f2b_filters: tuple[str, ...],
    state_dir: str | None,
    output: str | None,
    config_path: str | None,
    from_beginning: bool | None,
    since: str | None,
    until: str | None,
    tz: str | None,
    host: str | None,
    poll_interval: float | None,
    notify_urls: tuple[str, ...],
    min_severity: str | None,
    metrics: str | None,
    reset_state: bool,
    logcheck_dir: str | None,
    logcheck_level: str | None,
    verbose: bool,
) -> None:
    """Follow logs live and report findings as they happen (the daemon).

    Follows PATHs (files or globs; default: Debian's syslog, mail.log and Apache error
    log) through rotations, truncations and restarts, checkpointing offsets and detection
    state in the state directory. SIGHUP reloads config and rules, SIGTERM stops cleanly.

    --since/--until act on the first run only (no saved offsets): the files (and the
    journal) are read from their start, keeping the lines from before the start inside
    the range; later runs go on from the saved offsets.
    """
    import logging

    from pipeline.config import WatchConfig, load_config, parse_address
    from pipeline.daemon import Daemon, setup_logging
    from pipeline.timeinfer import parse_when, parse_zone

    if metrics is not None:
        try:
            parse_address(metrics)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics") from None

    if len(journal_dirs) > 1:
        raise click.BadParameter(
            "watch follows one journal directory", param_hint="--journal-directory"
        )
    window: dict[str, Any] = {}
    if since or until:
        zone = parse_zone(tz or (load_config(config_path).tz if config_path else None))
        window = {
            "since": parse_when(since, zone) if since else None,
            "until": parse_when(until, zone) if until else None,
        }
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    overrides: dict[str, Any] = {
        "paths": tuple(paths) or None,
        "journal": journal or None,
        "journal_directory": journal_dirs[0] if journal_dirs else None,
        **window,
        "rules": tuple(rule_dirs) or None,
        "builtin_rules": (not no_builtin_rules) if no_builtin_rules else None,
        "fail2ban": f2b_dir,
        "fail2ban_filters": tuple(f2b_filters) or None,
        "state_dir": state_dir,
        "output": output,
        "from_beginning": from_beginning,
        "tz": tz,
        "host": host,
        "poll_interval": poll_interval,
        "notify_urls": tuple(notify_urls) or None,
        "min_severity": min_severity,
        "metrics": metrics,
        "logcheck": logcheck_dir,
        "logcheck_level": logcheck_level,
    }
    base = load_config(config_path) if config_path else WatchConfig()
    config = base.with_overrides(**overrides)
    daemon = Daemon(config, config_path=config_path, overrides=overrides, reset_state=reset_state)
    sys.exit(daemon.run())


@main.command()
@state_dir_option()
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table, or one JSON object.",
)
@min_severity_option()
@tz_option()
@handle_errors
def status(
    state_dir: str | None, out_format: str, min_severity: str | None, tz: str | None
) -> None:
    """Show whether the daemon runs and what it follows.

    The daemon: pid, uptime, checkpoint age, lines/s over the last minute, dropped
    detection state; per source: position, lag, rate, errors; per notifier: sent, failed,
    pending and the last error; the last findings (with --min-severity, the last ones at or
    above it).

    Exits 0 while the daemon runs, 1 when it is stalled, 3 when it is not running or no
    daemon has run here, 2 when the state directory has no state database.
    """
    from rich.table import Table
    from rich.text import Text

    from pipeline.config import DEFAULT_STATE_DIR
    from pipeline.daemon import status as read_status

    floor = Severity.parse(min_severity) if min_severity else None
    info = read_status(state_dir or DEFAULT_STATE_DIR, floor)
    code = STATUS_EXIT[info["daemon"]["state"]]
    if out_format == "json":
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        sys.exit(code)
    console = _console()
    console.print(Text(_daemon_line(info["daemon"]), style="bold"))
    dropped = info["daemon"]["dropped_state"]
    for kind, what in (("evicted", "evicted at the table caps"), ("dropped", "dropped")):
        if dropped.get(kind):
            listed = ", ".join(f"{k} {v}" for k, v in dropped[kind].items())
            console.print(Text(f"detection state {what}: {visible(listed)}"))
    table = Table(header_style="bold", title="sources")
    for col in ("source", "line", "offset", "lag (bytes)", "lines", "lines/s", "errors"):
        table.add_column(col, overflow="fold")
    for s in info["sources"]:
        table.add_row(
            Text(str(s["source"])),
            str(s["line"]),
            str(s["offset"]),
            str(s["lag_bytes"]),
            str(s["lines"]),
            str(s["lines_per_s"]),
            str(s["errors"]),
        )
    console.print(table)
    if info["notifiers"]:
        notifiers = Table(header_style="bold", title="notifiers")
        for col in ("notifier", "sent", "failed", "pending", "dropped", "last error"):
            notifiers.add_column(col, overflow="fold")
        for n in info["notifiers"]:
            notifiers.add_row(
                Text(str(n["notifier"])),
                str(n["sent"]),
                str(n["failed"]),
                str(n["pending"]),
                str(n["dropped"]),
                Text(visible(n["last_error"] or "")),
            )
        console.print(notifiers)
    recent = [Finding.from_dict(d) for d in info["findings"]]
    above = f" at or above {floor}" if floor is not None else ""
    if recent:
        from pipeline.output.console import render_table
        from pipeline.timeinfer import parse_zone

        console.print(Text("last findings" + above, style="bold"))
        print_lines(render_table(recent, console.width, parse_zone(tz)), console)
    else:
        console.print("no findings yet" + above)
    sys.exit(code)


#: ``status`` exit codes by daemon state (3 is LSB's "not running")
STATUS_EXIT = {"running": 0, "stalled": 1, "stopped": 3}


def _daemon_line(d: dict[str, Any]) -> str:
    """``running (pid 123, up 2h 3m, last checkpoint 1s ago, 850.0 lines/s)``"""
    if d["state"] == "stopped":
        pid = f"pid {d['pid']}, " if d["pid"] else ""
        return f"stopped ({pid}{d['reason']})" if d["reason"] else "stopped"
    parts = [f"pid {d['pid']}", f"up {_duration(d['uptime_s'])}"]
    age = d["checkpoint_age_s"]
    parts.append(f"last checkpoint {_duration(age)} ago" if age is not None else "no checkpoint")
    parts.append(f"{d['lines_per_s']} lines/s over the last minute")
    if d["metrics"]:
        parts.append(f"metrics on {d['metrics']}")
    head = d["state"] + (f": {d['reason']}" if d["reason"] else "")
    return f"{head} ({', '.join(parts)})"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.0f}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


if __name__ == "__main__":  # pragma: no cover
    main()

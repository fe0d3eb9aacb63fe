"""fail2ban filters and jails as logwarden rules on the same engine.

* A filter (``--fail2ban-filter sshd[mode=aggressive]``) is a line rule ``f2b-filter-NAME``: each
  failure fail2ban would count is a finding (severity low), with the failure id in the
  ``f2b_id`` field and the filter's other captures (``user``, ...) beside it.
* An enabled jail (``--fail2ban /etc/fail2ban``) is a helper line rule ``f2b-JAIL-failure``
  (its filter) and a threshold rule ``f2b-JAIL``: ``maxretry`` failures within ``findtime``
  per ``f2b_id`` give a finding; ``bantime`` is its suppression period (one finding per id
  and ban time; later failures update its count); ``ignoreip`` ids never count.

The line rule's condition runs the filter on the event rebuilt as fail2ban sees a line
after its date: ``host program[pid]: message`` for syslog and journal events (the message
alone for formats without a program), with the event's time, so fail2ban's prefix
regexes (``__prefix_line``) and ``_daemon`` hold as they do in fail2ban.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.detection.model import Condition, Correlation, Rule, Selectors, Step, Suppress
from pipeline.errors import Location, RuleError
from pipeline.imports.f2bblock import BlockConfirmation, block_confirmation
from pipeline.imports.f2bcolumns import ColumnJudge, column_judge, filter_line
from pipeline.imports.f2bconf import Config, read_config
from pipeline.imports.fail2ban import (
    DEFAULT_DIR,
    Fail2banFilter,
    Failure,
    parse_spec,
    read_filter,
)
from pipeline.model import Event, Severity

if TYPE_CHECKING:
    from pipeline.detection.prefilter import IntArray

#: the failure id (host address, or F-ID) of a fail2ban match
ID_FIELD = "f2b_id"
#: the filter's groups a match passes on beside the id, when they took part
_PASSED = ("user", "fid", "fport")
_MIN_LITERAL = 3
_TIME = re.compile(r"(\d+(?:\.\d+)?)\s*(mo|[smhdwy])?", re.I)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2629800, "y": 31557600}


def parse_f2b_time(text: str) -> timedelta:
    """fail2ban's durations: ``600``, ``10m``, ``1h30m``, ``1d``, ``1w``, ``1mo``, ``1y``."""
    value = text.strip().lower()
    total = 0.0
    pos = 0
    for m in _TIME.finditer(value):
        if value[pos : m.start()].strip():
            raise ValueError(f"not a duration: {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2) or "s"]
        pos = m.end()
    if not value or value[pos:].strip():
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=total)


def _ignore_set(
    text: str,
) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], frozenset[str]]:
    nets = []
    names = set()
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item)
    return tuple(nets), frozenset(names)


@dataclass(frozen=True, slots=True)
class Fail2banCondition(Condition):
    """Holds when fail2ban's filter finds a failure on the event; captures ``f2b_id``."""

    matcher: Fail2banFilter | None = dc_field(default=None, compare=False)
    ignore_nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    ignore_names: frozenset[str] = frozenset()
    #: ``journalmatch``: journal entries must agree with one group of FIELD=VALUE terms
    journal: tuple[tuple[tuple[str, str], ...], ...] = ()
    #: the filter relaxed into RE2, run on a chunk's candidates at once (single-line
    #: filters whose regexes it can widen; see :mod:`pipeline.imports.f2bblock`)
    block: BlockConfirmation | None = dc_field(default=None, compare=False)
    #: the filter's regexes over a block's rows at once (see :meth:`judge_rows`)
    columns: ColumnJudge | None = dc_field(default=None, compare=False)

    def confirm_block(self, data: bytes, nl: IntArray, lines: IntArray) -> IntArray:
        """The candidate lines the filter may match (the prefilter's block stage)."""
        if self.block is None:
            return lines
        return self.block.keep(data, nl, lines)

    def judge_rows(
        self,
        host: Any,
        program: Any,
        pid: IntArray,
        has_pid: Any,
        repeat: IntArray,
        message: Any,
    ) -> Callable[[int], dict[str, str] | None] | None:
        """The condition over a block's fast syslog rows at once (Arrow ``host``,
        ``program``, ``message``; numpy ``pid``, ``has_pid``, ``repeat``): a function
        giving, for row ``k``, what :meth:`test` gives on its event, to be called in line
        order (the filter's state moves there); None when the filter is not judged over
        columns (see :mod:`pipeline.imports.f2bcolumns`)."""
        if self.columns is None:
            return None
        judged = self.columns.judge(host, program, pid, has_pid, repeat, message)

        def verdict(row: int) -> dict[str, str] | None:
            if judged.moves_nothing(row):
                return None
            return self._verdict(judged.verdict(row))

        return verdict

    def test(self, event: Event) -> dict[str, str] | None:
        assert self.matcher is not None
        if self.journal and event.format == "journal-json" and not self._journal_ok(event):
            return None
        if event.program:
            line = filter_line(event.host, event.program, event.pid, event.repeat, event.message)
        else:
            line = event.message
        return self._verdict(self.matcher.process_line(line, when=event.timestamp))

    def _verdict(self, failures: list[Failure]) -> dict[str, str] | None:
        """The captures of the first failure that counts, None without one."""
        for failure in failures:
            if failure.fid is None or failure.nofail or self._ignored(failure.fid):
                continue
            out = {ID_FIELD: failure.fid}
            for key in _PASSED:
                if key in failure.groups:
                    out[key] = failure.groups[key]
            return out
        return None

    def _journal_ok(self, event: Event) -> bool:
        return any(all(event.fields.get(k) == v for k, v in group) for group in self.journal)

    def _ignored(self, fid: str) -> bool:
        if fid in self.ignore_names:
            return True
        if not self.ignore_nets:
            return False
        try:
            addr = ipaddress.ip_address(fid)
        except ValueError:
            return False
        return any(addr in net for net in self.ignore_nets)


class Fail2banRule(Rule):
    """A rule whose condition is a fail2ban filter: it captures what the filter passes on
    (:meth:`Rule.captures` knows regex groups only), so a scan whose rules read nothing else
    skips the body grammars (``Detector.needs_body_fields``), and references to those
    fields check out."""

    __slots__ = ()

    def captures(self) -> set[str]:
        out = Rule.captures(self)
        if any(isinstance(c, Fail2banCondition) for c in self.conditions):
            out |= {ID_FIELD, *_PASSED}
        return out


def parse_journalmatch(lines: tuple[str, ...]) -> tuple[tuple[tuple[str, str], ...], ...]:
    """``_SYSTEMD_UNIT=sshd.service + _COMM=sshd``: groups joined by ``+`` (any), terms in
    a group all required, as journalctl's matches."""
    groups: list[tuple[tuple[str, str], ...]] = []
    for line in lines:
        current: list[tuple[str, str]] = []
        for term in line.split():
            if term == "+":
                if current:
                    groups.append(tuple(current))
                current = []
            elif "=" in term:
                key, _, value = term.partition("=")
                current.append((key, value))
        if current:
            groups.append(tuple(current))
    return tuple(groups)


def _literals(flt: Fail2banFilter) -> tuple[bytes, ...]:
    """Prefilter literals: one required literal set per failregex, all joined (every
    failregex must have one, else every line is a candidate)."""
    out: set[str] = set()
    for pattern in flt.failregex:
        # the pattern's own required literals (empty when the reader did not know its shape)
        best = frozenset(pattern.literals)
        if not best or min(len(x) for x in best) < _MIN_LITERAL:
            return ()
        out |= best
    # a literal holding another one selects no line that one does not (fewer hits to map)
    out = {x for x in out if not any(y != x and y in x for y in out)}
    return tuple(sorted(x.encode("utf-8") for x in out))


def _line_rule(
    rule_id: str,
    flt: Fail2banFilter,
    title: str,
    *,
    report: bool,
    ignoreip: str = "",
    location: Location,
) -> Rule:
    nets, names = _ignore_set(ignoreip)
    cond = Fail2banCondition(
        field="message",
        matcher=flt,
        ignore_nets=nets,
        ignore_names=names,
        journal=parse_journalmatch(flt.spec.journalmatch),
        location=location,
        block=block_confirmation(flt) if flt.spec.maxlines == 1 else None,
        columns=column_judge(flt),
    )
    return Fail2banRule(
        id=rule_id,
        title=title,
        severity=Severity.LOW,
        description=f"fail2ban filter {flt.spec.name} ({flt.spec.path}); patterns on {flt.engines}",
        remediation="",
        references=(),
        tags=("fail2ban", f"engine:{flt.engines}"),
        select=Selectors(),
        conditions=(cond,),
        location=location,
        # a multi-line buffer must see every line, not only those with a literal
        literals=_literals(flt) if flt.spec.maxlines == 1 else (),
        report=report,
    )


def filter_rules(root: Path | str, spec: str) -> list[Rule]:
    """``--fail2ban-filter NAME[params]``: one reporting line rule."""
    try:
        name, params = parse_spec(spec)
    except ValueError as exc:
        raise RuleError(f"--fail2ban-filter: {exc}") from None
    fspec = read_filter(Path(root), name, params)
    flt = Fail2banFilter(fspec)
    loc = flt.failregex[0].location
    return [
        _line_rule(f"f2b-filter-{name}", flt, f"fail2ban {name} failure", report=True, location=loc)
    ]


def read_jails(root: Path) -> Config:
    """``jail.conf``, ``jail.local`` and ``jail.d/*.conf|.local`` merged, in fail2ban's order."""
    cfg = read_config(root / "jail.conf")
    jail_d = root / "jail.d"
    if jail_d.is_dir():
        for p in sorted(jail_d.glob("*.conf")):
            cfg.merge(read_config(p))
        for p in sorted(jail_d.glob("*.local")):
            if not p.with_suffix(".conf").exists():
                cfg.merge(read_config(p))
    if not cfg.files:
        raise RuleError("no jail.conf", Location(str(root / "jail.conf")))
    return cfg


def _true(text: str | None) -> bool:
    return (text or "").strip().lower() in ("true", "yes", "1", "on", "enabled")


def jail_rules(root: Path | str) -> list[Rule]:
    """``--fail2ban DIR``: the enabled jails, each a helper line rule and a threshold rule."""
    base = Path(root)
    cfg = read_jails(base)
    out: list[Rule] = []
    for jail in cfg.sections:
        if jail in ("DEFAULT", "INCLUDES") or jail.startswith("KNOWN/"):
            continue
        names = {"__name__": jail}

        def opt(key: str, default: str | None = None, _j: str = jail) -> str | None:
            try:
                got = cfg.get(_j, key, {"__name__": _j})
            except KeyError as exc:
                raise RuleError(
                    f"jail {_j}: %({exc.args[0]})s is not defined", cfg.location(_j, key)
                ) from None
            return default if got is None else got

        if not _true(opt("enabled", "false")):
            continue
        loc = cfg.location(jail, "enabled") or Location(str(base / "jail.conf"))
        spec = (opt("filter") or jail).strip().split("\n")[0].strip()
        if not spec:
            continue
        try:
            fname, params = parse_spec(spec)
            maxretry = int(opt("maxretry", "5") or 5)
            findtime = parse_f2b_time(opt("findtime", "10m") or "10m")
            bantime = parse_f2b_time((opt("bantime", "10m") or "10m").lstrip("-") or "10m")
        except ValueError as exc:
            raise RuleError(f"jail {jail}: {exc}", loc) from None
        fspec = read_filter(base, fname, params)
        flt = Fail2banFilter(fspec)
        helper_id = f"f2b-{jail}-failure"
        helper = _line_rule(
            helper_id,
            flt,
            f"fail2ban {fname} failure",
            report=False,
            ignoreip=opt("ignoreip", "") or "",
            location=flt.failregex[0].location,
        )
        del names
        severity = Severity.HIGH if fname == "recidive" else Severity.MEDIUM
        out.append(helper)
        out.append(
            Rule(
                id=f"f2b-{jail}",
                title=f"fail2ban jail {jail}: {maxretry} failures within {opt('findtime', '10m')}",
                severity=severity,
                description=f"jail [{jail}] with filter {spec} ({fspec.path})",
                remediation="fail2ban would ban this address for "
                f"{opt('bantime', '10m')}; logwarden reports it",
                references=(),
                tags=("fail2ban", f"engine:{flt.engines}"),
                select=Selectors(),
                conditions=(),
                location=loc,
                suppress=Suppress(period=bantime, group_by=(ID_FIELD,)),
                correlation=Correlation(
                    kind="threshold",
                    window=findtime,
                    group_by=(ID_FIELD,),
                    steps=(Step(rule=helper_id),),
                    count=max(1, maxretry),
                ),
            )
        )
    return out


def fail2ban_rules(directory: str | None, filters: tuple[str, ...] = ()) -> list[Rule]:
    """The rules of ``--fail2ban DIR`` (its enabled jails) and ``--fail2ban-filter SPEC``
    (filters of DIR, default ``/etc/fail2ban``)."""
    out: list[Rule] = []
    if directory is not None:
        out.extend(jail_rules(directory))
    for spec in filters:
        out.extend(filter_rules(directory or DEFAULT_DIR, spec))
    return out

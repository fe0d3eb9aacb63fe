"""logwarden's engine: log lines → events → rules → findings.

The command line (``logwarden``) is a thin layer over this package::

    from pipeline import Engine, ScanOptions, load_rules

    result = Engine(load_rules(), ScanOptions()).scan(["/var/log/mail.log"])
    for finding in result.findings:
        print(finding.rule, finding.timestamp, finding.message)

For analysis in pandas, :func:`scan`, :func:`read_events` and :func:`load_findings` (from
:mod:`pipeline.analysis` and :mod:`pipeline.store`) return DataFrames; they are imported on
first use, so the command line does not pay for pandas when it does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.detection.loader import load_rules
from pipeline.detection.model import Rule
from pipeline.engine import Engine, ScanOptions, ScanResult, ScanStats
from pipeline.errors import Location, LogwardenError, Problem, RuleError
from pipeline.model import Event, Finding, Severity

if TYPE_CHECKING:
    from pipeline.analysis import Scan, read_events, scan
    from pipeline.store import load_findings

_LAZY = {
    "scan": "pipeline.analysis",
    "read_events": "pipeline.analysis",
    "Scan": "pipeline.analysis",
    "load_findings": "pipeline.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


__all__ = [
    "Engine",
    "Event",
    "Finding",
    "Location",
    "LogwardenError",
    "Problem",
    "Rule",
    "RuleError",
    "Scan",
    "ScanOptions",
    "ScanResult",
    "ScanStats",
    "Severity",
    "load_findings",
    "load_rules",
    "read_events",
    "scan",
]

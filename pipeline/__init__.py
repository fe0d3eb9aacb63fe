"""logwarden's engine: log lines → events → rules → findings.

The command line (``logwarden``) is a thin layer over this package::

    from pipeline import Engine, ScanOptions, load_rules

    result = Engine(load_rules(), ScanOptions()).scan(["/var/log/mail.log"])
    for finding in result.findings:
        print(finding.rule, finding.timestamp, finding.message)

For analysis in pandas, :func:`scan`, :func:`read_events` and :func:`load_findings` (from
:mod:`pipeline.analysis` and :mod:`pipeline.store`) return DataFrames. Every name here is
imported on first use, so the command line does not pay for pandas, the grammars or the
rule loader when a command does not need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.analysis import Scan, read_events, scan
    from pipeline.detection.loader import load_rules
    from pipeline.detection.model import Rule
    from pipeline.engine import Engine, ScanOptions, ScanResult, ScanStats
    from pipeline.errors import Location, LogwardenError, Problem, RuleError
    from pipeline.model import Event, Finding, Severity
    from pipeline.store import load_findings

#: the version of the package (``logwarden --version``); pyproject.toml reads it from here
__version__ = "0.1.0"

#: where each public name lives: imported on first use, so that ``import pipeline.cli`` (and
#: any ``import pipeline.X``) pays only for what it uses, not for pandas or the grammars
_LAZY = {
    "load_rules": "pipeline.detection.loader",
    "Rule": "pipeline.detection.model",
    "Engine": "pipeline.engine",
    "ScanOptions": "pipeline.engine",
    "ScanResult": "pipeline.engine",
    "ScanStats": "pipeline.engine",
    "Location": "pipeline.errors",
    "LogwardenError": "pipeline.errors",
    "Problem": "pipeline.errors",
    "RuleError": "pipeline.errors",
    "Event": "pipeline.model",
    "Finding": "pipeline.model",
    "Severity": "pipeline.model",
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

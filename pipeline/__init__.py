"""logwarden's engine: log lines → events → rules → findings.

The command line (``logwarden``) is a thin layer over this package::

    from pipeline import Engine, ScanOptions, load_rules

    result = Engine(load_rules(), ScanOptions()).scan(["/var/log/mail.log"])
    for finding in result.findings:
        print(finding.rule, finding.timestamp, finding.message)
"""

from __future__ import annotations

from pipeline.detection.loader import load_rules
from pipeline.detection.model import Rule
from pipeline.engine import Engine, ScanOptions, ScanResult, ScanStats
from pipeline.errors import Location, LogwardenError, Problem, RuleError
from pipeline.model import Event, Finding, Severity

__all__ = [
    "Engine",
    "Event",
    "Finding",
    "Location",
    "LogwardenError",
    "Problem",
    "Rule",
    "RuleError",
    "ScanOptions",
    "ScanResult",
    "ScanStats",
    "Severity",
    "load_rules",
]

from __future__ import annotations

import pytest

from pipeline.detection.patterns import PatternError, compile_pattern, required_literals


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^kernel: EXT4-fs \((?P<dev>\w+)\): Remounting", {"kernel: EXT4-fs ("}),
        (r"(?P<q>\w+): (?P<d>\w+): DSN: Return receipt$", {": DSN: Return receipt"}),
        (r"^(?:nfs|NFS): server \S+ not responding", {" not responding"}),
        (r"^(?:stop-sigterm|State 'stop-sigterm') timed out", {"stop-sigterm"}),
        (r"(?i)no space left", None),
        (r"\d+", None),
    ],
)
def test_required_literals(pattern: str, expected: set[str] | None) -> None:
    got = required_literals(pattern)
    assert (None if got is None else set(got)) == expected


def test_re2_is_used_when_it_accepts_the_pattern() -> None:
    assert compile_pattern(r"^a (?P<x>\d+) b$").engine == "re2"


def test_lookaround_falls_back_to_re_when_safe() -> None:
    p = compile_pattern(r"^user=(?P<u>[a-z]+)(?!\S)")
    assert p.engine == "re"
    assert p.search("user=bob rest") == {"u": "bob"}


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+(?=b)",
        r"^(\w+\s?)*(?=x)",
        r"x.*.*(?=y)",
        r"(?P<from>.*)>",
        r"(?P<v>.+)",
        r"(?P<v>.{3,})",
    ],
)
def test_unsafe_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern)


def _crafted_lines(rule_pattern: str) -> list[str]:
    """64 KiB lines built from the pattern's own literals and characters that keep matching."""
    lits = sorted(required_literals(rule_pattern) or {"a"})
    size = 64 * 1024
    base = lits[0]
    return [
        (base * (size // max(1, len(base)) + 1))[:size],
        (base + " " + "a" * size)[:size],
        ("(" * size)[:size],
        (base + "<" + "x" * size)[:size],
        ("a " * size)[:size],
    ]


def test_builtin_rule_patterns_run_on_re2_and_take_crafted_64k_lines(builtin_rules) -> None:  # type: ignore[no-untyped-def]
    """Every regex of the pack compiles on RE2, whose matching is linear in the line by
    construction (no backtracking), and scans crafted 64 KiB lines without error. Speed
    itself is measured in bench/, not here."""
    for rule in builtin_rules:
        for cond in rule.conditions:
            if cond.regex is None:
                continue
            assert cond.regex.engine == "re2", (rule.id, cond.regex.source)
            for line in _crafted_lines(cond.regex.source):
                got = cond.regex.search(line)
                assert got is None or isinstance(got, dict)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"^(?P<q>\w+): from=<(?P<s>[^>\s]*)>", "wA1: from=<jürgen@exämple.org>, size=1"),
        (r"(?P<b>x)?(?P<a>y)", "ééy"),
        (r"(?P<e>z*)y", "y"),
        (r"fo(o|x)", "a fox"),
        (r"fo(o|x)", "nothing"),
        (r"ü(?P<u>\d+)", "ßü12"),
    ],
)
def test_search_gives_what_the_re2_module_gives(pattern: str, text: str) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.engine == "re2"
    m = compiled.regex.search(text)
    want = None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}
    got = compiled.search(text)
    assert got == want
    assert got is None or list(got) == list(want or {})


def test_compiled_patterns_survive_pickling() -> None:
    import pickle

    compiled = pickle.loads(pickle.dumps(compile_pattern(r"a(?P<x>\d+)")))
    assert compiled.search("a12") == {"x": "12"}

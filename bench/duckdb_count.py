"""The reference a data-minded admin would reach for: DuckDB counting the lines of a log that
match any of the peer regexes.

usage: duckdb_count.py PATTERNS_FILE LOG_FILE [--check]

The log is read with ``read_csv`` as one ``VARCHAR`` column (a delimiter byte that is not in
the file, no quoting, no escapes, no header), and one query counts the lines for which
``regexp_matches(line, 'p1') OR ... OR regexp_matches(line, 'p30')`` holds: DuckDB's regexes
are RE2, given as the other peers get them. Prints one JSON object: ``matching``, and with
``--check`` (the untimed run) also ``lines``, every line DuckDB read, and ``delimiter_absent``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb

#: the column delimiter: a control character that syslog files do not hold (--check says)
DELIMITER = "\x1f"


def sql_string(text: str) -> str:
    """``text`` as an SQL string literal (backslashes are plain characters in SQL)."""
    return "'" + text.replace("'", "''") + "'"


def source(log: Path) -> str:
    return (
        f"read_csv({sql_string(str(log))}, columns = {{'line': 'VARCHAR'}}, "
        f"delim = {sql_string(DELIMITER)}, quote = '', escape = '', header = false)"
    )


def matching_query(patterns: list[str], log: Path) -> str:
    where = " OR ".join(f"regexp_matches(line, {sql_string(p)})" for p in patterns)
    return f"SELECT count(*) FROM {source(log)} WHERE {where}"


def delimiter_absent(log: Path) -> bool:
    needle = DELIMITER.encode()
    with log.open("rb") as f:
        while chunk := f.read(1 << 22):
            if needle in chunk:
                return False
    return True


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--check"]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    patterns_file, log = Path(args[0]), Path(args[1])
    patterns = [p for p in patterns_file.read_text(encoding="utf-8").splitlines() if p.strip()]
    con = duckdb.connect()
    out: dict[str, object] = {}
    if "--check" in argv:
        out["delimiter_absent"] = delimiter_absent(log)
        out["lines"] = con.sql(f"SELECT count(*) FROM {source(log)}").fetchall()[0][0]
        out["threads"] = con.sql("SELECT current_setting('threads')").fetchall()[0][0]
    out["matching"] = con.sql(matching_query(patterns, log)).fetchall()[0][0]
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The baseline to beat: a plain Python loop that runs every regex on every line.

usage: re_loop.py PATTERNS_FILE LOG_FILE

Compiles each non-empty line of PATTERNS_FILE once, then calls ``re.search`` with each
pattern on each line of LOG_FILE (no early exit, no prefilter). Prints one JSON object:
the number of lines read and, per pattern index, how many lines it matched.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def load_patterns(path: Path) -> list[re.Pattern[str]]:
    text = path.read_text(encoding="utf-8")
    return [re.compile(p) for p in text.splitlines() if p.strip()]


def count_matches(patterns: list[re.Pattern[str]], log: Path) -> tuple[int, list[int]]:
    counts = [0] * len(patterns)
    lines = 0
    searches = [(i, p.search) for i, p in enumerate(patterns)]
    with log.open(encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            lines += 1
            for i, search in searches:
                if search(line) is not None:
                    counts[i] += 1
    return lines, counts


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    patterns = load_patterns(Path(argv[0]))
    lines, counts = count_matches(patterns, Path(argv[1]))
    json.dump({"lines": lines, "counts": counts}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A line longer than the limit is cut and its rest skipped: never read as a new record."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import Problem
from pipeline.sources.tail import FileFollower

FORGED = b"Nov 30 07:57:01 forgedhost app[666]: write /data/x: No space left on device\n"


def follow(path: Path, problems: list[Problem]) -> FileFollower:
    return FileFollower(str(path), problems.append, lambda m: None, from_beginning=True)


def lines_of(follower: FileFollower, budget: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for _ in range(20):
        for block in follower.poll(budget):
            for i, raw in enumerate(block.data.split(b"\n")[:-1]):
                out.append((block.first_line + i, raw))
    return out


def test_text_deep_inside_a_long_line_is_not_a_record(tmp_path: Path) -> None:
    head = b"Nov 30 07:57:00 web1 app[1]: x "
    budget = 1 << 20
    log = tmp_path / "app.log"
    log.write_bytes(b"Nov 30 07:56:59 web1 app[1]: before\n")
    problems: list[Problem] = []
    f = follow(log, problems)
    assert [x for _, x in lines_of(f, budget)] == [b"Nov 30 07:56:59 web1 app[1]: before"]
    with log.open("ab") as out:  # one 1 MiB + line, the forged text exactly at the budget
        out.write(head + b"A" * (budget - len(head)) + FORGED)
        out.write(b"Nov 30 07:57:02 web1 app[1]: after\n")
    got = lines_of(f, budget)
    assert [n for n, _ in got] == [2, 3]
    assert got[0][1].startswith(head) and len(got[0][1]) == f.max_line
    assert got[1] == (3, b"Nov 30 07:57:02 web1 app[1]: after")
    assert not any(raw.startswith(b"Nov 30 07:57:01 forgedhost") for _, raw in got)
    assert [(p.kind, p.location.line) for p in problems] == [("line-too-long", 2)]


def test_a_long_line_written_in_two_parts_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    problems: list[Problem] = []
    f = follow(log, problems)
    lines_of(f, 1 << 20)
    with log.open("ab") as out:
        out.write(b"Nov 30 08:00:00 web1 app[1]: " + b"B" * 100_000)
    first = lines_of(f, 1 << 20)
    with log.open("ab") as out:
        out.write(b"C" * 50_000 + b"\n" + b"Nov 30 08:00:01 web1 app[1]: next\n")
    rest = lines_of(f, 1 << 20)
    assert [n for n, _ in first + rest] == [1, 2]
    assert rest == [(2, b"Nov 30 08:00:01 web1 app[1]: next")]
    assert [p.kind for p in problems] == ["line-too-long"]

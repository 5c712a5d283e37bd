"""Reading the events journal with --since/--until: lines out of the range are skipped by
the time at their end, without decoding them, and nothing in range is lost to that."""

from __future__ import annotations

from pathlib import Path

from ketch.events import append, directory, encode
from ketch.events.reader import read


def test_since_and_until_select_by_time_whatever_the_attributes_hold(tmp_path: Path) -> None:
    folder = directory(str(tmp_path))
    tricky = '"timeNano":5}'  # (an attribute's value that looks like the line's end)
    for n in range(1, 10):
        append(folder, encode("container", "start", f"c{n}", {"name": f"n{n}", "x": tricky},
                              n * 1_000_000_000))
    # a line torn by a crash, and one of another writer without the time at its end
    with open(Path(folder) / "events.log", "ab") as f:
        f.write(b'{"Type":"container","Action":"die","timeNano":4500000000,"Actor":{"ID":"c45",'
                b'"Attributes":{}}}\n{"Type":"contai\n')
    got = [(ev["Actor"]["ID"], ev["Actor"]["Attributes"].get("x"))
           for ev in read(str(tmp_path), since=3_000_000_000, until=6_000_000_000,
                          follow=False)]
    assert got == [("c3", tricky), ("c4", tricky), ("c5", tricky), ("c6", tricky),
                   ("c45", None)]
    assert [ev["Actor"]["ID"] for ev in read(str(tmp_path), since=9_000_000_000,
                                             follow=False)] == ["c9"]

"""Sizes, durations and timestamps as docker prints and parses them.

Expected values come from docker/go-units' tests (size_test.go, duration_test.go),
Go's time package and the docker CLI's timestamp rules for --since/--until.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ketch.errors import InvalidArgument
from ketch.fmt import (
    human_duration,
    human_size,
    parse_duration,
    parse_size,
    parse_timestamp,
    rfc3339nano,
    time_ago,
)
from ketch.fmt.units import format_duration, rfc3339nano_ns

KB, MB, GB, TB, PB = 1000, 1000**2, 1000**3, 1000**4, 1000**5
KiB, MiB, GiB, TiB, PiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40, 1 << 50


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (1024, "1.024kB"),
        (1_000_000, "1MB"),
        (1_048_576, "1.049MB"),
        (2 * MB, "2MB"),
        (3.42 * GB, "3.42GB"),
        (5.372 * TB, "5.372TB"),
        (2.22 * PB, "2.22PB"),
        (10_000_000_000_000 * PB, "1e+04YB"),
    ],
)
def test_human_size_is_go_units_human_size(size: float, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (4100, "4.1kB"), (1_234_567, "1.23MB"), (12_900_000, "12.9MB"),
     (77_812_345, "77.8MB"), (1_999_999, "2MB")],
)  # fmt: skip
def test_image_size_column_uses_three_significant_digits(size: int, text: str) -> None:
    assert human_size(size, 3) == text


DAY, WEEK, MONTH, YEAR = 86400, 7 * 86400, 30 * 86400, 365 * 86400


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.45, "Less than a second"),
        (-5, "Less than a second"),
        (1, "1 second"),
        (45, "45 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (3 * 60, "3 minutes"),
        (35 * 60 + 40, "35 minutes"),
        (59 * 60, "59 minutes"),
        (3600, "About an hour"),
        (3600 + 29 * 60, "About an hour"),
        (3600 + 31 * 60, "2 hours"),
        (3 * 3600 + 29 * 60, "3 hours"),
        (3 * 3600 + 31 * 60, "4 hours"),
        (24 * 3600, "24 hours"),
        (DAY + 12 * 3600, "36 hours"),
        (2 * DAY, "2 days"),
        (13 * DAY + 5 * 3600, "13 days"),
        (2 * WEEK, "2 weeks"),
        (4 * WEEK + 3 * DAY, "4 weeks"),
        (MONTH, "4 weeks"),
        (MONTH + 2 * WEEK, "6 weeks"),
        (2 * MONTH, "2 months"),
        (5 * MONTH + 2 * WEEK, "5 months"),
        (24 * MONTH, "24 months"),
        (24 * MONTH + 2 * WEEK, "2 years"),
        (3 * YEAR + 2 * MONTH, "3 years"),
    ],
)
def test_human_duration_is_go_units_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_time_ago_appends_ago_to_the_elapsed_time() -> None:
    now = 1_714_564_800.0
    assert time_ago(now - 7200, now) == "2 hours ago"
    assert time_ago(now - 3 * DAY, now=now) == "3 days ago"


def test_time_ago_defaults_to_the_current_time() -> None:
    assert time_ago(datetime.now(UTC).timestamp() - 120) == "2 minutes ago"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32", 32),
        ("32b", 32),
        ("32B", 32),
        ("32k", 32 * KiB),
        ("32K", 32 * KiB),
        ("32kb", 32 * KiB),
        ("32Kb", 32 * KiB),
        ("32Kib", 32 * KiB),
        ("32KIB", 32 * KiB),
        ("512m", 512 * MiB),
        ("32Mb", 32 * MiB),
        ("32Gb", 32 * GiB),
        ("32Tb", 32 * TiB),
        ("32Pb", 32 * PiB),
        ("32PB", 32 * PiB),
        ("32P", 32 * PiB),
        ("32.3", 32),
        ("32.3 mb", int(32.3 * MiB)),
        ("0.3MB", int(0.3 * MiB)),
        ("32.5 k", int(32.5 * KiB)),
    ],
)
def test_parse_size_is_ram_in_bytes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid size: ''"),
        ("hello", "invalid size: 'hello'"),
        ("-32", "invalid size: '-32'"),
        ("32bm", "invalid suffix: 'bm'"),
        ("32x", "invalid suffix: 'x'"),
        ("32kbb", "invalid suffix: 'kbb'"),
        ("32XB", "invalid suffix: 'xb'"),
        # A suffix too long to be a unit is quoted as typed, before lower-casing.
        ("32MBYTE", "invalid suffix: 'MBYTE'"),
    ],
)
def test_parse_size_rejects_nonsense_with_go_units_messages(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_size(text)
    assert str(e.value) == message


@pytest.mark.parametrize("text", [" 32 ", "32m b", "1_000", "1.2.3k"])
def test_parse_size_rejects_malformed_numbers(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("-1.5h", -5400.0),
        ("+5s", 5.0),
        (".5s", 0.5),
        ("1h2m3.5s", 3723.5),
        ("100us", 100e-6),
        ("100\u00b5s", 100e-6),
        ("7ns", 7e-9),
    ],
)
def test_parse_duration_is_go_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("x", 'time: invalid duration "x"'),
        (".s", 'time: invalid duration ".s"'),
        ("1", 'time: missing unit in duration "1"'),
        ("10", 'time: missing unit in duration "10"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
    ],
)
def test_parse_duration_errors_are_gos(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_duration(text)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (1.5e-6, "1.5\u00b5s"), (90.5, "1m30.5s"), (5400, "1h30m0s"),
     (-2, "-2s")],
)  # fmt: skip
def test_format_duration_is_go_duration_string(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - 600),
        ("1h30m", NOW - 5400),
        ("-5m", NOW + 300),
        ("1714564800", 1_714_564_800.0),
        ("1714564800.25", 1_714_564_800.25),
        ("0", 0.0),
        ("2024-05-01T12:00:00Z", NOW),
        ("2024-05-01T12:00:00.5Z", NOW + 0.5),
        ("2024-05-01T14:00:00+02:00", NOW),
        ("2024-05-01T12:00:00.123456789Z", NOW + 0.123456789),
        ("2024-05-01Z", NOW - 12 * 3600),
        ("2024-05-01T12Z", NOW),
        ("2024-05-01T12:30Z", NOW + 1800),
        ("2024-05-01T14:30+02:00", NOW + 1800),
    ],
)
def test_parse_timestamp_with_zone_or_relative(text: str, expected: float) -> None:
    assert parse_timestamp(text, NOW) == pytest.approx(expected, abs=1e-6)


def test_parse_timestamp_without_zone_uses_the_given_local_zone() -> None:
    cest = timezone(timedelta(hours=2))
    assert parse_timestamp("2024-05-01T14:00:00", NOW, tz=cest) == NOW
    assert parse_timestamp("2024-05-01T14", NOW, tz=cest) == NOW
    assert parse_timestamp("2024-05-01T14:00", NOW, tz=cest) == NOW
    assert parse_timestamp("2024-05-01", NOW, tz=UTC) == NOW - 12 * 3600
    assert parse_timestamp("2024-05-01T14:00:00.5", NOW, tz=cest) == NOW + 0.5


@pytest.mark.parametrize(
    "text",
    ["bogus", "2024-13-01", "2024-02-30T12:00:00", "2024-05-32Z", "2024-5-1", "12:00", "1.2.3"],
)
def test_parse_timestamp_rejects_what_docker_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_timestamp(text, NOW)


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (NOW, "2024-05-01T12:00:00Z"),
        (NOW + 0.5, "2024-05-01T12:00:00.5Z"),
        (NOW + 0.123456, "2024-05-01T12:00:00.123456Z"),
        (0, "1970-01-01T00:00:00Z"),
        (datetime(2024, 5, 1, 14, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2))),
         "2024-05-01T12:00:00.25Z"),
        (datetime(2024, 5, 1, 12, 0), "2024-05-01T12:00:00Z"),
    ],
)  # fmt: skip
def test_rfc3339nano_prints_utc_with_trailing_zeros_trimmed(ts: float, text: str) -> None:
    assert rfc3339nano(ts) == text


def test_rfc3339nano_ns_keeps_all_nine_digits() -> None:
    assert rfc3339nano_ns(1_714_564_800_123_456_789) == "2024-05-01T12:00:00.123456789Z"
    assert rfc3339nano_ns(1_714_564_800_000_000_010) == "2024-05-01T12:00:00.00000001Z"


def test_go_time_prints_gos_time_string_with_the_fraction_go_keeps(monkeypatch):
    import time

    from ketch.fmt.units import go_time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert go_time(0) == "1970-01-01 00:00:00 +0000 UTC"
        assert go_time(1.25) == "1970-01-01 00:00:01.25 +0000 UTC"
        assert go_time(1764901799.0438955) == "2025-12-05 02:29:59.043896 +0000 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_durations_and_their_errors_are_read_without_re() -> None:
    # `logs --since 10m`, `events --until 0s`, `stop -t`: no `re` (with enum) at start-up
    import os
    import subprocess
    import sys

    import ketch

    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ketch.fmt.units import"
            " parse_duration, parse_timestamp\n"
            "from ketch.errors import InvalidArgument\n"
            "print(parse_duration('1h1m1.5s'), parse_timestamp('10m', 1000.0))\n"
            "try:\n    parse_duration('3x')\nexcept InvalidArgument as e:\n    print(e)\n"
            "print('re' in sys.modules, 'enum' in sys.modules)")
    src = os.path.dirname(os.path.dirname(ketch.__file__))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, src], capture_output=True,
                         text=True, check=True).stdout
    assert out == '3661.5 400.0\ntime: unknown unit "x" in duration "3x"\nFalse False\n'

"""Sizes, durations and timestamps, written and read the way docker does.

Output follows docker/go-units (HumanSize, HumanDuration) and Go's time formatting, so
`ketch images` and `ketch ps` columns read exactly like docker's. Input follows the same
parsers docker uses for flags: RAMInBytes for `--memory`, time.ParseDuration for
`--stop-timeout`-style values, and the CLI's timestamp rules for `--since/--until`.
"""

from __future__ import annotations

import time

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from datetime import datetime, tzinfo

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_MULTIPLIERS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def human_size(size: float, precision: int = 4) -> str:
    """go-units HumanSizeWithPrecision: decimal units, `precision` significant digits.

    The default (4) is HumanSize; docker's SIZE columns in `images` and `ps -s` use 3,
    which is what makes 1234567 print as "1.23MB" there.
    """
    value = float(size)
    unit = 0
    while value >= 1000.0 and unit < len(_DECIMAL_UNITS) - 1:
        value /= 1000.0
        unit += 1
    # Python's %g and Go's %g agree: same significant digits, trailing zeros dropped,
    # exponent with at least two digits.
    return f"{value:.{precision}g}{_DECIMAL_UNITS[unit]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "About an hour", "3 weeks", ...

    The thresholds are go-units' own, including its habit of saying "24 hours" and
    "13 days" rather than switching unit early.
    """
    secs = int(seconds)  # Go's int(d.Seconds()) truncates toward zero
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    # Hours round to nearest: 1h29m is "About an hour", 1h31m is "2 hours".
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def time_ago(ts: float, now: float | None = None) -> str:
    """ "3 hours ago", as in docker's CREATED column; `ts` and `now` are Unix seconds."""
    if now is None:
        now = time.time()
    return human_duration(now - ts) + " ago"


def parse_size(text: str) -> int:
    """go-units RAMInBytes: "512m" -> 536870912. Units are binary; case is ignored.

    Accepts an optional "b", "ib" after the unit letter ("32Kib", "1GB") and one space
    before it ("32.5 k"). Fractions are allowed and truncated to whole bytes.
    Raises InvalidArgument with go-units' message.
    """
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise InvalidArgument(f"invalid size: '{text}'")
    if text[sep] == " ":
        number, suffix = text[:sep], text[sep + 1 :]
    else:
        number, suffix = text[: sep + 1], text[sep + 1 :]
    size = _go_parse_float(number)
    if size < 0:
        raise InvalidArgument(f"invalid size: '{text}'")
    if not suffix:
        return _fits(int(size), text)
    lowered = suffix.lower()
    bad_suffix = InvalidArgument(f"invalid suffix: '{lowered if len(suffix) <= 3 else suffix}'")
    if len(suffix) > 3:
        raise bad_suffix
    if lowered[0] == "b":
        if len(lowered) > 1:
            raise bad_suffix
        return _fits(int(size), text)
    multiplier = _BINARY_MULTIPLIERS.get(lowered[0])
    if multiplier is None:
        raise bad_suffix
    if (len(lowered) == 2 and lowered[1] != "b") or (len(lowered) == 3 and lowered[1:] != "ib"):
        raise bad_suffix
    return _fits(int(size * multiplier), text)


def _fits(n: int, text: str) -> int:
    # go-units converts with int64(float), which wraps on amd64: 99999999999999999999g
    # would become a negative size; ketch says so instead.
    if n > 2**63 - 1:
        raise InvalidArgument(f"invalid size: '{text}': value out of range")
    return n


# `re` is imported where a pattern is used: listing (`ps`, `images`) parses nothing.
_GO_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def _go_parse_float(text: str) -> float:
    """strconv.ParseFloat for the decimal forms people type (no hex, no underscores)."""
    import re

    if not re.fullmatch(_GO_FLOAT, text):
        raise InvalidArgument(f'strconv.ParseFloat: parsing "{text}": invalid syntax')
    return float(text)


# Go's duration units, in seconds. Both micro signs are accepted, as Go does.
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _duration_part(s: str) -> tuple[str, str, str, int]:
    """The leading `digits[.digits]unit` of `s` (each part may be empty) and where it
    ends. By hand, not with `re`: `logs --since 10m` and `events --until 0s` load no
    `re` (with enum, a quarter of their start-up)."""
    end, n = 0, len(s)
    while end < n and s[end].isdecimal():
        end += 1
    whole, frac = s[:end], ""
    if end < n and s[end] == ".":
        start = end = end + 1
        while end < n and s[end].isdecimal():
            end += 1
        frac = s[start:end]
    start = end
    while end < n and not (s[end].isdecimal() or s[end] == "."):
        end += 1
    return whole, frac, s[start:end], end


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration ("1m30s", "250ms", "-1.5h") in seconds.

    Raises InvalidArgument with Go's message ('time: invalid duration "x"').
    """
    original = text
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise InvalidArgument(f'time: invalid duration "{original}"')
    total = 0.0
    while s:
        whole, frac, unit, end = _duration_part(s)
        if not whole and not frac:
            # ".s" or a unit with no number in front of it
            raise InvalidArgument(f'time: invalid duration "{original}"')
        if not unit:
            raise InvalidArgument(f'time: missing unit in duration "{original}"')
        scale = _DURATION_UNITS.get(unit)
        if scale is None:
            raise InvalidArgument(f'time: unknown unit "{unit}" in duration "{original}"')
        total += float(f"{whole or '0'}.{frac or '0'}") * scale
        s = s[end:]
    return -total if negative else total


def format_duration(seconds: float) -> str:
    """Go's Duration.String(): "1h30m0s", "250ms", "0s" (for messages and inspect output)."""
    return format_duration_ns(round(seconds * 1e9))


def format_duration_ns(ns: int) -> str:
    """Go's Duration.String() of a whole number of nanoseconds, exactly."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        # Sub-second values use the largest unit that keeps an integer part.
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim_fraction(ns, size) + unit
    hours, rem = divmod(ns, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _trim_fraction(rem, 1_000_000_000) + "s"


def _trim_fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


# --- timestamps ----------------------------------------------------------------------

_DATE = r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
_ZONE = r"(?P<z>Z|[+-]\d{2}:\d{2})"
# Go's hour field ("15") takes one or two digits; the others are fixed width. Parsing
# accepts a fraction after the seconds even when the layout has none, as Go does.
_CLOCK_FORMS = {
    0: r"T(?P<h>\d{1,2})",
    1: r"T(?P<h>\d{1,2}):(?P<mi>\d{2})",
    2: r"T(?P<h>\d{1,2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d+))?",
}


def parse_timestamp(text: str, now: float | None = None, *, tz: tzinfo | None = None) -> float:
    """A `--since`/`--until` value as Unix seconds, following the docker CLI's rules.

    - a Go duration ("10m", "1h30m") means that long before `now`;
    - RFC 3339 dates and times, with or without zone ("2024-05-01", "2024-05-01T12:00",
      "2024-05-01T12:00:00.5Z", "2024-05-01T12:00:00+02:00"); without a zone the time
      is in `tz` (default: the local zone, as docker uses the client's);
    - Unix seconds with an optional fraction ("1714564800", "1714564800.250").
    """
    if now is None:
        now = time.time()
    if text != "0":
        try:
            return now - parse_duration(text)
        except InvalidArgument:
            pass

    # Like the CLI: a Z, a "+" or three dashes mean the value carries its own zone.
    has_zone = any(c in text for c in "zZ+") or text.count("-") == 3
    if "." in text:
        pattern = _DATE + _CLOCK_FORMS[2]
    elif "T" in text:
        colons = text.count(":")
        if has_zone and "z" not in text.lower() and colons > 0:
            colons -= 1  # the colon inside a "+hh:mm" offset is not part of the clock
        pattern = _DATE + _CLOCK_FORMS[min(colons, 2)]
    else:
        pattern = _DATE
    if has_zone:
        pattern += _ZONE
    import re

    m = re.fullmatch(pattern, text)
    if m is not None:
        return _timestamp_from_match(m, text, tz)
    if "-" in text:
        raise InvalidArgument(f'parsing time "{text}": not an RFC 3339 date or time')
    # Already Unix seconds, as the API takes them.
    if not re.fullmatch(r"[+-]?\d+(?:\.\d+)?", text):
        raise InvalidArgument(f'failed to parse value as time or duration: "{text}"')
    return float(text)


def _timestamp_from_match(m: re.Match[str], text: str, tz: tzinfo | None) -> float:
    from datetime import UTC, datetime, timedelta, timezone

    parts = m.groupdict()
    zone = parts.get("z")
    if zone is None:
        zone_info: tzinfo = tz if tz is not None else _local_zone()
    elif zone == "Z":
        zone_info = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        zone_info = timezone(sign * offset)
    frac = parts.get("f") or ""
    try:
        moment = datetime(
            int(parts["y"]),
            int(parts["mo"]),
            int(parts["d"]),
            int(parts.get("h") or 0),
            int(parts.get("mi") or 0),
            int(parts.get("s") or 0),
            tzinfo=zone_info,
        )
    except ValueError as e:
        # Go's words for the field out of range ("month out of range"), not Python's
        field = next((f for f in ("month", "day", "hour", "minute", "second")
                      if str(e).startswith(f)), None)
        why = f"{field} out of range" if field else str(e)
        raise InvalidArgument(f'parsing time "{text}": {why}') from None
    # Fractions go in separately: datetime keeps only microseconds.
    fraction = int(frac) / 10 ** len(frac) if frac else 0.0
    return moment.timestamp() + fraction


def _local_zone() -> tzinfo:
    from datetime import datetime

    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def rfc3339nano(ts: float | datetime) -> str:
    """A time as docker prints `Created`: "2024-05-01T12:00:00.123456Z", always UTC.

    Go's RFC3339Nano drops trailing zeros of the fraction (and the dot with them). A
    float holds about microsecond precision for present-day times, so floats are
    rounded to microseconds; use `rfc3339nano_ns` when nanoseconds are known.
    """
    if not isinstance(ts, int | float):  # a datetime
        from datetime import UTC

        moment = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
        import math

        seconds = math.floor(moment.timestamp())
        return rfc3339nano_ns(seconds * 1_000_000_000 + moment.microsecond * 1000)
    micros = round(ts * 1_000_000)
    return rfc3339nano_ns(micros * 1000)


def rfc3339nano_ns(ns: int) -> str:
    """RFC 3339 with nanoseconds, from integer nanoseconds since the Unix epoch."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    # time.gmtime: no datetime import for the timestamps every listing prints
    t = time.gmtime(seconds)
    out = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
           f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
    if nanos:
        out += f".{nanos:09d}".rstrip("0")
    return out + "Z"


def go_time(ts: float) -> str:
    """Go's time.Time.String() in the local zone, as docker's CreatedAt columns print
    it: "2024-05-01 12:00:00 +0000 UTC", with the fraction of a second when there is
    one ("12:00:00.1473 +0000 UTC", trailing zeros dropped, as Go does)."""
    from datetime import datetime

    # rounded to microseconds as rfc3339nano rounds them, so both print the same instant
    seconds, micros = divmod(round(ts * 1_000_000), 1_000_000)
    moment = datetime.fromtimestamp(seconds).astimezone()
    fraction = f"{micros:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") \
        + moment.strftime(" %z %Z")

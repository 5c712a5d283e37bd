"""Dockerfile text → instructions and build stages, with Docker's parsing rules.

The rules follow BuildKit's `frontend/dockerfile/parser` (lexing, continuation lines,
directives, heredocs, per-instruction argument forms) and `instructions` (flags,
argument counts, stages). Nothing is expanded here: arguments are kept as written
(quotes included) so the builder can expand them with `ketch.dockerfile.shell` once it knows
the ARG and ENV values in effect.

`Instruction.args` holds, per instruction:
  RUN / CMD / ENTRYPOINT / SHELL  the exec-form list, or [the raw command string]
  ADD / COPY / VOLUME             the exec-form list, or the whitespace-separated words
  ENV / LABEL                     flattened [key, value, key, value, ...] pairs
  ARG                             the words, each `name` or `name=value`
  EXPOSE / FROM                   the whitespace-separated words
  HEALTHCHECK                     ["NONE"] or ["CMD", *command] (command as for CMD)
  MAINTAINER / STOPSIGNAL / USER / WORKDIR  [the raw rest of the line]
  ONBUILD                         [the trigger text]; the parsed trigger is in `sub`

Size: one job, BuildKit's parsing rules, one function per instruction's argument form;
the shell-word expansion and .dockerignore are their own modules.
"""

from __future__ import annotations

from ketch.dockerfile.shell import ShellLex
from ketch.errors import BuildError
from ketch.fmt.gofmt import quote as go_quote
from ketch.values import field, value

TYPE_CHECKING = False  # `typing`, `dataclasses` and `pathlib` cost milliseconds at start
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "Dockerfile",
    "DockerfileParseError",
    "Heredoc",
    "Instruction",
    "Stage",
    "parse",
    "parse_file",
    "parse_go_duration",
    "parse_instruction",
    "parse_port_spec",
]


class DockerfileParseError(BuildError):
    """A Dockerfile that Docker would also refuse; the message names the line."""

    http_status = 400

    def __init__(self, line: int, detail: str, filename: str = "Dockerfile") -> None:
        super().__init__(f"Dockerfile parse error on line {line}: {detail}")
        self.line = line
        self.detail = detail
        self.filename = filename


class _ArgError(Exception):
    """An error found while parsing one instruction; the caller adds the line."""


@value
class Heredoc:
    """A here-document attached to RUN, COPY or ADD.

    `body` is the text exactly as written (every line with its newline, tabs intact),
    because a shell that receives a compound heredoc command strips tabs itself.
    `content` is what a file created from it contains.
    """

    name: str
    body: str
    expand: bool  # False when any part of the delimiter word was quoted
    chomp_tabs: bool  # <<-WORD
    fd: int | None  # the N in N<<WORD

    @property
    def content(self) -> str:
        if not self.chomp_tabs:
            return self.body
        return "".join(line.lstrip("\t") for line in self.body.splitlines(keepends=True))


@value
class Instruction:
    cmd: str
    args: list[str]
    original: str
    flags: dict[str, str | list[str]] = field(default_factory=dict)
    json_form: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)
    line: int = 0
    sub: Instruction | None = None
    end_line: int = 0  # last line, heredoc bodies included

    def flag(self, name: str) -> str | None:
        """A single-valued flag (`--from=x` → "x"); booleans read "true"/"false"."""
        value = self.flags.get(name)
        return value if isinstance(value, str) else None

    def flag_values(self, name: str) -> list[str]:
        """All values of a repeatable flag (`--mount`, `--exclude`)."""
        value = self.flags.get(name)
        if value is None:
            return []
        return list(value) if isinstance(value, list) else [value]


@value
class Stage:
    name: str | None  # lower-cased, as Docker compares stage names
    base: str  # unexpanded image reference or earlier stage name
    platform: str | None  # unexpanded --platform value
    index: int
    instructions: list[Instruction]
    from_instr: Instruction


@value
class Dockerfile:
    directives: dict[str, str]
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]
    escape: str
    warnings: list[str]
    instructions: list[Instruction]  # every instruction in file order

    def stage(self, ref: str, before: int | None = None) -> Stage | None:
        """The stage `ref` names (a name or an index), as seen from stage `before`.

        BuildKit lets a name be reused; a reference means the latest stage with that
        name defined before the referring one.
        """
        limit = len(self.stages) if before is None else before
        if ref.isdigit():
            idx = int(ref)
            return self.stages[idx] if idx < limit else None
        wanted = ref.lower()
        for st in reversed(self.stages[:limit]):
            if st.name == wanted:
                return st
        return None


# Flag kinds, as BuildKit's BFlags declares them.
_STRING, _BOOL, _MULTI = "string", "bool", "multi"

_FLAG_SPECS: dict[str, dict[str, str]] = {
    "ADD": {
        "chown": _STRING,
        "chmod": _STRING,
        "link": _BOOL,
        "keep-git-dir": _BOOL,
        "checksum": _STRING,
        "exclude": _MULTI,
        "unpack": _BOOL,
    },
    "COPY": {
        "from": _STRING,
        "chown": _STRING,
        "chmod": _STRING,
        "link": _BOOL,
        "parents": _BOOL,
        "exclude": _MULTI,
    },
    "FROM": {"platform": _STRING},
    "RUN": {"mount": _MULTI, "network": _STRING, "security": _STRING, "device": _MULTI},
    "HEALTHCHECK": {
        "interval": _STRING,
        "timeout": _STRING,
        "start-period": _STRING,
        "start-interval": _STRING,
        "retries": _STRING,
    },
}
_NO_FLAGS: dict[str, str] = {}

# How each instruction's arguments are read (BuildKit's dispatch table).
_FORMS = {
    "ADD": "json_list",
    "COPY": "json_list",
    "VOLUME": "json_list",
    "RUN": "json",
    "CMD": "json",
    "ENTRYPOINT": "json",
    "SHELL": "json",
    "ENV": "name_val",
    "LABEL": "name_val",
    "ARG": "words",
    "EXPOSE": "split",
    "FROM": "split",
    "HEALTHCHECK": "health",
    "MAINTAINER": "string",
    "STOPSIGNAL": "string",
    "USER": "string",
    "WORKDIR": "string",
    "ONBUILD": "sub",
}

_HEREDOC_CMDS = frozenset({"RUN", "COPY", "ADD"})
_VALID_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_ONE_ARG_MSG = "{} requires exactly one argument"
_MIN_DURATION_NS = 1_000_000  # Docker's container.MinimumDuration (1ms)


# Docker splits words on these only; other Unicode spaces (NBSP) are word characters.
_SPLIT_CHARS = "\t\v\f\r "
# What str.split() would also split on, beyond _SPLIT_CHARS, in ASCII text.
_NOT_SPLIT_ASCII = frozenset("\n\x1c\x1d\x1e\x1f")
# Go's regexp \s, used around the `=` of a directive.
_GO_SPACE = "\t\n\f\r "


def _split_ws(text: str, maxsplit: int = -1) -> list[str]:
    # Hand-rolled rather than a regex: parsing must not pay for compiling patterns.
    if text.isascii() and not _NOT_SPLIT_ASCII.intersection(text):
        return text.split(None, maxsplit)
    words: list[str] = []
    word: list[str] = []
    for idx, ch in enumerate(text):
        if ch in _SPLIT_CHARS:
            if word:
                words.append("".join(word))
                word = []
                if len(words) == maxsplit:
                    rest = text[idx:].lstrip(_SPLIT_CHARS)
                    if rest:
                        words.append(rest)
                    return words
        else:
            word.append(ch)
    if word:
        words.append("".join(word))
    return words


def _directive_parts(text: str) -> tuple[str, str] | None:
    """`key = value` of a directive comment (text after the `#`), or None."""
    n = len(text)
    i = 0
    while i < n and text[i].isascii() and (text[i].isalpha() or (i > 0 and text[i].isdigit())):
        i += 1
    key = text[:i]
    rest = text[i:].lstrip(_GO_SPACE)
    if not key or not rest.startswith("="):
        return None
    value = rest[1:].strip(_GO_SPACE)
    return (key, value) if value else None


def _heredoc_opener(word: str) -> tuple[str, str, str] | None:
    """(fd, "-" or "", rest) if `word` opens a heredoc: `[n]<<[-][ ]WORD`."""
    i = 0
    while i < len(word) and "0" <= word[i] <= "9":
        i += 1
    if not word.startswith("<<", i):
        return None
    fd = word[:i]
    i += 2
    dash = ""
    if word.startswith("-", i):
        dash = "-"
        i += 1
    # BuildKit >= 0.22 also accepts whitespace between << and the word.
    rest = word[i:].lstrip()
    if "<" in rest:
        return None
    return fd, dash, rest


def _valid_stage_name(name: str) -> bool:
    if not name or not ("a" <= name[0] <= "z"):
        return False
    return all("a" <= c <= "z" or "0" <= c <= "9" or c in "-_." for c in name)


def _strip_onbuild(line: str) -> str:
    text = line.lstrip()
    if text[:7].upper() == "ONBUILD":
        text = text[7:]
    return text.lstrip()


def parse_file(path: str | Path) -> Dockerfile:
    """Read and parse a Dockerfile from disk (UTF-8, BOM allowed)."""
    import os

    with open(path, "rb") as f:
        data = f.read()
    return parse(data.decode("utf-8", errors="surrogateescape"),
                 name=os.path.basename(os.fspath(path)))


def parse(text: str, *, name: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text; raise DockerfileParseError where Docker would fail."""
    return _Parser(text, name).run()


def parse_instruction(text: str, *, escape: str = "\\", line: int = 1) -> Instruction:
    """Parse one instruction line, e.g. an ONBUILD trigger read from an image config."""
    p = _Parser(text, "Dockerfile")
    p.escape = escape
    joined = text.strip()
    if not joined:
        raise DockerfileParseError(line, "file with no instructions")
    ins = p.make(joined, line)
    ins.end_line = line
    p.validate(ins)
    return ins


class _Parser:
    def __init__(self, text: str, name: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        self.name = name
        self.lines = text.split("\n")
        self.final_newline = text.endswith("\n")
        if self.final_newline:
            self.lines.pop()
        self.escape = "\\"
        self.directives: dict[str, str] = {}
        self.warnings: list[str] = []

    def error(self, line: int, detail: str) -> DockerfileParseError:
        return DockerfileParseError(line, detail, self.name)

    # -- the line loop ------------------------------------------------------------

    def run(self) -> Dockerfile:
        lines = self.lines
        n = len(lines)
        i = 0
        looking_for_directives = True
        instructions: list[Instruction] = []
        meta_args: list[Instruction] = []
        stages: list[Stage] = []
        stage_names: set[str] = set()
        empty_continuations = False

        while i < n:
            token = lines[i].rstrip("\r").lstrip()
            i += 1
            start = i
            if looking_for_directives:
                looking_for_directives = self.directive(token, start)
            if token.startswith("#"):
                continue
            line, continued = self.trim_continuation(token)
            if not continued and not line:
                continue

            has_empty = False
            while continued and i < n:
                raw = lines[i].rstrip("\r")
                i += 1
                stripped = raw.lstrip()
                # Comment lines inside a continuation vanish; they never end it.
                if stripped.startswith("#"):
                    continue
                if not stripped:
                    has_empty = True
                    continue
                # Later lines keep their leading whitespace: Docker only trims the first.
                piece, continued = self.trim_continuation(raw)
                line += piece
            if has_empty:
                empty_continuations = True
                self.warnings.append(f"Empty continuation line found in: {line}")

            ins = self.make(line, start)
            target = ins.sub if ins.cmd == "ONBUILD" else ins
            if (
                target is not None
                and target.cmd in _HEREDOC_CMDS
                and not target.json_form
                and "<<" in line
            ):
                try:
                    docs = _heredocs_in(line)
                except _ArgError as exc:
                    raise self.error(start, str(exc)) from None
                if docs:
                    i = self.read_heredocs(docs, i, start)
                    ins.heredocs = docs
                    if target is not ins:
                        target.heredocs = docs
            ins.end_line = i
            self.validate(ins)
            instructions.append(ins)

            if ins.cmd == "FROM":
                stage_name = ins.args[2].lower() if len(ins.args) == 3 else None
                if stage_name is not None:
                    if stage_name in stage_names:
                        # BuildKit refuses it: `FROM x` and `COPY --from` could not tell
                        # the stages apart
                        raise self.error(start, f"duplicate stage name {go_quote(stage_name)},"
                                                " stage names should be unique")
                    stage_names.add(stage_name)
                platform = ins.flag("platform")
                stages.append(Stage(stage_name, ins.args[0], platform, len(stages), [], ins))
            elif stages:
                stages[-1].instructions.append(ins)
            elif ins.cmd == "ARG":
                meta_args.append(ins)
            else:
                raise self.error(start, "no build stage in current context")

        if empty_continuations:
            self.warnings.append("Empty continuation lines will become errors in a future release.")
        if not instructions:
            raise self.error(max(n, 1), "file with no instructions")
        if not stages:
            raise self.error(instructions[-1].line, "dockerfile contains no stages to build")
        return Dockerfile(
            directives=self.directives,
            meta_args=meta_args,
            stages=stages,
            escape=self.escape,
            warnings=self.warnings,
            instructions=instructions,
        )

    def directive(self, token: str, line: int) -> bool:
        """Handle a possible `# key=value` directive; False once directives are over."""
        if not token.startswith("#"):
            return False
        parts = _directive_parts(token[1:].lstrip())
        if parts is None:
            return False
        key = parts[0].lower()
        if key not in _VALID_DIRECTIVES:
            return False
        if key in self.directives:
            raise self.error(line, f"only one {key} parser directive can be used")
        value = parts[1]
        if key == "escape":
            if value not in ("\\", "`"):
                raise self.error(line, f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
        self.directives[key] = value
        return True

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Strip a trailing escape char (and blanks after it); True if the line goes on."""
        esc = self.escape
        stripped = line.rstrip(" \t")
        # An escaped escape char (`\\`) at the end is text, not a continuation.
        if stripped.endswith(esc) and (len(stripped) == 1 or stripped[-2] != esc):
            return stripped[:-1], True
        return line, False

    def read_heredocs(self, docs: list[Heredoc], i: int, start: int) -> int:
        lines = self.lines
        n = len(lines)
        for doc in docs:
            body: list[str] = []
            terminated = False
            while i < n:
                raw = lines[i]
                i += 1
                candidate = raw.rstrip("\r")
                if doc.chomp_tabs:
                    candidate = candidate.lstrip("\t")
                if candidate == doc.name:
                    terminated = True
                    break
                body.append(raw + "\n" if i < n or self.final_newline else raw)
            if not terminated:
                raise self.error(start, "unterminated heredoc")
            doc.body = "".join(body)
        return i

    # -- one instruction ----------------------------------------------------------

    def make(self, line: str, lineno: int) -> Instruction:
        """Split `line` into command, flags and arguments (no validation yet)."""
        parts = _split_ws(line.strip(), 1) or [""]
        cmd = parts[0].upper()
        form = _FORMS.get(cmd)
        if form is None:
            raise self.error(lineno, f"unknown instruction: {cmd}")
        flag_words: list[str] = []
        rest = ""
        if len(parts) == 2:
            rest, flag_words = _extract_flags(parts[1])
            rest = rest.strip()
        try:
            flags = _parse_flags(cmd, flag_words)
            json_form = False
            sub: Instruction | None = None
            if form == "json_list":
                as_json = _try_json(rest)
                json_form = as_json is not None
                args = as_json if as_json is not None else (_split_ws(rest) if rest else [])
            elif form == "json":
                args, json_form = _maybe_json(rest)
            elif form == "name_val":
                args = _name_values(rest, cmd, self.escape)
            elif form == "words":
                args = _parse_words(rest, self.escape)
            elif form == "split":
                args = _split_ws(rest) if rest else []
            elif form == "health":
                args, json_form = _health(rest)
            elif form == "string":
                args = [rest] if rest else []
            else:  # ONBUILD: the rest of the line is an instruction of its own
                args = []
                if rest:
                    sub = self.make(rest, lineno)
                    args = [_strip_onbuild(line)]
                    json_form = sub.json_form
        except _ArgError as exc:
            raise self.error(lineno, str(exc)) from None
        return Instruction(cmd, args, line, flags, json_form, [], lineno, sub, lineno)

    def validate(self, ins: Instruction) -> None:
        try:
            _validate(ins)
        except _ArgError as exc:
            raise self.error(ins.line, str(exc)) from None
        if ins.sub is not None:
            self.validate(ins.sub)


def _extract_flags(text: str) -> tuple[str, list[str]]:
    """Split leading `--flag[=value]` words off; quotes and `\\` escapes are removed.

    Returns the rest of the line and the flag words. A bare `--` ends the flags.
    """
    words: list[str] = []
    n = len(text)
    i = 0
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return "", words
        if not text.startswith("--", i):
            return text[i:], words
        word: list[str] = []
        quote = ""
        blank_ok = False  # a quoted empty value ("") still makes a word
        while i < n:
            ch = text[i]
            i += 1
            if quote:
                if ch == quote:
                    quote = ""
                elif ch != "\\":
                    word.append(ch)
                elif i < n:
                    word.append(text[i])
                    i += 1
                else:
                    quote = ""
            elif ch.isspace():
                break
            elif ch in ("'", '"'):
                quote = ch
                blank_ok = True
            elif ch != "\\":
                word.append(ch)
            elif i < n:
                word.append(text[i])
                i += 1
        value = "".join(word)
        if value == "--":
            return text[i:], words
        if value or blank_ok:
            words.append(value)


def _parse_flags(cmd: str, words: list[str]) -> dict[str, str | list[str]]:
    spec = _FLAG_SPECS.get(cmd, _NO_FLAGS)
    flags: dict[str, str | list[str]] = {}
    for w in words:
        if not w.startswith("--"):
            raise _ArgError(f"Arg should start with -- : {w}")
        name, eq, value = w[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise _ArgError(f"unknown flag: --{name}")
        if name in flags and kind != _MULTI:
            raise _ArgError(f"duplicate flag specified: --{name}")
        if kind == _BOOL:
            if eq and not value:
                raise _ArgError(f"missing a value on flag: --{name}")
            low = value.lower()
            if low in ("", "true"):
                flags[name] = "true"
            elif low == "false":
                flags[name] = "false"
            else:
                raise _ArgError(f"expecting boolean value for flag --{name}, not: {value}")
        elif not eq:
            raise _ArgError(f"missing a value on flag: --{name}")
        elif kind == _STRING:
            flags[name] = value
        else:
            existing = flags.setdefault(name, [])
            assert isinstance(existing, list)
            existing.append(value)
    return flags


def _try_json(rest: str) -> list[str] | None:
    """The exec form: a JSON array of strings, or None if `rest` is not JSON at all."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    import json  # only exec-form instructions pay for it

    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    for item in value:
        if not isinstance(item, str):
            # Valid JSON that is not a list of strings is an error, not shell form.
            raise _ArgError(
                "when using JSON array syntax, arrays must be comprised of strings only"
            )
    return value


def _maybe_json(rest: str) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    as_json = _try_json(rest)
    if as_json is not None:
        return as_json, True
    return [rest], False


def _health(rest: str) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    sep = 0
    while sep < len(rest) and not rest[sep].isspace():
        sep += 1
    kind = rest[:sep].upper()
    command, json_form = _maybe_json(rest[sep:].lstrip())
    return [kind, *command], json_form


def _parse_words(rest: str, esc: str) -> list[str]:
    """Whitespace-separated words; quotes and escapes are kept for later expansion."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    in_word = False
    i = 0
    n = len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if not quote:
            if ch.isspace():
                if blank_ok or word:
                    words.append("".join(word))
                word = []
                blank_ok = False
                in_word = False
                i += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
            elif ch == esc:
                if i + 1 == n:
                    i += 1  # an escape at the very end is dropped
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        # Inside quotes: the escape works in "..." but not in '...'.
        if ch == quote:
            quote = ""
        elif ch == esc and quote != "'":
            if i + 1 == n:
                quote = ""
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _name_values(rest: str, cmd: str, esc: str) -> list[str]:
    words = _parse_words(rest, esc)
    if not words:
        return []
    if "=" not in words[0]:
        # Legacy `ENV key value with spaces`: one pair, the value is the rest of the line.
        parts = _split_ws(rest, 1)
        if len(parts) < 2:
            raise _ArgError(f"{cmd} must have two arguments")
        return [parts[0], parts[1]]
    out: list[str] = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq:
            raise _ArgError(
                f"Syntax error - can't find = in {go_quote(w)}. Must be of the form: name=value"
            )
        out += [key, value]
    return out


def _heredocs_in(line: str) -> list[Heredoc]:
    """Find `[n]<<[-]WORD` words in an instruction line, in order."""
    try:
        words = ShellLex(raw_quotes=True, raw_escapes=True, skip_unset=True).process(line, {}).words
    except BuildError:
        # A line the shell lexer cannot split (an open quote) has no heredocs.
        return []
    docs: list[Heredoc] = []
    j = 0
    while j < len(words):
        opener = _heredoc_opener(words[j])
        j += 1
        if opener is None:
            continue
        fd, dash, rest = opener
        if not rest and j < len(words) and "<" not in words[j]:
            rest = words[j]  # `<< EOF`: the word follows after a space
            j += 1
        doc = _heredoc_from_word(fd, dash, rest)
        if doc is not None:
            docs.append(doc)
    return docs


def _heredoc_from_word(fd: str, dash: str, rest: str) -> Heredoc | None:
    if not rest:
        return None
    try:
        words = ShellLex(skip_unset=True).process(rest, {}).words
        if len(words) != 1:
            return None
        raw = ShellLex(raw_quotes=True, skip_unset=True).process(rest, {}).words
    except BuildError as exc:
        raise _ArgError(str(exc)) from None
    word = words[0]
    # Quoting any part of the word turns expansion of the body off, as in sh.
    quoted = raw[0].count("'") + raw[0].count('"') != word.count("'") + word.count('"')
    return Heredoc(word, "", not quoted, dash == "-", int(fd) if fd else None)


def _validate(ins: Instruction) -> None:
    cmd = ins.cmd
    args = ins.args
    if cmd in ("ENV", "LABEL", "ARG") and any("\0" in a for a in args):
        # Docker would store it, and no process could ever be given such a variable
        raise _ArgError(f"{cmd} names and values cannot contain a NUL byte")
    if cmd in ("ENV", "LABEL"):
        if not args:
            raise _ArgError(f"{cmd} requires at least one argument")
        if any(not key for key in args[0::2]):
            raise _ArgError(f"{cmd} names can not be blank")
    elif cmd in ("MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"):
        if len(args) != 1:
            raise _ArgError(_ONE_ARG_MSG.format(cmd))
    elif cmd in ("ADD", "COPY"):
        if len(args) < 2:
            raise _ArgError(
                f"{cmd} requires at least two arguments, but only one was provided. "
                "Destination could not be determined."
            )
    elif cmd == "FROM":
        if len(args) == 3 and args[1].lower() == "as":
            if not _valid_stage_name(args[2].lower()):
                raise _ArgError(
                    f"invalid name for build stage: {go_quote(args[2])}, "
                    "name can't start with a number or contain symbols"
                )
        elif len(args) != 1:
            raise _ArgError("FROM requires either one or three arguments")
    elif cmd == "ONBUILD":
        if ins.sub is None:
            raise _ArgError("ONBUILD requires at least one argument")
        trigger = ins.sub.cmd
        if trigger == "ONBUILD":
            raise _ArgError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("FROM", "MAINTAINER"):
            raise _ArgError(f"{trigger} isn't allowed as an ONBUILD trigger")
    elif cmd == "HEALTHCHECK":
        _validate_healthcheck(ins)
    elif cmd == "EXPOSE":
        if not args:
            raise _ArgError("EXPOSE requires at least one argument")
        for spec in args:
            # Specs with variables are checked by the builder after expansion.
            if "$" not in spec:
                _parse_port_spec(spec)
    elif cmd == "VOLUME":
        if not args:
            raise _ArgError("VOLUME requires at least one argument")
        if any(not v.strip() for v in args):
            raise _ArgError("VOLUME specified can not be an empty string")
    elif cmd == "ARG":
        if not args:
            raise _ArgError("ARG requires at least one argument")
        for word in args:
            if word.partition("=")[0] == "":
                raise _ArgError("ARG names can not be blank")
    elif cmd == "SHELL":
        if not args:
            raise _ArgError("SHELL requires at least one argument")
        if not ins.json_form:
            raise _ArgError("SHELL requires the arguments to be in JSON form")


def _validate_healthcheck(ins: Instruction) -> None:
    args = ins.args
    if not args:
        raise _ArgError("HEALTHCHECK requires at least one argument")
    kind = args[0]
    if kind == "NONE":
        if len(args) > 1:
            raise _ArgError("HEALTHCHECK NONE takes no arguments")
        return
    if kind != "CMD":
        raise _ArgError(f"Unknown type {go_quote(kind)} in HEALTHCHECK (try CMD)")
    if len(args) == 1:
        raise _ArgError("Missing command after HEALTHCHECK CMD")
    for name in ("interval", "timeout", "start-period", "start-interval"):
        value = ins.flag(name)
        if not value:
            continue
        try:
            ns = parse_go_duration(value)
        except ValueError as exc:
            raise _ArgError(str(exc)) from None
        # 0 means "use the default", as `docker run --health-interval 0` does.
        if ns != 0 and ns < _MIN_DURATION_NS:
            raise _ArgError(f"Interval {go_quote(name)} cannot be less than 1ms")
    retries = ins.flag("retries")
    if retries:
        try:
            count = int(retries, 10)
        except ValueError:
            raise _ArgError(f"invalid value for --retries: {go_quote(retries)}") from None
        if count < 0:
            raise _ArgError(f"--retries cannot be negative ({count})")


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration(text: str) -> int:
    """Parse a Go duration ("1m30s", "1.5h", "300ms") into nanoseconds.

    HEALTHCHECK flags use Go's time.ParseDuration syntax; ValueError on bad input.
    """
    from ketch.errors import InvalidArgument
    from ketch.fmt.units import parse_duration

    try:
        return round(parse_duration(text) * 1_000_000_000)
    except InvalidArgument as e:
        raise ValueError(str(e)) from None

def _port_range(text: str) -> tuple[int, int]:
    if not text:
        raise ValueError("empty string specified for ports")
    lo_s, dash, hi_s = text.partition("-")
    lo = int(lo_s) if lo_s.isdigit() else -1
    hi = int(hi_s) if dash and hi_s.isdigit() else (lo if not dash else -1)
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535) or hi < lo:
        raise ValueError(text)
    return lo, hi


def parse_port_spec(spec: str) -> list[str]:
    """Validate an EXPOSE word and return the exposed ports ("80/tcp", one per port).

    Accepts Docker's `[ip:][hostport:]port[-port][/proto]`; only the container side is
    exposed. The builder calls this after expanding EXPOSE; BuildError on bad input.
    """
    try:
        return _parse_port_spec(spec)
    except _ArgError as exc:
        raise BuildError(str(exc)) from None


def _parse_port_spec(spec: str) -> list[str]:
    parts = spec.split(":")
    container = parts[-1]
    host = parts[-2] if len(parts) >= 2 else ""
    ip = ":".join(parts[:-2]) if len(parts) >= 3 else ""
    if not container:
        raise _ArgError(f"no port specified: {spec}<empty>")
    port, slash, proto = container.partition("/")
    proto = proto.lower() if slash and proto else "tcp"
    if not port:
        raise _ArgError(f"invalid proto: {proto if slash else ''}")
    if proto not in ("tcp", "udp", "sctp"):
        raise _ArgError(f"invalid proto: {proto}")
    if ip:
        import ipaddress

        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            raise _ArgError(f"invalid IP address: {ip}") from None
    try:
        lo, hi = _port_range(port)
    except ValueError:
        raise _ArgError(f"invalid containerPort: {port}") from None
    if host:
        try:
            hlo, hhi = _port_range(host)
        except ValueError:
            raise _ArgError(f"invalid hostPort: {host}") from None
        if hhi - hlo != hi - lo and hi != lo:
            raise _ArgError(
                f"invalid ranges specified for container and host Ports: {port} and {host}"
            )
    return [f"{p}/{proto}" for p in range(lo, hi + 1)]

"""Variable expansion in Dockerfile words, the way Docker's builder does it.

This is not a shell. It implements the small word language BuildKit's `shell.Lex`
understands: `$var`, `${var}`, the `${var:-x}` / `${var-x}` / `${var:+x}` / `${var+x}` /
`${var:?msg}` / `${var?msg}` modifiers, the pattern forms `#`, `##`, `%`, `%%`, `/`, `//`,
single and double quotes (removed), the escape character, and word splitting of unquoted
expansions. Anything a real shell would do beyond that (command substitution,
arithmetic, globbing) is left alone, because the builder never runs a shell for the
instructions it expands itself.

Which instructions the builder expands is listed in `EXPANDING_INSTRUCTIONS`; RUN, CMD,
ENTRYPOINT, SHELL and HEALTHCHECK are expanded by the shell inside the container.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from ketch.errors import BuildError
from ketch.fmt.gofmt import quote as go_quote

__all__ = [
    "EXPANDED_FLAGS",
    "EXPANDING_INSTRUCTIONS",
    "Expansion",
    "ShellLex",
    "expand",
    "expand_heredoc",
    "expand_words",
    "split_shell_words",
]

# Instructions whose arguments the builder expands with the build's ARG/ENV values
# (Dockerfile reference "Environment replacement"; ARG for its default values).
# ONBUILD is listed because its trigger is expanded when it fires in a child build,
# and only if the wrapped instruction is itself in this set.
EXPANDING_INSTRUCTIONS: frozenset[str] = frozenset(
    {
        "ADD",
        "ARG",
        "COPY",
        "ENV",
        "EXPOSE",
        "FROM",
        "LABEL",
        "ONBUILD",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)

# Flag values BuildKit expands before use (commands.go Expand methods); FROM --platform
# is expanded with the global ARGs only.
EXPANDED_FLAGS: Mapping[str, frozenset[str]] = {
    "ADD": frozenset({"chown", "chmod", "checksum"}),
    "COPY": frozenset({"chown", "chmod", "from"}),
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"mount"}),
}

# POSIX special parameters: never set in a Dockerfile, so they expand to "".
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class _LexError(Exception):
    """Raised inside the lexer; wrapped into a BuildError naming the whole word."""


class Expansion:
    """The outcome of expanding one word.

    `value` keeps the spaces between words; `words` is the result after word
    splitting (unquoted expansions split on whitespace, quoted ones do not).
    `matched`/`unmatched` are the variable names that were / were not found, which the
    build cache uses to tell which build args an instruction depends on.
    """

    # A plain slotted class: a dataclass would cost a millisecond of start-up.
    __slots__ = ("value", "words", "matched", "unmatched")

    def __init__(
        self,
        value: str,
        words: list[str],
        matched: set[str] | None = None,
        unmatched: set[str] | None = None,
    ) -> None:
        self.value = value
        self.words = words
        self.matched = matched if matched is not None else set()
        self.unmatched = unmatched if unmatched is not None else set()

    def __repr__(self) -> str:
        return (
            f"Expansion(value={self.value!r}, words={self.words!r}, "
            f"matched={self.matched!r}, unmatched={self.unmatched!r})"
        )


class _Words:
    """Collects words while the lexer emits characters (BuildKit's wordsStruct)."""

    __slots__ = ("word", "words")

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.word:
                self.words.append(self.word)
                self.word = ""
        else:
            self.word += ch

    def add_raw(self, text: str) -> None:
        self.word += text

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
        return self.words


class _Scan:
    """State for expanding one word: the text, a cursor and the variables seen."""

    __slots__ = ("lex", "text", "pos", "env", "raw_escapes", "matched", "unmatched")

    def __init__(self, lex: ShellLex, text: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def lookup(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            self.unmatched.add(name)
        else:
            self.matched.add(name)
        return value

    def until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Expand up to (and consuming) `stop`, or to the end of text when stop is ""."""
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._until(stop)
        finally:
            self.raw_escapes = saved

    def _until(self, stop: str) -> tuple[str, list[str]]:
        text = self.text
        n = len(text)
        esc = self.lex.escape
        quotes = not self.lex.skip_quotes
        out: list[str] = []
        words = _Words()
        while self.pos < n:
            ch = text[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(out), words.result()
            if ch == "$":
                piece = self.dollar()
                out.append(piece)
                # Only unquoted expansions are split into words.
                words.add_string(piece)
                continue
            if quotes and ch == "'":
                piece = self.single_quoted()
                out.append(piece)
                words.add_raw(piece)
                continue
            if quotes and ch == '"':
                piece = self.double_quoted()
                out.append(piece)
                words.add_raw(piece)
                continue
            self.pos += 1
            if ch == esc:
                if self.raw_escapes:
                    words.add_raw(ch)
                    out.append(ch)
                if self.pos >= n:
                    # A lone escape at the end of the word is dropped.
                    break
                ch = text[self.pos]
                self.pos += 1
                words.add_raw(ch)
            else:
                words.add_char(ch)
            out.append(ch)
        if stop:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quoted(self) -> str:
        # Everything up to the next ' is literal; there is no way to escape a '.
        start = self.pos + 1
        end = self.text.find("'", start)
        if end < 0:
            raise _LexError("unexpected end of statement while looking for matching single-quote")
        self.pos = end + 1
        body = self.text[start:end]
        return f"'{body}'" if self.lex.raw_quotes else body

    def double_quoted(self) -> str:
        text = self.text
        n = len(text)
        esc = self.lex.escape
        out: list[str] = ['"'] if self.lex.raw_quotes else []
        self.pos += 1
        while True:
            if self.pos >= n:
                raise _LexError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                if self.pos >= n:
                    continue
                # As in sh, the escape only quotes ", $ and itself inside "...";
                # before anything else it stays a literal character.
                if text[self.pos] in ('"', "$", esc):
                    ch = text[self.pos]
                    self.pos += 1
            out.append(ch)

    def name(self) -> str:
        text = self.text
        n = len(text)
        start = self.pos
        if start >= n:
            return ""
        first = text[start]
        if first.isdecimal():
            # Positional parameters ($1, ${10}) take all following digits.
            while self.pos < n and text[self.pos].isdecimal():
                self.pos += 1
            return text[start : self.pos]
        if first in _SPECIAL_PARAMS:
            self.pos += 1
            return first
        while self.pos < n:
            ch = text[self.pos]
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            self.pos += 1
        return text[start : self.pos]

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.lex.skip_unset else ""
            return value

        self.pos += 1
        nxt = self.peek()
        if not nxt:
            raise _LexError("syntax error: missing '}'")
        if nxt in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.name()
        if self.pos >= len(self.text):
            raise _LexError("syntax error: missing '}'")
        ch = self.text[self.pos]
        self.pos += 1

        if ch == "}":
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if self.lex.skip_unset else ""
            return value

        if ch == "/":
            return self._substitute(name)

        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            if self.pos >= len(self.text):
                raise _LexError("syntax error: missing '}'")
            modifier = self.text[self.pos]
            self.pos += 1
        if modifier not in "+-?#%" and not null_is_unset:
            raise _LexError(f"unsupported modifier ({ch}) in substitution")
        if null_is_unset and modifier in "#%":
            # the pattern trims have no ':' form (BuildKit refuses `${v:#p}` outright)
            raise _LexError(f"unsupported modifier (:{modifier}) in substitution")

        # Pattern operands keep their escapes so that \* and \? stay literal.
        try:
            word, _ = self.until("}", modifier in "#%")
        except _LexError:
            if self.pos >= len(self.text):
                raise _LexError("syntax error: missing '}'") from None
            raise
        value = self.lookup(name)
        spelled = (":" if null_is_unset else "") + modifier
        if value is None and self.lex.skip_unset:
            return "${" + name + spelled + word + "}"
        unset = value is None or (null_is_unset and value == "")

        if modifier == "-":
            return word if unset else (value or "")
        if modifier == "+":
            return "" if unset else word
        if modifier == "?":
            if value is None:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if modifier in "#%":
            greedy = word.startswith(modifier)
            if greedy:
                word = word[1:]
            if modifier == "#":
                return _trim_prefix(word, value or "", greedy)
            return _trim_suffix(word, value or "", greedy)
        raise _LexError(f"unsupported modifier ({spelled}) in substitution")

    def _substitute(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.pos += 1
        try:
            pattern, _ = self.until("/", True)
        except _LexError:
            if self.pos >= len(self.text):
                raise _LexError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.until("}", True)
        except _LexError:
            if self.pos >= len(self.text):
                raise _LexError("syntax error: missing '}'") from None
            raise
        value = self.lookup(name)
        if value is None:
            if self.lex.skip_unset:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            value = ""
        regex = _shell_pattern(pattern, True, False)
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        m = regex.search(value)
        if m is None:
            return value
        return value[: m.start()] + replacement + value[m.end() :]


@functools.lru_cache(maxsize=256)
def _shell_pattern(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """Compile a `${v#pattern}` style glob (`*`, `?`, `\\*`, `\\?`, `\\\\`) to a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            # `\}` and `\/` were only escaped to get past the ${...} syntax.
            if i < n and pattern[i] in "}/":
                continue
            nxt = pattern[i] if i < n else ""
            if nxt not in ("*", "?", "\\"):
                raise _LexError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'"
                )
            out.append("\\" + nxt)
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _shell_pattern(pattern, greedy, True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse a glob but keep each escape in front of the character it escapes.
    units: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        if pattern[i] == "\\" and i + 1 < n:
            units.append(pattern[i : i + 2])
            i += 2
        else:
            units.append(pattern[i])
            i += 1
    return "".join(reversed(units))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex finds the leftmost match only, so the shortest/longest *suffix* is found
    # as a prefix of the reversed value with the reversed pattern.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


class ShellLex:
    """A configured expander; the module functions cover the common cases.

    raw_quotes:   keep quote characters in the output (heredoc name detection).
    raw_escapes:  keep escape characters in the output.
    skip_quotes:  treat quotes as ordinary characters (COPY heredoc bodies).
    skip_unset:   leave references to unset variables as written.
    """

    __slots__ = ("escape", "raw_quotes", "raw_escapes", "skip_quotes", "skip_unset")

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_quotes: bool = False,
        skip_unset: bool = False,
    ) -> None:
        if escape not in ("\\", "`"):
            raise BuildError(f"invalid escape token '{escape}' does not match ` or \\")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_quotes = skip_quotes
        self.skip_unset = skip_unset

    def process(self, word: str, env: Mapping[str, str]) -> Expansion:
        scan = _Scan(self, word, env)
        try:
            value, words = scan.until("", self.raw_escapes)
        except _LexError as exc:
            raise BuildError(f"failed to process {go_quote(word)}: {exc}") from None
        return Expansion(value, words, scan.matched, scan.unmatched)

    def _plain(self, word: str) -> bool:
        # Nothing to expand, unquote or unescape: the common case, decided cheaply.
        if "$" in word or self.escape in word:
            return False
        return self.skip_quotes or ("'" not in word and '"' not in word)


_DEFAULT = ShellLex()
_BACKTICK = ShellLex("`")


def _lexer(escape: str) -> ShellLex:
    return _DEFAULT if escape == "\\" else _BACKTICK if escape == "`" else ShellLex(escape)


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand variables in `word`, remove quotes and escapes; spaces are kept."""
    lex = _lexer(escape)
    if lex._plain(word):
        return word
    return lex.process(word, env).value


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand `text` and split it into words (unquoted expansions split on whitespace)."""
    lex = _lexer(escape)
    if lex._plain(text):
        return text.split()
    return lex.process(text, env).words


def expand_heredoc(body: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand the body of an unquoted COPY/ADD heredoc the way BuildKit does.

    Variables are replaced and escapes processed (so `\\$` gives a literal `$`), but
    quotes stay as written: the body is file content, not shell words.
    """
    if "$" not in body and escape not in body:
        return body
    return ShellLex(escape, skip_quotes=True).process(body, env).value


def split_shell_words(text: str, escape: str = "\\") -> list[str]:
    """Split `text` into words with quotes and escapes removed, `$var` kept as written."""
    lex = ShellLex(escape, skip_unset=True)
    if lex._plain(text):
        return text.split()
    return lex.process(text, {}).words

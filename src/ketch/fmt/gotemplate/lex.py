"""The lexer of Go's text/template."""

from __future__ import annotations

from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn



class TemplateError(Exception):
    """Raised inside the engine; Template turns it into InvalidArgument."""

# --- lexer ------------------------------------------------------------------------------

_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_SPACE = " \t\r\n"
# (compiled on the first number: a template without one, as most are, loads no `re`)
_NUMBER = (
    r"[+-]?(?:"
    r"0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]+)?"
    r")"
)
_WORD_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_WORD = _WORD_START | frozenset("0123456789")


def _word_end(src: str, pos: int) -> int:
    """Where the run of letters, digits and underscores from `pos` ends (Unicode ones
    too, as Go's template lexer reads identifiers)."""
    end, n = pos, len(src)
    while end < n and (src[end] in _WORD or (src[end] > "\x7f" and src[end].isalnum())):
        end += 1
    return end


@value
class Token:
    kind: str  # field var dot string number char bool nil ident keyword ( ) | := = ,
    value: Any
    pos: int
    space_before: bool
    text: str


@value
class TextItem:
    text: str
    pos: int


@value
class ActionItem:
    tokens: list[Token]
    pos: int


class Lexer:
    def __init__(self, source: str) -> None:
        self.src = source
        self.items: list[TextItem | ActionItem] = []

    def error(self, pos: int, message: str) -> NoReturn:
        raise TemplateError(f"template: :{line_of(self.src, pos)}: {message}")

    def run(self) -> list[TextItem | ActionItem]:
        src = self.src
        pos = 0
        trim_next = False
        while True:
            start = src.find("{{", pos)
            text = src[pos:] if start == -1 else src[pos:start]
            left_trim = (
                start != -1
                and src[start + 2 : start + 3] == "-"
                and (src[start + 3 : start + 4] in tuple(_SPACE))
            )
            if trim_next:
                text = text.lstrip(_SPACE)
            if left_trim:
                text = text.rstrip(_SPACE)
            if text:
                self.items.append(TextItem(text, pos))
            if start == -1:
                return self.items
            inner = start + (4 if left_trim else 2)
            if src.startswith("/*", inner):
                pos, trim_next = self._comment(inner)
            else:
                pos, trim_next = self._action(start, inner)

    def _comment(self, pos: int) -> tuple[int, bool]:
        end = self.src.find("*/", pos + 2)
        if end == -1:
            self.error(pos, "unclosed comment")
        after = end + 2
        if self.src.startswith("}}", after):
            return after + 2, False
        if self.src.startswith(" -}}", after) or (
            self.src[after : after + 1] in tuple(_SPACE) and self.src.startswith("-}}", after + 1)
        ):
            return after + 4, True
        self.error(pos, "comment ends before closing delimiter")

    def _at_right_delim(self, pos: int) -> tuple[bool, bool, int]:
        src = self.src
        if src.startswith("}}", pos):
            return True, False, pos + 2
        if src[pos : pos + 1] in tuple(_SPACE) and src.startswith("-}}", pos + 1):
            return True, True, pos + 4
        return False, False, pos

    def _action(self, start: int, pos: int) -> tuple[int, bool]:
        src = self.src
        tokens: list[Token] = []
        space = False
        paren_depth = 0
        while True:
            if pos >= len(src):
                self.error(start, "unclosed action")
            at_end, trim, after = self._at_right_delim(pos)
            if at_end:
                if paren_depth:
                    self.error(pos, "unclosed left paren")
                self.items.append(ActionItem(tokens, start))
                return after, trim
            ch = src[pos]
            if ch in _SPACE:
                space = True
                pos += 1
                continue
            tok_start = pos

            def add(
                kind: str, value: Any, end: int, tok_start: int = tok_start, space: bool = space
            ) -> None:
                tokens.append(Token(kind, value, tok_start, space, src[tok_start:end]))

            if ch == "|":
                add("|", "|", pos + 1)
                pos += 1
            elif ch == "(":
                paren_depth += 1
                add("(", "(", pos + 1)
                pos += 1
            elif ch == ")":
                paren_depth -= 1
                if paren_depth < 0:
                    self.error(pos, "unexpected right paren")
                add(")", ")", pos + 1)
                pos += 1
            elif ch == ",":
                add(",", ",", pos + 1)
                pos += 1
            elif src.startswith(":=", pos):
                add(":=", ":=", pos + 2)
                pos += 2
            elif ch == "=":
                add("=", "=", pos + 1)
                pos += 1
            elif ch == '"':
                value, pos = self._quoted(pos, '"')
                add("string", value, pos)
            elif ch == "`":
                end = src.find("`", pos + 1)
                if end == -1:
                    self.error(pos, "unterminated raw quoted string")
                add("string", src[pos + 1 : end], end + 1)
                pos = end + 1
            elif ch == "'":
                value, pos = self._quoted(pos, "'")
                if len(value) != 1:
                    self.error(tok_start, f"malformed character constant: {src[tok_start:pos]}")
                add("char", ord(value), pos)
            elif ch == "$":
                end = _word_end(src, pos + 1)
                add("var", src[pos:end], end)
                pos = end
            elif ch == "." and not src[pos + 1 : pos + 2].isdigit():
                nxt = src[pos + 1 : pos + 2]
                if not (nxt in _WORD_START or (nxt > "\x7f" and nxt.isalpha())):
                    add("dot", ".", pos + 1)
                    pos += 1
                else:
                    end = _word_end(src, pos + 1)
                    add("field", src[pos + 1 : end], end)
                    pos = end
            elif ch.isdigit() or ch == "." or (ch in "+-" and src[pos + 1 : pos + 2].isdigit()):
                import re

                m = re.compile(_NUMBER).match(src, pos)
                if m is None or (m.end() < len(src) and (src[m.end()].isalnum())):
                    end = m.end() + 1 if m is not None else pos + 1
                    self.error(pos, f'bad number syntax: "{src[pos:end]}"')
                add("number", m.group(0), m.end())
                pos = m.end()
            elif ch.isalpha() or ch == "_":
                end = _word_end(src, pos)
                word = src[pos:end]
                if word in ("true", "false"):
                    add("bool", word == "true", end)
                elif word == "nil":
                    add("nil", None, end)
                elif word in _KEYWORDS:
                    add("keyword", word, end)
                else:
                    add("ident", word, end)
                pos = end
            else:
                self.error(pos, f"unrecognized character in action: U+{ord(ch):04X} {ch!r}")
            space = False

    def _quoted(self, pos: int, quote: str) -> tuple[str, int]:
        """Decode a Go "..." string or '.' character literal starting at pos."""
        src = self.src
        out: list[str] = []
        i = pos + 1
        simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                  "v": "\v", "\\": "\\", quote: quote}  # fmt: skip
        while True:
            if i >= len(src) or src[i] == "\n":
                what = "string" if quote == '"' else "character constant"
                self.error(pos, f"unterminated quoted {what}")
            ch = src[i]
            if ch == quote:
                return "".join(out), i + 1
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            esc = src[i + 1 : i + 2]
            if esc in simple:
                out.append(simple[esc])
                i += 2
            elif esc in ("x", "u", "U"):
                n = {"x": 2, "u": 4, "U": 8}[esc]
                digits = src[i + 2 : i + 2 + n]
                if len(digits) != n or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    self.error(pos, "invalid syntax in quoted string")
                out.append(chr(int(digits, 16)))
                i += 2 + n
            elif esc in "01234567" and esc:
                digits = src[i + 1 : i + 4]
                if len(digits) != 3 or not all(c in "01234567" for c in digits):
                    self.error(pos, "invalid syntax in quoted string")
                out.append(chr(int(digits, 8)))
                i += 4
            else:
                self.error(pos, "invalid syntax in quoted string")


def line_of(source: str, pos: int) -> int:
    return 1 + source.count("\n", 0, pos)


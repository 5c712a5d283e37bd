"""The parser of Go's text/template: items from the lexer into a parse tree."""

from __future__ import annotations

from ketch.fmt.gotemplate.funcs import BUILTINS, LAZY_BUILTINS
from ketch.fmt.gotemplate.lex import ActionItem, Lexer, TemplateError, TextItem, Token, line_of
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, NoReturn


# --- parse tree --------------------------------------------------------------------------


@value
class Node:
    pos: int
    text: str  # the source it came from, shown in execution errors as <...>


@value
class FieldNode(Node):
    idents: list[str]


@value
class VariableNode(Node):
    name: str
    idents: list[str]


@value
class ChainNode(Node):
    node: Node
    idents: list[str]


@value
class IdentifierNode(Node):
    name: str


@value
class ConstNode(Node):
    value: Any


@value
class DotNode(Node):
    pass


@value
class NilNode(Node):
    pass


@value
class CommandNode(Node):
    args: list[Node]


@value
class PipeNode(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[CommandNode]


@value
class TextNode(Node):
    pass


@value
class ActionNode(Node):
    pipe: PipeNode


@value
class BranchNode(Node):
    kind: str  # if, with, range
    pipe: PipeNode
    body: list[Node]
    else_body: list[Node] | None


@value
class TemplateNode(Node):
    name: str
    pipe: PipeNode | None


@value
class LoopControlNode(Node):
    kind: str  # break, continue


class Parser:
    def __init__(self, source: str, funcs: Mapping[str, Callable[..., Any]]) -> None:
        self.src = source
        self.funcs = funcs
        self.items = Lexer(source).run()
        self.index = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.defines: dict[str, list[Node]] = {}

    def error(self, pos: int, message: str) -> NoReturn:
        raise TemplateError(f"template: :{line_of(self.src, pos)}: {message}")

    def parse(self) -> list[Node]:
        body, stop = self._list()
        if stop is not None:
            self.error(stop.pos, f"unexpected {{{{{stop.tokens[0].value}}}}}")
        return body

    def _list(self) -> tuple[list[Node], ActionItem | None]:
        """Parse nodes until EOF or an {{end}}/{{else}} action, which is returned."""
        nodes: list[Node] = []
        while self.index < len(self.items):
            item = self.items[self.index]
            self.index += 1
            if isinstance(item, TextItem):
                nodes.append(TextNode(item.pos, item.text))
                continue
            tokens = item.tokens
            if not tokens:
                self.error(item.pos, "missing value for command")
            first = tokens[0]
            if first.kind == "keyword":
                word = first.value
                if word in ("end", "else"):
                    return nodes, item
                if word in ("if", "with", "range"):
                    nodes.append(self._branch(word, item, tokens[1:]))
                elif word == "define":
                    self._define(item, tokens[1:])
                elif word in ("template", "block"):
                    nodes.append(self._template(word, item, tokens[1:]))
                elif word in ("break", "continue"):
                    if self.range_depth == 0:
                        self.error(item.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                    if len(tokens) > 1:
                        self.error(item.pos, f"unexpected {tokens[1].text} in {{{{{word}}}}}")
                    nodes.append(LoopControlNode(first.pos, word, word))
                continue
            pipe = self._pipeline(tokens, item.pos, "command", allow_decl=True)
            nodes.append(ActionNode(item.pos, self.src[item.pos : item.pos + 2], pipe))
        return nodes, None

    def _branch(self, kind: str, item: ActionItem, tokens: list[Token]) -> BranchNode:
        saved_vars = len(self.vars)
        pipe = self._pipeline(tokens, item.pos, kind, allow_decl=True, allow_two=kind == "range")
        if kind == "range":
            self.range_depth += 1
        body, stop = self._list()
        if kind == "range":
            self.range_depth -= 1
        if stop is None:
            self.error(len(self.src), "unexpected EOF")
        else_body: list[Node] | None = None
        if stop.tokens[0].value == "else":
            rest = stop.tokens[1:]
            if rest and rest[0].kind == "keyword" and rest[0].value in ("if", "with"):
                # "{{else if x}}" is shorthand for "{{else}}{{if x}}...{{end}}", sharing
                # the outer {{end}}; the nested branch consumes it.
                if rest[0].value != kind or kind == "range":
                    self.error(stop.pos, f"unexpected {rest[0].text} in else")
                nested = self._branch(rest[0].value, stop, rest[1:])
                else_body = [nested]
            else:
                if rest:
                    self.error(stop.pos, f"unexpected {rest[0].text} in else")
                else_body, stop = self._list()
                if stop is None:
                    self.error(len(self.src), "unexpected EOF")
                if stop.tokens[0].value != "end":
                    self.error(stop.pos, "expected end; found {{else}}")
                if len(stop.tokens) > 1:
                    self.error(stop.pos, f"unexpected {stop.tokens[1].text} in end")
        elif len(stop.tokens) > 1:
            self.error(stop.pos, f"unexpected {stop.tokens[1].text} in end")
        del self.vars[saved_vars:]
        return BranchNode(item.pos, kind, kind, pipe, body, else_body)

    def _define(self, item: ActionItem, tokens: list[Token]) -> None:
        if len(tokens) != 1 or tokens[0].kind != "string":
            self.error(item.pos, "define clause needs a template name string")
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        body, stop = self._list()
        self.vars, self.range_depth = saved_vars, saved_depth
        if stop is None or stop.tokens[0].value != "end":
            self.error(item.pos, "unexpected EOF in define clause")
        self.defines[tokens[0].value] = body

    def _template(self, word: str, item: ActionItem, tokens: list[Token]) -> Node:
        if not tokens or tokens[0].kind != "string":
            self.error(item.pos, f"unexpected name in {word} clause")
        name = tokens[0].value
        pipe = (
            self._pipeline(tokens[1:], item.pos, word, allow_decl=False)
            if len(tokens) > 1
            else None
        )
        if word == "block":
            self._define(item, tokens[:1])
        return TemplateNode(item.pos, word, name, pipe)

    # pipelines and commands

    def _pipeline(
        self,
        tokens: list[Token],
        pos: int,
        context: str,
        *,
        allow_decl: bool,
        allow_two: bool = False,
    ) -> PipeNode:
        decl: list[str] = []
        is_assign = False
        i = 0
        if allow_decl and tokens and tokens[0].kind == "var":
            if len(tokens) > 1 and tokens[1].kind in (":=", "="):
                decl = [tokens[0].value]
                is_assign = tokens[1].kind == "="
                i = 2
            elif (
                allow_two
                and len(tokens) > 3
                and tokens[1].kind == ","
                and tokens[2].kind == "var"
                and tokens[3].kind in (":=", "=")
            ):
                decl = [tokens[0].value, tokens[2].value]
                is_assign = tokens[3].kind == "="
                i = 4
            elif len(tokens) > 1 and tokens[1].kind == ",":
                self.error(pos, f"too many declarations in {context}")
        if is_assign:
            for name in decl:
                if name not in self.vars:
                    self.error(pos, f'undefined variable "{name}"')
        cmds = self._commands(tokens[i:], pos, context)
        if not is_assign:
            # The new names become visible after the pipeline that defines them.
            self.vars.extend(decl)
        start = tokens[0].pos if tokens else pos
        end = tokens[-1].pos + len(tokens[-1].text) if tokens else pos
        return PipeNode(start, self.src[start:end], decl, is_assign, cmds)

    def _commands(self, tokens: list[Token], pos: int, context: str) -> list[CommandNode]:
        if not tokens:
            self.error(pos, f"missing value for {context}")
        cmds: list[CommandNode] = []
        current: list[Token] = []
        depth = 0
        for tok in tokens:
            if tok.kind == "(":
                depth += 1
            elif tok.kind == ")":
                depth -= 1
            if tok.kind == "|" and depth == 0:
                if not current:
                    self.error(tok.pos, "missing command")
                cmds.append(self._command(current))
                current = []
            else:
                current.append(tok)
        if not current:
            self.error(pos, "missing command")
        cmds.append(self._command(current))
        return cmds

    def _command(self, tokens: list[Token]) -> CommandNode:
        args: list[Node] = []
        i = 0
        while i < len(tokens):
            node, i = self._operand(tokens, i)
            args.append(node)
        start = tokens[0].pos
        end = tokens[-1].pos + len(tokens[-1].text)
        return CommandNode(start, self.src[start:end], args)

    def _operand(self, tokens: list[Token], i: int) -> tuple[Node, int]:
        tok = tokens[i]
        node: Node
        if tok.kind == "(":
            depth = 0
            j = i
            while True:
                if tokens[j].kind == "(":
                    depth += 1
                elif tokens[j].kind == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner = tokens[i + 1 : j]
            end = tokens[j].pos + 1
            node = self._pipeline(inner, tok.pos, "parenthesized pipeline", allow_decl=False)
            node.pos, node.text = tok.pos, self.src[tok.pos : end]
            i = j + 1
        elif tok.kind == "field":
            idents = [tok.value]
            i += 1
            while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].space_before:
                idents.append(tokens[i].value)
                i += 1
            end = tokens[i - 1].pos + len(tokens[i - 1].text)
            # Go's parser makes a chain of fields one node placed at its second field
            # (.State.Health.Status is at .Health): error positions say so
            at = tokens[i - len(idents) + 1].pos if len(idents) > 1 else tok.pos
            return FieldNode(at, self.src[tok.pos : end], idents), i
        elif tok.kind == "var":
            if tok.value not in self.vars:
                self.error(tok.pos, f'undefined variable "{tok.value}"')
            idents = []
            i += 1
            while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].space_before:
                idents.append(tokens[i].value)
                i += 1
            end = tokens[i - 1].pos + len(tokens[i - 1].text)
            at = tokens[i - len(idents)].pos if idents else tok.pos  # as Go: at the fields
            return VariableNode(at, self.src[tok.pos : end], tok.value, idents), i
        elif tok.kind == "ident":
            if (
                tok.value not in self.funcs
                and tok.value not in BUILTINS
                and (tok.value not in LAZY_BUILTINS)
            ):
                self.error(tok.pos, f'function "{tok.value}" not defined')
            node = IdentifierNode(tok.pos, tok.text, tok.value)
            i += 1
        elif tok.kind == "dot":
            node = DotNode(tok.pos, ".")
            i += 1
        elif tok.kind == "nil":
            node = NilNode(tok.pos, "nil")
            i += 1
        elif tok.kind in ("string", "bool", "char"):
            node = ConstNode(tok.pos, tok.text, tok.value)
            i += 1
        elif tok.kind == "number":
            node = ConstNode(tok.pos, tok.text, self._number(tok))
            i += 1
        else:
            self.error(tok.pos, f'unexpected "{tok.text}" in operand')
        # A field right after a term, with no space, selects from the term's value:
        # (index .X 0).Name, $.Config
        chain: list[str] = []
        while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].space_before:
            chain.append(tokens[i].value)
            i += 1
        if chain:
            if isinstance(node, ConstNode | NilNode | DotNode):
                self.error(tok.pos, f'unexpected . after term "{node.text}"')
            end = tokens[i - 1].pos + len(tokens[i - 1].text)
            node = ChainNode(node.pos, self.src[node.pos : end], node, chain)
        return node, i

    def _number(self, tok: Token) -> int | float:
        text = tok.text.replace("_", "")
        body = text.lstrip("+-")
        negative = text.startswith("-")
        try:
            if body[:2].lower() == "0x" and not any(c in body for c in ".pP"):
                value: int | float = int(body, 16)
            elif body[:2].lower() == "0x":
                value = float.fromhex(body)
            elif body[:2].lower() == "0b":
                value = int(body[2:], 2)
            elif body[:2].lower() == "0o":
                value = int(body[2:], 8)
            elif any(c in body for c in ".eE"):
                value = float(body)
            elif len(body) > 1 and body.startswith("0"):
                value = int(body, 8)  # Go reads a leading zero as octal
            else:
                value = int(body)
        except ValueError:
            self.error(tok.pos, f'bad number syntax: "{tok.text}"')
        return -value if negative else value


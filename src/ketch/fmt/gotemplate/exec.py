"""Executing a parsed Go template over Python data."""

from __future__ import annotations

# collections.abc's Mapping, from the module that defines it: importing `collections.abc`
# loads the collections package (~1.3 ms of every `inspect -f` and `ps --format`)
from _collections_abc import Mapping
from types import BuiltinFunctionType, FunctionType, MethodType

from ketch.errors import InvalidArgument
from ketch.fmt.gofmt import MISSING, FuncError, go_string, sorted_keys, sprint_value, type_name
from ketch.fmt.gotemplate.funcs import BUILTINS, DOCKER_FUNCS, LAZY_BUILTINS, truth
from ketch.fmt.gotemplate.lex import TemplateError, line_of
from ketch.fmt.gotemplate.parse import (
    ActionNode,
    BranchNode,
    ChainNode,
    CommandNode,
    ConstNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    LoopControlNode,
    NilNode,
    Node,
    Parser,
    PipeNode,
    TemplateNode,
    TextNode,
    VariableNode,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, NoReturn


# docker/cli wraps every template error, parse or execution, in this prefix.
ERROR_PREFIX = "template parsing error: "



class Context(dict[str, "Any"]):  # (a string: typing is not imported at run time)
    """A row of a listing, as docker/cli's formatter context for it (a Go struct):
    `{{.Nope}}` is "can't evaluate field Nope in type <go_type>", a field docker has that
    the row leaves out prints empty, and `{{.Label "k"}}` reads the row's labels."""

    def __init__(self, row: Mapping[str, Any], go_type: str, known: frozenset[str],
                 labels: Mapping[str, str] | None = None) -> None:
        super().__init__(row)
        self.go_type = go_type
        self.known = known
        self.labels = labels

    def Label(self, name: str) -> str:  # noqa: N802 - the name templates call it by
        return (self.labels or {}).get(name, "")


class GoMap(dict[str, "Any"]):
    """A Go map in the typed object docker/cli's inspect executes a template on first
    (a map[string]string such as Config.Labels): a key it lacks prints `<no value>`, where
    a missing field of the decoded JSON, its fallback, is an error under missingkey=error."""

    go_nil = False


class GoSet(GoMap):
    """A Go map whose values are empty structs (Config.ExposedPorts, Config.Volumes):
    each value prints `{}`, as Go prints struct{}{}."""

    go_set = True


class NilGoMap(GoMap):
    """Such a map that is nil (JSON null): empty to a template, `null` to `json`."""

    go_nil = True


class NilGoSlice(list["Any"]):
    """A nil Go slice of docker's typed object (ExecIDs, Config.Entrypoint when unset):
    prints `[]` as Go prints it, `null` to `json`, ranges over nothing."""

    go_nil = True


class NilGoPointer:
    """A nil pointer field of docker's typed object (State.Health of a container without
    a health check, Config.StopTimeout): prints `<nil>`, `null` to `json`, and selecting
    a field from it is Go's error, "nil pointer evaluating *TYPE.FIELD"."""

    go_nil = True
    __slots__ = ("go_type",)

    def __init__(self, go_type: str) -> None:
        self.go_type = go_type

    def __str__(self) -> str:
        return "<nil>"

    def __bool__(self) -> bool:
        return False


# --- execution ----------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_CO_VARARGS = 0x04  # inspect.CO_VARARGS


def _arity(fn: Callable[..., Any]) -> tuple[int, int, bool] | None:
    """(required, positional, variadic) of a function's positional parameters.

    Read from the code object for a Python function or bound method (every template
    function and method is one): `inspect.signature` would load the inspect module and
    with it ast, tokenize and linecache, ~8 ms of a `ketch inspect -f`. Anything else
    goes to `inspect.signature`; None when neither can tell (no check, as Go's
    reflection would find none)."""
    bound = 0
    if isinstance(fn, MethodType):
        fn, bound = fn.__func__, 1
    if isinstance(fn, FunctionType):
        code = fn.__code__
        positional = code.co_argcount - bound
        defaults = len(fn.__defaults__ or ())
        return (max(0, positional - defaults), positional,
                bool(code.co_flags & _CO_VARARGS))
    return _signature_arity(fn)


_SIGNATURE_ARITIES: dict[Callable[..., Any], tuple[int, int, bool] | None] = {}


def _signature_arity(fn: Callable[..., Any]) -> tuple[int, int, bool] | None:
    if fn not in _SIGNATURE_ARITIES:  # (a dict, not functools.lru_cache: no functools)
        _SIGNATURE_ARITIES[fn] = _inspect_arity(fn)
    return _SIGNATURE_ARITIES[fn]


def _inspect_arity(fn: Callable[..., Any]) -> tuple[int, int, bool] | None:
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    fixed = [p for p in params if p.kind != p.VAR_POSITIONAL]
    required = [p for p in fixed if p.default is p.empty]
    return len(required), len(fixed), len(fixed) < len(params)


def _check_arity(name: str, fn: Callable[..., Any], nargs: int) -> str | None:
    """Go checks a call's argument count against the function; say so as Go does."""
    try:
        arity = _arity(fn)
    except TypeError:  # unhashable callables cannot be cached; skip the check
        return None
    if arity is None:
        return None
    required, fixed, variadic = arity
    if variadic:
        if nargs < required:
            return f"wrong number of args for {name}: want at least {required} got {nargs}"
        return None
    if not required <= nargs <= fixed:
        return f"wrong number of args for {name}: want {fixed} got {nargs}"
    return None


class State:
    def __init__(self, template: Template) -> None:
        self.tmpl = template
        self.vars: list[list[Any]] = []
        self.node: Node | None = None
        self.out: list[str] = []
        self.depth = 0
        self.strict = template.missingkey_error

    def error(self, message: str) -> NoReturn:
        if self.node is None:
            raise TemplateError(f"template: : {message}")
        src = self.tmpl.source
        pos = self.node.pos
        line = line_of(src, pos)
        newline = src.rfind("\n", 0, pos)
        col = pos if newline == -1 else pos - newline - 1
        context = self.node.text
        if len(context) > 20:
            context = context[:20] + "..."
        name = self.tmpl.name
        raise TemplateError(f'template: {name}:{line}:{col}: executing "{name}" at <{context}>:'
                            f" {message}")

    # variables

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.error(f"undefined variable: {name}")

    def var(self, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        self.error(f"undefined variable: {name}")

    # walking the tree

    def walk(self, dot: Any, nodes: list[Node]) -> None:
        for node in nodes:
            self.node = node
            if isinstance(node, TextNode):
                self.out.append(node.text)
            elif isinstance(node, ActionNode):
                value = self.eval_pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(go_string(value))
            elif isinstance(node, BranchNode):
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    self.walk_if_or_with(dot, node)
            elif isinstance(node, TemplateNode):
                self.walk_template(dot, node)
            elif isinstance(node, LoopControlNode):
                raise _Break() if node.kind == "break" else _Continue()

    def walk_if_or_with(self, dot: Any, node: BranchNode) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if truth(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, node: BranchNode) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            self.node = node
            iterated = False
            for key, elem in self._range_items(value):
                iterated = True
                inner = len(self.vars)
                decl = node.pipe.decl
                if decl:
                    names = [(decl[-1], elem)] + ([(decl[0], key)] if len(decl) == 2 else [])
                    for name, v in names:
                        if node.pipe.is_assign:
                            self.set_var(name, v)
                        else:
                            self._set_top(name, v)
                try:
                    self.walk(elem, node.body)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    del self.vars[inner:]
            if not iterated and node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def _set_top(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.push(name, value)

    def _range_items(self, value: Any) -> Iterator[tuple[Any, Any]]:
        if value is MISSING or value is None:
            return  # Go treats a nil map or slice as empty, not as an error
        if isinstance(value, Mapping):
            for key in sorted_keys(value):
                yield key, value[key]
        elif isinstance(value, list | tuple):
            yield from enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            for i in range(value):
                yield i, i
        else:
            self.error(f"range can't iterate over {sprint_value(value)}")

    def walk_template(self, dot: Any, node: TemplateNode) -> None:
        body = self.tmpl.defines.get(node.name)
        if body is None:
            self.error(f'template: no such template "{node.name}"')
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else None
        self.depth += 1
        if self.depth > 1000:
            self.error("exceeded maximum template depth (1000)")
        saved_vars = self.vars
        self.vars = [["$", new_dot]]
        try:
            self.walk(new_dot, body)
        finally:
            self.vars = saved_vars
            self.depth -= 1

    # pipelines

    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        value: Any = MISSING
        has_final = False
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value, has_final)
            has_final = True
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.push(name, value)
        return value

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any, has_final: bool) -> Any:
        first = cmd.args[0]
        self.node = first
        if isinstance(first, FieldNode):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final, has_final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, cmd.args, final, has_final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final, has_final)
        if isinstance(first, PipeNode):
            self._not_a_function(cmd.args, has_final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final, has_final)
        self._not_a_function(cmd.args, has_final)
        if isinstance(first, ConstNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            self.error("nil is not a command")
        self.error(f"can't evaluate command {first.text!r}")

    def _not_a_function(self, args: list[Node], has_final: bool) -> None:
        if len(args) > 1 or has_final:
            self.error(f"can't give argument to non-function {args[0].text}")

    def eval_variable(
        self, dot: Any, node: VariableNode, args: list[Node], final: Any, has_final: bool
    ) -> Any:
        self.node = node
        value = self.var(node.name)
        if not node.idents:
            self._not_a_function(args, has_final)
            return value
        return self.eval_field_chain(dot, value, node, node.idents, args, final, has_final)

    def eval_chain(
        self, dot: Any, node: ChainNode, args: list[Node], final: Any, has_final: bool
    ) -> Any:
        if len(args) > 1 and isinstance(node.node, ConstNode | NilNode):
            self.error("can't give argument to non-function")
        receiver = self.eval_arg(dot, node.node)
        return self.eval_field_chain(dot, receiver, node, node.idents, args, final, has_final)

    def eval_field_chain(
        self,
        dot: Any,
        receiver: Any,
        node: Node,
        idents: list[str],
        args: list[Node],
        final: Any,
        has_final: bool,
    ) -> Any:
        for ident in idents[:-1]:
            receiver = self.eval_field(dot, ident, node, [], MISSING, False, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, has_final, receiver)

    def eval_field(
        self,
        dot: Any,
        name: str,
        node: Node,
        args: list[Node],
        final: Any,
        has_final: bool,
        receiver: Any,
    ) -> Any:
        self.node = node
        has_args = len(args) > 1 or has_final
        if receiver is MISSING or receiver is None:
            # Selecting from nothing yields nothing, as for Go's nil interface, unless
            # missing keys are errors.
            if self.strict and receiver is MISSING:
                self.error(f'nil data; no entry for key "{name}"')
            if self.strict:
                self.error(f"nil pointer evaluating interface {{}}.{name}")
            return MISSING
        if isinstance(receiver, Context):
            method = self._extension_method(receiver, name)
            if method is not None and (name != "Label" or receiver.labels is not None):
                return self.call(dot, name, method, node, args, final, has_final)
            if name in receiver or name in receiver.known:
                if has_args:
                    self.error(f"{name} has arguments but cannot be invoked as function")
                return receiver.get(name, "")
            self.error(f"can't evaluate field {name} in type {receiver.go_type}")
        if isinstance(receiver, Mapping):
            # Go looks for a method before the map key, and a map entry takes no arguments.
            method = self._extension_method(receiver, name)
            if method is not None:
                return self.call(dot, name, method, node, args, final, has_final)
            if has_args:
                self.error(f"{name} is not a method but has arguments")
            value = receiver.get(name, MISSING)
            if value is MISSING and self.strict and not isinstance(receiver, GoMap):
                self.error(f'map has no entry for key "{name}"')
            return value
        if isinstance(receiver, NilGoPointer):
            self.error(f"nil pointer evaluating {receiver.go_type}.{name}")
        if name.startswith("_") or isinstance(
            receiver, str | int | float | bool | list | tuple | bytes
        ):
            self.error(f"can't evaluate field {name} in type {type_name(receiver)}")
        try:
            attr = getattr(receiver, name)
        except AttributeError:
            self.error(f"can't evaluate field {name} in type {type_name(receiver)}")
        if isinstance(attr, MethodType | BuiltinFunctionType):
            return self.call(dot, name, attr, node, args, final, has_final)
        if has_args:
            self.error(f"{name} has arguments but cannot be invoked as function")
        return attr

    @staticmethod
    def _extension_method(receiver: Mapping[str, Any], name: str) -> Any:
        """A public method a dict subclass adds, like docker's header context Label()."""
        if type(receiver) in (dict,) or hasattr(dict, name) or name.startswith("_"):
            return None
        attr = getattr(receiver, name, None)
        return attr if isinstance(attr, MethodType) else None

    def eval_function(
        self,
        dot: Any,
        node: IdentifierNode,
        cmd: Node,
        args: list[Node],
        final: Any,
        has_final: bool,
    ) -> Any:
        self.node = node
        name = node.name
        if name in LAZY_BUILTINS and name not in self.tmpl.funcs:
            operands = args[1:]
            if not operands and not has_final:
                self.error(f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = MISSING
            for operand in operands:
                value = self.eval_arg(dot, operand)
                if truth(value) != (name == "and"):
                    return value
            if has_final:
                value = final
            return value
        fn = self.tmpl.funcs.get(name) or BUILTINS.get(name)
        assert fn is not None  # the parser rejected unknown names
        return self.call(dot, name, fn, cmd, args, final, has_final)

    def call(
        self,
        dot: Any,
        name: str,
        fn: Callable[..., Any],
        cmd: Node,
        args: list[Node],
        final: Any,
        has_final: bool,
    ) -> Any:
        """Call fn with the evaluated args (and the piped value last), as evalCall does."""
        # Go checks the count before evaluating anything and blames the function name;
        # a failing call is blamed on the whole command.
        problem = _check_arity(name, fn, len(args) - 1 + int(has_final))
        if problem is not None:
            self.error(problem)
        argv = [self.eval_arg(dot, a) for a in args[1:]]
        if has_final:
            argv.append(None if final is MISSING else final)
        self.node = cmd
        try:
            return fn(*argv)
        except FuncError as e:
            self.error(f"error calling {name}: {e}")
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as e:
            # A function given wrong types fails here rather than in a Go type check.
            self.error(f"error calling {name}: {e}")

    def eval_arg(self, dot: Any, node: Node) -> Any:
        self.node = node
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, NilNode):
            return None
        if isinstance(node, ConstNode):
            return node.value
        if isinstance(node, FieldNode):
            value = self.eval_field_chain(dot, dot, node, node.idents, [node], MISSING, False)
        elif isinstance(node, VariableNode):
            value = self.eval_variable(dot, node, [node], MISSING, False)
        elif isinstance(node, ChainNode):
            value = self.eval_chain(dot, node, [node], MISSING, False)
        elif isinstance(node, PipeNode):
            value = self.eval_pipeline(dot, node)
        elif isinstance(node, IdentifierNode):
            value = self.eval_function(dot, node, node, [node], MISSING, False)
        else:
            self.error(f"can't handle {node.text} as argument")
        # A missing value passed to a function arrives as nil, as in Go.
        return None if value is MISSING else value


class Template:
    """A compiled Go template. Parse errors raise InvalidArgument at construction."""

    def __init__(self, text: str, funcs: Mapping[str, Callable[..., Any]] | None = None,
                 *, missingkey_error: bool = False, name: str = "",
                 exec_prefix: str = ERROR_PREFIX) -> None:
        """`name`: the template's name in execution errors (docker's `version` names its
        template "version"); `exec_prefix`: what such an error starts with (the docker
        CLI's inspect says "template parsing error: ", `version` and `info` nothing)."""
        self.source = text
        self.name = name
        self.exec_prefix = exec_prefix
        self.missingkey_error = missingkey_error
        self.funcs: dict[str, Callable[..., Any]] = dict(DOCKER_FUNCS)
        if funcs:
            self.funcs.update(funcs)
        try:
            parser = Parser(text, self.funcs)
            self.root = parser.parse()
        except TemplateError as e:
            message = str(e)
            if name:
                message = message.replace("template: :", f"template: {name}:", 1)
            raise _bare(InvalidArgument(ERROR_PREFIX + message)) from None
        self.defines = parser.defines

    def execute(self, data: Any) -> str:
        """Run the template with `data` as dot (and $); raises InvalidArgument on errors."""
        state = State(self)
        state.push("$", data)
        try:
            state.walk(data, self.root)
        except TemplateError as e:
            raise _bare(InvalidArgument(self.exec_prefix + str(e))) from None
        except RecursionError:
            raise _bare(InvalidArgument(
                self.exec_prefix + "template: : exceeded maximum template depth"
            )) from None
        return "".join(state.out)


def _bare(e: InvalidArgument) -> InvalidArgument:
    """A template error, which the docker CLI prints as it is (no "Error: ")."""
    e.bare = True
    return e


# --- docker's table output ------------------------------------------------------------------

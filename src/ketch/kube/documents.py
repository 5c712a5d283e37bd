"""Reading Kubernetes YAML: the documents of a file, typed field access that names the
file, the document and the field path in every error, and Kubernetes' quantities.

Errors are one line, as kubectl's are: `app.yaml: document 2 (Deployment web):
spec.template.spec.containers[0].image: required`. The CLI turns them into exit 125.
"""

from __future__ import annotations

import re

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


# a DNS-1123 label: container, volume and host names
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class KubeError(InvalidArgument):
    """YAML that is not Kubernetes ketch can play: refused before anything is made."""

    exit_code = 125


# JSON-schema type names, as Kubernetes' OpenAPI documents use them
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "boolean": (bool,), "object": (dict,),
    "array": (list,), "number": (int, float),
}


def _type_name(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


class Doc:
    """One YAML document of a file: where errors and warnings say they come from."""

    def __init__(self, source: str, index: int, body: dict[str, Any]) -> None:
        self.source = source
        self.index = index
        self.body = body
        meta = body.get("metadata")
        kind, name = body.get("kind"), meta.get("name") if isinstance(meta, dict) else ""
        self.kind: str = kind if isinstance(kind, str) else ""
        self.name: str = name if isinstance(name, str) else ""

    def where(self) -> str:
        what = " ".join(p for p in (self.kind, self.name) if p)
        return f"{self.source}: document {self.index}" + (f" ({what})" if what else "")

    def fail(self, path: str, message: str) -> NoReturn:
        raise KubeError(f"{self.where()}: {path}: {message}" if path
                        else f"{self.where()}: {message}")

    def warning(self, path: str, message: str) -> str:
        return f"{self.where()}: {path}: {message}"

    def get(self, obj: dict[str, Any], key: str, typ: str, path: str, *,
            required: bool = False, default: Any = None) -> Any:
        """obj[key] checked to be of JSON type `typ` (null counts as absent)."""
        full = f"{path}.{key}" if path else key
        v = obj.get(key)
        if v is None:
            if required:
                self.fail(full, "required")
            return default
        if typ == "number" and isinstance(v, bool) or (
                typ == "integer" and isinstance(v, bool)) or not isinstance(v, _TYPES[typ]):
            self.fail(full, f"expected {typ}, got {_type_name(v)}"
                      + (f" {v!r}" if not isinstance(v, (dict, list)) else ""))
        if typ == "string" and required and not v:
            self.fail(full, "required (empty)")
        return v

    def obj(self, obj: dict[str, Any], key: str, path: str, *, required: bool = False
            ) -> dict[str, Any]:
        return self.get(obj, key, "object", path, required=required, default={})

    def objects(self, obj: dict[str, Any], key: str, path: str, *, required: bool = False
                ) -> list[tuple[str, dict[str, Any]]]:
        """A list of objects, each with its path (`containers[2]`)."""
        full = f"{path}.{key}" if path else key
        items = self.get(obj, key, "array", path, required=required, default=[])
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.fail(f"{full}[{i}]", f"expected object, got {_type_name(item)}")
            out.append((f"{full}[{i}]", item))
        return out

    def strings(self, obj: dict[str, Any], key: str, path: str) -> list[str]:
        full = f"{path}.{key}" if path else key
        items = self.get(obj, key, "array", path, default=[])
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail(f"{full}[{i}]", f"expected string, got {_type_name(item)}")
        return list(items)

    def string_map(self, obj: dict[str, Any], key: str, path: str) -> dict[str, str]:
        full = f"{path}.{key}" if path else key
        m = self.obj(obj, key, path)
        for k, v in m.items():
            if not isinstance(v, str):
                self.fail(f"{full}.{k}", f"expected string, got {_type_name(v)}")
        return dict(m)

    def int_or_string(self, obj: dict[str, Any], key: str, path: str, *,
                      required: bool = False) -> int | str | None:
        full = f"{path}.{key}" if path else key
        v = obj.get(key)
        if v is None:
            if required:
                self.fail(full, "required")
            return None
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            self.fail(full, f"expected integer or string, got {_type_name(v)}")
        return v

    def size(self, path: str, v: object) -> int:
        """A quantity of bytes ("64Mi")."""
        try:
            n = quantity(v)
        except ValueError:
            self.fail(path, f"not a quantity: {v!r}")
        if n < 0:
            self.fail(path, f"must not be negative, got {v!r}")
        return int(n)

    def check_fields(self, obj: dict[str, Any], path: str, known: frozenset[str]) -> None:
        """Refuse a field Kubernetes does not define here (kubectl's strict validation)."""
        for k in obj:
            if k not in known:
                self.fail(f"{path}.{k}" if path else str(k), "unknown field")


def load(text: str, source: str) -> list[Doc]:
    """The non-empty documents of a YAML stream, each a mapping with apiVersion and kind."""
    import yaml

    try:
        try:  # libyaml's loader when PyYAML has it: ~15x quicker than the Python one
            bodies = list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader",
                                                             yaml.SafeLoader)))
        except yaml.YAMLError:
            # the Python loader again for the error: its wording is the one users see
            bodies = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise KubeError(f"{source}: not YAML{where}: {problem}") from None
    docs = []
    for i, body in enumerate(bodies, 1):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise KubeError(f"{source}: document {i}: expected a Kubernetes object (a"
                            f" mapping with apiVersion and kind), got {_type_name(body)}")
        doc = Doc(source, i, body)
        doc.get(body, "apiVersion", "string", "", required=True)
        doc.get(body, "kind", "string", "", required=True)
        docs.append(doc)
    if not docs:
        raise KubeError(f"{source}: no Kubernetes objects in it")
    return docs


# -- quantities (k8s.io/apimachinery resource.Quantity) ------------------------------------
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9,
            "T": 1e12, "P": 1e15, "E": 1e18}


def quantity(value: object) -> float:
    """A Kubernetes quantity ("128Mi", "0.5", "250m", "1e3") as a number; ValueError
    when it is not one."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(value)
    import re

    m = re.fullmatch(r"([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?",
                     value.strip())
    if not m:
        raise ValueError(value)
    number, suffix = float(m.group(1)), m.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * 10 ** int(suffix[1:])

"""The build executor: Docker's classic builder over ketch's images, containers and layers.

Every instruction of a stage becomes an image whose parent is the previous step's image,
recorded with a cache key; the cache is those images themselves (moby's classic
design): a step is reused when the current image has a child with the same key. The key
is the instruction as Docker writes it into the history (`/bin/sh -c #(nop)  CMD [...]`,
`|1 A=1 /bin/sh -c make`), after variable expansion, so it covers the build args the
step sees; COPY/ADD name their sources by a tarsum-like checksum (see checksum.py). The
parent image ID covers everything before the step, so the first changed step and every
later one re-run, and an unchanged rebuild gives the same image ID.

RUN runs a real container from the previous step's image (same runtime, networking and
monitor as `ketch run`), streams its output, and the container's overlay upper dir
becomes the layer. COPY/ADD write through an overlay of the previous image and its upper
dir becomes the layer. Metadata instructions add no layer (`empty_layer: true`).

Output is the classic builder's (`Step 2/7 : WORKDIR /app`, ` ---> Using cache`,
` ---> Running in …`, ` ---> <id>`, `Successfully built …`); the caller renders it.

Size: one job, Docker's classic builder: one handler per Dockerfile instruction over one
shared step state and cache lookup. The parsing (dockerfile/), the context
(builder/context.py), COPY sources (builder/copy.py) and the snapshots
(builder/snapshot.py) are already modules of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath

from ketch.dockerfile.parser import parse, parse_instruction
from ketch.dockerfile.shell import expand, expand_heredoc
from ketch.errors import BuildError, ImageNotFound, KetchError
from ketch.fmt.gofmt import quote as go_quote
from ketch.fmt.units import format_duration_ns
from ketch.images.hashing import small_sha256
from ketch.reference import is_full_image_id
from ketch.values import field, value

# An unchanged rebuild is mostly interpreter start-up: this module imports only what a
# fully cached build needs. `typing`, `pathlib` and `hashlib` (OpenSSL) cost milliseconds
# each; running, committing and copying load their machinery when a step misses.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    from ketch.builder.cachefrom import CacheSources
    from ketch.builder.checksum import ChecksumCache
    from ketch.builder.context import BuildContext, Source, SourceRoot
    from ketch.builder.events import BuildEvent, Cancellation
    from ketch.builder.host import BuildHost
    from ketch.builder.snapshot import Workspace
    from ketch.builder.watchdog import Watchdog
    from ketch.dockerfile.parser import Dockerfile, Instruction, Stage
    from ketch.images.service import NewLayer

    Emit = Callable[[BuildEvent], None]

CACHE_KEY_VERSION = "ketch-build/1"
DEFAULT_SHELL = ["/bin/sh", "-c"]

# Predefined ARGs (Dockerfile reference): usable without a declaration, passed to RUN,
# but kept out of the history and the cache key unless the Dockerfile declares them.
PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})


@value
class BuildOptions:
    """What `docker build`'s flags ask for."""

    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    platform: str | None = None
    remove: bool = True  # --rm: a step's container goes once the step is committed
    force_remove: bool = False  # --force-rm: also the one of a failed step
    extra_hosts: list[str] = field(default_factory=list)  # --add-host: RUN's /etc/hosts
    # -m, --cpu-*, --ulimit, --security-opt, ...: the HostConfig of every RUN container
    run_host_config: dict[str, Any] = field(default_factory=dict)
    # --cache-from: images whose histories are cache sources (ketch.builder.cachefrom)
    cache_from: list[str] = field(default_factory=list)


@value
class BuildResult:
    image_id: str
    tags: list[str]
    warnings: list[str]


class _State:
    """One stage while it is being built: the current image and what the next step sees."""

    def __init__(self, stage: Stage, image_id: str | None, config: dict[str, Any],
                 layers: list[NewLayer] | None, args: dict[str, str | None] | None = None
                 ) -> None:
        self.stage = stage
        self.image_id = image_id
        self.config = config
        # None until a step needs them (Builder._layers): a cache hit only needs the config.
        self.layers = layers
        self.args: dict[str, str | None] = args if args is not None else {}
        self.cmd_set = False

    @property
    def run_config(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})

    @property
    def shell(self) -> list[str]:
        return list(self.run_config.get("Shell") or DEFAULT_SHELL)

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])


def _clone(value: Any) -> Any:
    """A deep copy of JSON data (an image config): copy.deepcopy's result for it, without
    importing copy and weakref at the start of every build."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _has_raw_bytes(text: str) -> bool:
    """True when `text` carries bytes that were not UTF-8 (kept as lone surrogates by
    the surrogateescape decoding of the Dockerfile)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_text(value: Any) -> Any:
    """JSON data as Docker stores it: each byte that was not UTF-8 becomes U+FFFD (Go's
    json.Marshal does so per byte), never a lone surrogate escape."""
    if isinstance(value, str):
        if not _has_raw_bytes(value):
            return value
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    if isinstance(value, dict):
        return {_json_text(k): _json_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_text(v) for v in value]
    return value


def _go_quote_list(items: list[str] | None) -> str:
    """Go's %q of a []string: ["node" "server.js"]."""
    return "[" + " ".join(go_quote(i) for i in (items or [])) + "]"


def _healthcheck_text(hc: dict[str, Any]) -> str:
    """What Docker's %q of a *HealthConfig prints, used in the history and the key."""
    retries = int(hc.get("Retries") or 0)
    durations = " ".join(f'"{format_duration_ns(int(hc.get(k) or 0))}"'
                         for k in ("Interval", "Timeout", "StartPeriod", "StartInterval"))
    return f"&{{{_go_quote_list(hc.get('Test'))} {durations} '\\x{retries:02x}'}}"


def _dockerfile_quote(value: str) -> str:
    """A double-quoted Dockerfile word whose expansion is exactly `value`."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _short(image_id: str | None) -> str:
    return (image_id or "").split(":", 1)[-1][:12]


class Builder:
    """Runs one build. `emit` gets its events (ketch.builder.events): the classic
    builder's output lines, RUN output as the container writes it, the image built."""

    def __init__(self, engine: BuildHost, context: BuildContext, dockerfile_text: str,
                 dockerfile_name: str, options: BuildOptions, emit: Emit,
                 cancel: Cancellation | None = None) -> None:
        self.engine = engine
        self.cancel = cancel
        self.images = engine.images
        self.context = context
        self.text = dockerfile_text
        self.name = dockerfile_name
        self.options = options
        self.emit = emit
        self.build_args = {k: v for k, v in options.build_args.items() if v is not None}
        self.consumed: set[str] = set()
        self.meta: dict[str, str | None] = {}
        self.results: dict[int, _State] = {}
        self.step_no = 0
        self.total = 0
        self.escape = "\\"
        self.df: Dockerfile | None = None
        self._checksums: ChecksumCache | None = None
        self._watchdog: Watchdog | None = None
        # Chain IDs whose layers this build found in the store (cache hits check each once).
        self._verified_chains: set[str] = set()
        self.warnings: list[str] = []
        self._cache_from: CacheSources | None = None

    # -- output ------------------------------------------------------------------------
    def say(self, line: str) -> None:
        from ketch.builder.events import BuildLog

        self.emit(BuildLog(line + "\n"))

    def emit_bytes(self, data: bytes) -> None:
        from ketch.builder.events import BuildOutput

        self.emit(BuildOutput(data))

    # -- the whole build ---------------------------------------------------------------
    def build(self) -> BuildResult:
        from ketch import reference

        tags = [str(reference.parse(t)) for t in self.options.tags]
        self._check_platform(self.options.platform)
        if self.options.run_host_config or self.options.extra_hosts:
            # refused before any step runs, with the messages `run` gives
            for w in self.engine.containers.check_host_config(
                    {**self.options.run_host_config, "ExtraHosts": self.options.extra_hosts}):
                self.warnings.append(w)
                self.say(f"[Warning] {w}")
        df = parse(self.text, name=self.name)
        self.df = df
        self.escape = df.escape
        for w in df.warnings:
            self.say(f"[WARNING]: {w}")
        self._meta_args(df)
        target = self._target(df)
        needed = self._needed(df, target)
        stages = [s for s in df.stages[: target.index + 1] if s.index in needed]
        # the ARGs before the first FROM are steps of their own, as the classic builder
        # counts and prints them
        self.total = len(df.meta_args) + sum(1 + len(s.instructions) for s in stages)
        label_instr = self._label_instruction()
        if label_instr is not None:
            self.total += 1
        for ins in df.meta_args:
            self._step(ins)
        try:
            for stage in stages:
                extra = [label_instr] if stage is target and label_instr is not None else []
                self.results[stage.index] = self._build_stage(stage, extra)
        finally:
            self._finish()
        final = self.results[target.index]
        if final.image_id is None:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        from ketch.builder.events import BuildImage

        self.emit(BuildImage(final.image_id))  # moby's aux message, before the warnings
        unused = sorted(k for k in self.options.build_args
                        if k not in self.consumed and k not in PROXY_ARGS)
        if unused:
            msg = f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed"
            self.warnings.append(msg)
            self.say(msg)
        records = self.engine.records
        # An unchanged rebuild finds its tags in place and writes nothing.
        moved = [t for t in tags if records.lookup_tag(t) != final.image_id]
        if moved:
            with self.engine.db.transaction() as conn:
                for t in moved:
                    records.set_tag(conn, t, final.image_id)
            for t in moved:  # as dockerd journals a build's tags
                self.images.event("tag", final.image_id, reference.parse(t).familiar())
        self.say(f"Successfully built {_short(final.image_id)}")
        for t in tags:
            self.say(f"Successfully tagged {reference.parse(t).familiar()}")
        return BuildResult(final.image_id, tags, self.warnings)

    def _finish(self) -> None:
        if self._checksums is not None:
            try:
                self._checksums.flush()
            except Exception:  # noqa: BLE001 - an optimisation must never fail a build
                pass
        if self._watchdog is not None:
            self._watchdog.close()

    @property
    def watchdog(self) -> Watchdog:
        if self._watchdog is None:
            from ketch.builder.watchdog import Watchdog

            self._watchdog = Watchdog(str(self.engine.root), str(self.engine.run_root))
        return self._watchdog

    @property
    def checksums(self) -> ChecksumCache:
        if self._checksums is None:
            from ketch.builder.checksum import ChecksumCache

            self._checksums = ChecksumCache(self.engine.db, self.context.root,
                                            persistent=not self.context.temporary)
        return self._checksums

    def _check_platform(self, value: str | None) -> None:
        if not value:
            return
        from ketch.oci.model import host_platform

        host = host_platform()
        parts = value.lower().split("/")
        want = [host.os, host.architecture] + ([host.variant] if host.variant else [])
        if parts[0] != host.os or (len(parts) > 1 and parts[1] != host.architecture) or (
                len(parts) > 2 and parts[2] != (host.variant or parts[2])):
            raise BuildError(f'platform "{value}" is not supported: ketch builds for the'
                             f" host platform ({'/'.join(want)}) only")

    # -- ARGs, stages and what the target needs ----------------------------------------
    def _platform_args(self) -> dict[str, str]:
        from ketch.oci.model import host_platform

        p = host_platform()
        plat = f"{p.os}/{p.architecture}" + (f"/{p.variant}" if p.variant else "")
        out = {}
        for prefix in ("TARGET", "BUILD"):
            out[prefix + "PLATFORM"] = plat
            out[prefix + "OS"] = p.os
            out[prefix + "ARCH"] = p.architecture
            out[prefix + "VARIANT"] = p.variant or ""
        return out

    def _arg_value(self, name: str, default: str | None, fallback: str | None) -> str | None:
        if name in self.build_args:
            self.consumed.add(name)
            return self.build_args[name]
        if default is not None:
            return default
        if fallback is not None:
            return fallback
        return self._platform_args().get(name)

    def _meta_args(self, df: Dockerfile) -> None:
        for ins in df.meta_args:
            for word in ins.args:
                name, eq, raw = word.partition("=")
                env = {k: v for k, v in self.meta.items() if v is not None}
                default = expand(raw, env, self.escape) if eq else None
                self.meta[name] = self._arg_value(name, default, None)

    def _meta_env(self) -> dict[str, str]:
        return {k: v for k, v in self.meta.items() if v is not None}

    def _target(self, df: Dockerfile) -> Stage:
        if not self.options.target:
            return df.stages[-1]
        st = df.stage(self.options.target) if not self.options.target.isdigit() else None
        if st is None:
            raise BuildError(f"failed to reach build target {self.options.target} in"
                             " Dockerfile")
        return st

    def _needed(self, df: Dockerfile, target: Stage) -> set[int]:
        """The target and every stage it reaches through FROM and COPY --from."""
        needed: set[int] = set()
        todo = [target]
        meta = self._meta_env()
        while todo:
            st = todo.pop()
            if st.index in needed:
                continue
            needed.add(st.index)
            dep = df.stage(expand(st.base, meta, self.escape), before=st.index)
            if dep is not None:
                todo.append(dep)
            for ins in st.instructions:
                ref = ins.flag("from") if ins.cmd == "COPY" else None
                if ref:
                    dep = df.stage(expand(ref, meta, self.escape), before=st.index)
                    if dep is not None:
                        todo.append(dep)
        return needed

    def _label_instruction(self) -> Instruction | None:
        """`--label`s become a LABEL step at the end of the target stage (classic builder)."""
        if not self.options.labels:
            return None
        words = " ".join(f"{_dockerfile_quote(k)}={_dockerfile_quote(v)}"
                         for k, v in sorted(self.options.labels.items()))
        return parse_instruction("LABEL " + words)

    # -- stages -------------------------------------------------------------------------
    def _step(self, ins: Instruction) -> None:
        self.step_no += 1
        self.say(f"Step {self.step_no}/{self.total} : {ins.original.strip()}")

    def _build_stage(self, stage: Stage, extra: list[Instruction]) -> _State:
        assert self.df is not None
        self._step(stage.from_instr)
        meta = self._meta_env()
        if stage.platform:
            self._check_platform(expand(stage.platform, meta | self._platform_args(),
                                        self.escape))
        base = expand(stage.base, meta, self.escape)
        if not base:
            raise BuildError(f"base name ({stage.base}) should not be blank")
        dep = self.df.stage(base, before=stage.index)
        if dep is not None:
            prev = self.results[dep.index]
            layers = list(prev.layers) if prev.layers is not None else None
            st = _State(stage, prev.image_id, _clone(prev.config), layers,
                        dict(prev.args))
        elif base.lower() == "scratch":
            st = _State(stage, None, self._scratch_config(), [])
        else:
            st = self._from_image(stage, base)
        if dep is None:
            from ketch.oci import DEFAULT_PATH_ENV

            # as docker build: the stage's image has a PATH (the default one when its
            # base has none, FROM scratch too), and its base's comment and author are
            # not its own (MAINTAINER sets an author)
            env = list(st.run_config.get("Env") or [])
            if not any(e.startswith("PATH=") for e in env):
                st.run_config["Env"] = [DEFAULT_PATH_ENV, *env]
            st.config.pop("comment", None)
            st.config.pop("author", None)
        triggers = list(st.run_config.get("OnBuild") or [])
        if triggers:
            # The triggers run now, in this build, and are not inherited further.
            st.run_config["OnBuild"] = None
            word = "trigger" if len(triggers) == 1 else "triggers"
            self.say(f"# Executing {len(triggers)} build {word}")
            for text in triggers:
                ins = parse_instruction(text, escape=self.escape)
                if ins.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
                    raise BuildError(f"{ins.cmd} isn't allowed as an ONBUILD trigger")
                self._dispatch(st, ins)
        self.say(f" ---> {_short(st.image_id)}")
        for ins in list(stage.instructions) + extra:
            self._step(ins)
            self._dispatch(st, ins)
            self.say(f" ---> {_short(st.image_id)}")
        return st

    def _scratch_config(self) -> dict[str, Any]:
        from ketch.oci.model import host_platform

        p = host_platform()
        cfg: dict[str, Any] = {"architecture": p.architecture, "os": p.os, "config": {},
                               "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        if p.variant:
            cfg["variant"] = p.variant
        return cfg

    def _from_image(self, stage: Stage, name: str) -> _State:
        # As `docker build`: a base image missing here is pulled; `--pull` pulls it even
        # when present (a newer one may have been pushed). A full image ID is never pulled.
        if self.options.pull and not is_full_image_id(name):
            self._pull(name)
        try:
            rec = self.images.resolve(name)
        except ImageNotFound:
            if is_full_image_id(name):
                raise BuildError(f"No such image: {name}") from None
            if not self.options.pull:  # with --pull it was pulled just above
                self._pull(name)
            rec = self.images.resolve(name)
        return _State(stage, rec.id, self._state_config(self.images.read_config(rec.id)),
                      None)

    def _pull(self, name: str) -> None:
        try:
            for event in self.engine.pull(name):
                if not getattr(event, "bar", False):
                    self.say(str(event))
        except KetchError as e:
            raise BuildError(f"failed to pull base image {name}: {e.message}") from None

    @staticmethod
    def _state_config(config: dict[str, Any]) -> dict[str, Any]:
        config.setdefault("config", {})
        config.setdefault("history", [])
        return config

    def _layers(self, st: _State) -> list[NewLayer]:
        """The current image's layers (blobs and diff IDs), read when a step first needs
        them: only a step that commits does."""
        if st.layers is None:
            st.layers = self.images.new_layers(st.image_id) if st.image_id else []
        return st.layers

    # -- dispatch -------------------------------------------------------------------------
    def _dispatch(self, st: _State, ins: Instruction) -> None:
        cmd = ins.cmd
        if cmd == "RUN":
            self._run(st, ins)
        elif cmd in ("COPY", "ADD"):
            self._copy(st, ins)
        elif cmd == "ARG":
            self._arg(st, ins)
        elif cmd == "FROM":
            raise BuildError("FROM isn't allowed here")
        else:
            self._metadata(st, ins)

    def _env(self, st: _State) -> dict[str, str]:
        """What $VAR expands to: the stage's ARGs, overridden by ENV (reference "ARG")."""
        env = {k: v for k, v in st.args.items() if v is not None}
        for e in st.run_config.get("Env") or []:
            k, _, v = e.partition("=")
            env[k] = v
        return env

    def _nop(self, st: _State, comment: str, single: bool = False) -> str:
        # Docker writes WORKDIR/COPY/ADD as one "#(nop) X" word and the rest as two
        # ("#(nop) ", "X"), hence one space or two after "#(nop)".
        sep = " " if single else "  "
        return " ".join(st.shell) + f" #(nop){sep}{comment}"

    def _key(self, st: _State, kind: str, created_by: str, *extra: str) -> str:
        data = json.dumps([CACHE_KEY_VERSION, kind, created_by, *extra],
                          separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + small_sha256(data.encode("utf-8", "surrogateescape")).hexdigest()

    def _probe(self, st: _State, key: str, created_by: str | None = None,
               config: dict[str, Any] | None = None) -> bool:
        """A cache hit for the step: the local cache, then the --cache-from images (for a
        step whose `created_by` says all it does, the `config` it ends with)."""
        if self.options.no_cache:
            return False
        hit = self.images.cached_config(st.image_id, key, self._verified_chains)
        if hit is None and self.options.cache_from and created_by is not None:
            if self._cache_from is None:
                from ketch.builder.cachefrom import CacheSources

                self._cache_from = CacheSources(self.images, self.options.cache_from)
            hit = self._cache_from.lookup(st.image_id, st.config, created_by,
                                          _clone(st.config if config is None else config),
                                          key)
        if hit is None:
            return False
        self.say(" ---> Using cache")
        st.image_id = hit[0]
        st.config = self._state_config(hit[1])
        st.layers = None
        return True

    def _commit(self, st: _State, config: dict[str, Any], created_by: str, key: str,
                layer: NewLayer | None) -> None:
        from ketch.images.service import now_rfc3339

        now = now_rfc3339()
        config = _json_text(config)
        created_by = _json_text(created_by)
        config["created"] = now
        hist: dict[str, Any] = {"created": now, "created_by": created_by}
        layers = list(self._layers(st))
        if layer is None:
            hist["empty_layer"] = True
        else:
            config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
            config["rootfs"].setdefault("diff_ids", []).append(layer.diff_id)
            layers.append(layer)
        config.setdefault("history", []).append(hist)
        rec = self.images.commit(config, layers, parent=st.image_id, cache_key=key)
        st.image_id, st.config, st.layers = rec.id, config, layers

    # -- metadata instructions -------------------------------------------------------------
    def _metadata(self, st: _State, ins: Instruction) -> None:
        from ketch.images.changes import apply_instruction

        env = self._env(st)

        def exp(s: str) -> str:
            return expand(s, env, self.escape)

        config = _clone(st.config)
        try:
            apply_instruction(config, ins, exp, cmd_set=st.cmd_set)
        except KetchError as e:
            raise BuildError(str(e)) from None
        c = config.setdefault("config", {})
        cmd = ins.cmd
        extra: list[str] = []
        single = False
        if cmd == "CMD":
            comment = f"CMD {_go_quote_list(c.get('Cmd'))}"
        elif cmd == "ENTRYPOINT":
            comment = f"ENTRYPOINT {_go_quote_list(c.get('Entrypoint'))}"
            extra = [f"cmd_set={st.cmd_set}"]
        elif cmd in ("ENV", "LABEL"):
            pairs = [f"{exp(k)}={exp(v)}" for k, v in zip(ins.args[::2], ins.args[1::2],
                                                            strict=True)]
            comment = f"{cmd} " + " ".join(pairs)
        elif cmd == "EXPOSE":
            from ketch.dockerfile.parser import parse_port_spec

            ports: list[str] = []
            for a in ins.args:
                for word in exp(a).split():
                    ports.extend(parse_port_spec(word))
            comment = "EXPOSE " + " ".join(sorted(set(ports)))
        elif cmd == "USER":
            comment = f"USER {c.get('User', '')}"
        elif cmd == "WORKDIR":
            comment = f"WORKDIR {c.get('WorkingDir', '')}"
            single = True
        elif cmd == "VOLUME":
            comment = "VOLUME [" + " ".join(exp(a) for a in ins.args) + "]"
        elif cmd == "STOPSIGNAL":
            comment = f"STOPSIGNAL {c.get('StopSignal', '')}"
        elif cmd == "ONBUILD":
            comment = f"ONBUILD {ins.args[0]}"
        elif cmd == "SHELL":
            comment = "SHELL [" + " ".join(c.get("Shell") or []) + "]"
        elif cmd == "HEALTHCHECK":
            comment = f"HEALTHCHECK {_healthcheck_text(c.get('Healthcheck') or {})}"
        elif cmd == "MAINTAINER":
            comment = f"MAINTAINER {config.get('author', '')}"
        else:
            raise BuildError(f"unknown instruction: {cmd}")
        # The history shows the command with the shell in force before this step.
        created_by = self._nop(st, comment, single)
        key = self._key(st, cmd, created_by, *extra)
        if cmd == "CMD":
            st.cmd_set = True
        if self._probe(st, key, created_by, config):
            return
        self._commit(st, config, created_by, key, None)

    def _arg(self, st: _State, ins: Instruction) -> None:
        env = self._env(st)
        parts = []
        for word in ins.args:
            name, eq, raw = word.partition("=")
            default = expand(raw, env, self.escape) if eq else None
            # `ARG NAME` inside a stage takes the global (pre-FROM) value, if any.
            st.args[name] = self._arg_value(name, default, self.meta.get(name))
            parts.append(name + (f"={default}" if eq else ""))
        created_by = self._nop(st, "ARG " + " ".join(parts))
        key = self._key(st, "ARG", created_by)
        if self._probe(st, key, created_by):
            return
        self._commit(st, _clone(st.config), created_by, key, None)

    # -- RUN ----------------------------------------------------------------------------
    def _run_args(self, st: _State) -> tuple[list[str], list[str]]:
        """(declared ARGs as KEY=value for the history and key, undeclared proxy args)."""
        env_keys = {e.partition("=")[0] for e in st.run_config.get("Env") or []}
        declared = sorted(f"{k}={v}" for k, v in st.args.items()
                          if v is not None and k not in env_keys)
        proxies = [f"{k}={v}" for k, v in sorted(self.build_args.items())
                   if k in PROXY_ARGS and k not in st.args and k not in env_keys]
        return declared, proxies

    def _run(self, st: _State, ins: Instruction) -> None:
        for flag in ("mount", "security", "device"):
            if ins.flags.get(flag):
                raise BuildError(f"the --{flag} option requires BuildKit; ketch's builder is"
                                 " the classic one")
        network = ins.flag("network")
        if network not in (None, "default", "none", "host"):
            raise BuildError(f"unsupported RUN --network value {network!r}: use default,"
                             " none or host")
        script: Path | None = None
        if ins.json_form:
            cmd = list(ins.args)
        elif ins.heredocs:
            cmd, script = self._heredoc_command(st, ins)
        else:
            cmd = st.shell + [ins.args[0] if ins.args else ""]
        declared, proxies = self._run_args(st)
        save = ([f"|{len(declared)}", *declared] if declared else []) + cmd
        created_by = " ".join(save)
        pipe_name = "heredoc" if not script else ins.heredocs[0].name
        if script is None and not ins.json_form and _has_raw_bytes(cmd[-1]):
            # config.json is JSON, which cannot carry bytes that are not UTF-8: the shell
            # reads the command from a file instead, so it gets them unchanged.
            pipe_name = "ketch-run"
            script = self._script_file(cmd[-1], pipe_name)
            cmd = st.shell + [f". /dev/pipes/{pipe_name}"]
        extra = ["script:" + small_sha256(script.read_bytes()).hexdigest()] if script else []
        if network not in (None, "default"):
            extra.append(f"network={network}")
        key = self._key(st, "RUN", created_by, *extra)
        try:
            # a script's content is not in created_by: such a step is no --cache-from hit
            if self._probe(st, key, None if script else created_by):
                return
            binds = [f"{script}:/dev/pipes/{pipe_name}:ro"] if script else []
            with self._container(st, cmd, declared + proxies, binds,
                                 network) as (cid, keep):
                from pathlib import Path

                from ketch.builder.snapshot import commit_upper, drop_mount_points
                from ketch.oci.digest import chain_ids

                chains = chain_ids(st.diff_ids)
                lowers = self.engine.layers.lower_dirs(chains) if chains else []
                upper = Path(self.engine.containers.path(cid), "upper")
                # (a kept container gets them again from the runtime when it starts)
                drop_mount_points(upper, lowers)
                # The layer and the image that uses it are recorded under the GC's
                # shared lock: a concurrent `rmi` must not sweep the layer in between.
                with self.images.writing():
                    layer = commit_upper(self.engine, upper, lowers,
                                         chains[-1] if chains else None, move=not keep)
                    self._commit(st, _clone(st.config), created_by, key, layer)
        finally:
            if script is not None:
                script.unlink(missing_ok=True)

    def _heredoc_command(self, st: _State, ins: Instruction) -> tuple[list[str], Path | None]:
        """RUN with here-documents, as BuildKit runs them.

        `RUN <<EOF` alone runs the body as a script (its `#!` line, if any, picks the
        interpreter); anything else is handed to the shell with the bodies appended, so
        the shell itself feeds each heredoc to its command.
        """
        from ketch.dockerfile.shell import split_shell_words

        line = ins.args[0] if ins.args else ""
        words = split_shell_words(line, self.escape)
        docs = ins.heredocs
        if len(docs) == 1 and len(words) == 1 and words[0].lstrip("0123456789").startswith("<<"):
            body = docs[0].content
            if not body.startswith("#!"):
                return st.shell + [body], None
            return [f"/dev/pipes/{docs[0].name}"], self._script_file(body, docs[0].name)
        text = line + "\n" + "".join(d.body + d.name + "\n" for d in docs)
        return st.shell + [text], None

    def _script_file(self, body: str, name: str) -> Path:
        """A host file with `body`'s bytes, to bind into a RUN container."""
        from ketch.store.intents import owner_tag

        tmp = self.engine.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / f"heredoc-{owner_tag()}-{name}"
        path.write_text(body, encoding="utf-8", errors="surrogateescape")
        os.chmod(path, 0o755)
        return path

    @contextlib.contextmanager
    def _container(self, st: _State, cmd: list[str], extra_env: list[str],
                   binds: list[str], network: str | None = None
                   ) -> Iterator[tuple[str, bool]]:
        """Run `cmd` in a container of the current image, streaming its output; yields
        (container id, kept?) once it exited 0, and removes it afterwards by --rm rules."""
        if st.image_id is None:
            raise BuildError("Please provide a source image with `from` prior to run")
        svc = self.engine.containers
        config: dict[str, Any] = {
            "Image": st.image_id, "Cmd": cmd, "Entrypoint": [], "Env": extra_env,
            # A RUN container runs no health checks (Docker: withoutHealthcheck).
            "Healthcheck": {"Test": ["NONE"]},
        }
        if network in (None, "default"):
            network = self.options.network or "default"
        host_config: dict[str, Any] = {**self.options.run_host_config, "NetworkMode": network}
        if binds:
            host_config["Binds"] = binds
        if self.options.extra_hosts:
            host_config["ExtraHosts"] = list(self.options.extra_hosts)
        wd = self.watchdog
        wd.start()  # before the container exists, so a SIGKILL at any point is covered
        rec = svc.create(config, host_config)
        cid = rec.id
        wd.add("container", cid)
        keep = not self.options.remove and not self.options.force_remove
        ok = False
        try:
            self.say(f" ---> Running in {cid[:12]}")
            holder: dict[str, Any] = {}

            def attach_first(paths: Any) -> None:
                holder["s"] = svc.lifecycle.monitor(rec).attach(paths)

            try:
                svc.lifecycle.start(cid, before_start=attach_first)
            except BaseException:
                if "s" in holder:
                    holder["s"].close()
                raise
            with holder["s"] as session:
                # a cancelled build stops waiting for a step that prints nothing
                forget = (self.cancel.on_cancel(session.interrupt) if self.cancel
                          else None)
                try:
                    session.stream(stdout=self.emit_bytes, stderr=self.emit_bytes,
                                   detach_keys=None)
                finally:
                    if forget is not None:
                        forget()
            if session.interrupted:
                with contextlib.suppress(KetchError):
                    svc.kill(cid)  # (kept by --rm=false or not, it does not run on)
                raise BuildError("the build was cancelled")
            code = svc.wait(cid)
            if code != 0:
                raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero"
                                 f" code: {code}", code=code if 0 < code < 256 else 1)
            yield cid, keep
            ok = True
        finally:
            # --rm removes the containers of committed steps; a failed step's container
            # goes too unless the user asked to keep them (--rm=false without --force-rm).
            if self.options.force_remove or not keep:
                try:
                    svc.remove(cid, force=True, volumes=True)
                finally:
                    wd.done("container", cid)
                if ok:
                    self.say(f" ---> Removed intermediate container {cid[:12]}")
            else:
                wd.done("container", cid)

    # -- COPY / ADD ------------------------------------------------------------------------
    def _copy(self, st: _State, ins: Instruction) -> None:
        from ketch.builder.copyargs import (
            container_dest,
            dest_is_dir,
            is_url,
            parse_chmod,
        )

        cmd = ins.cmd
        env = self._env(st)

        def exp(s: str) -> str:
            return expand(s, env, self.escape)

        words = list(ins.args)
        docs = list(ins.heredocs)
        raw_srcs, dest = words[:-1], exp(words[-1])
        chown = exp(ins.flag("chown") or "")
        chmod_text = exp(ins.flag("chmod") or "")
        chmod = parse_chmod(chmod_text)
        from_ref = exp(ins.flag("from") or "") if cmd == "COPY" else ""
        for unsupported in ("exclude", "parents", "keep-git-dir"):
            if ins.flags.get(unsupported) not in (None, "false"):
                raise BuildError(f"{cmd} --{unsupported} is not supported by ketch's builder")
        checksum = exp(ins.flag("checksum") or "")
        # Sources: heredocs, URLs (ADD), or paths in the context / another stage.
        heredocs: list[tuple[str, bytes]] = []
        urls: list[str] = []
        paths: list[str] = []
        for w in raw_srcs:
            if docs and not ins.json_form and w.lstrip("0123456789").startswith("<<"):
                doc = docs.pop(0)
                body = doc.content
                if doc.expand:
                    body = expand_heredoc(body, env, self.escape)
                heredocs.append((doc.name, body.encode("utf-8", "surrogateescape")))
                continue
            src = exp(w)
            if cmd == "ADD" and is_url(src):
                urls.append(src)
            else:
                paths.append(src)
        workdir = st.run_config.get("WorkingDir") or "/"
        cdest = container_dest(dest, workdir)
        count = len(heredocs) + len(urls)
        root: SourceRoot | None = None
        from_ws: Workspace | None = None
        downloads: list[Any] = []
        try:
            sources: list[Source] = []
            if paths:
                root, from_ws = self._source_root(st, from_ref)
                sources = root.resolve(paths, cmd)
            count += len(sources)
            into_dir = dest_is_dir(dest)
            if count > 1 and not into_dir:
                raise BuildError(f"When using {cmd} with more than one source file, the"
                                 " destination must be a directory and end with a /")
            digests = []
            if sources:
                from ketch.builder.checksum import ChecksumCache, sources_digest

                assert root is not None
                cache = self.checksums if from_ws is None else ChecksumCache(
                    None, root.root, persistent=False)
                digests.append(sources_digest(root, sources, cache))
            for name, data in heredocs:
                digests.append("file:" + small_sha256(
                    name.encode() + b"\0" + data).hexdigest())
            if urls:
                from ketch.builder.copy import download

                for url in urls:
                    d = download(url, self.engine.root / "tmp")
                    downloads.append(d)
                    if checksum and checksum != "sha256:" + d.digest:
                        raise BuildError(f"ADD failed: digest mismatch for {url}: expected"
                                         f" {checksum}, got sha256:{d.digest}")
                    digests.append("file:" + small_sha256(
                        f"{d.name}\0{d.digest}".encode()).hexdigest())
            src_hash = digests[0] if len(digests) == 1 else "multi:" + small_sha256(
                ",".join(digests).encode()).hexdigest()
            flags = (f"--chown={chown} " if chown else "") + (
                f"--chmod={chmod_text} " if chmod_text else "")
            created_by = self._nop(st, f"{cmd} {flags}{src_hash} in {dest} ", single=True)
            key = self._key(st, cmd, created_by)
            if self._probe(st, key, created_by):
                return
            self._copy_miss(st, created_by, key, cmd, root, sources, heredocs, downloads,
                            cdest, into_dir, chown, chmod)
        finally:
            if from_ws is not None:
                from_ws.close()
            for d in downloads:
                d.path.unlink(missing_ok=True)

    def _source_root(self, st: _State, from_ref: str) -> tuple[SourceRoot, Workspace | None]:
        if not from_ref:
            return self.context, None
        from ketch.builder.context import SourceRoot
        from ketch.builder.snapshot import Workspace
        from ketch.oci.digest import chain_ids

        assert self.df is not None
        dep = self.df.stage(from_ref, before=st.stage.index)
        if dep is not None:
            prev = self.results.get(dep.index)
            if prev is None:
                raise BuildError(f"invalid from flag value {from_ref}: stage was not built")
            diff_ids = prev.diff_ids
        else:
            try:
                rec = self.images.resolve(from_ref)
            except ImageNotFound:
                if is_full_image_id(from_ref):
                    raise BuildError(f"invalid from flag value {from_ref}: No such image:"
                                     f" {from_ref}") from None
                self._pull(from_ref)
                rec = self.images.resolve(from_ref)
            self.images.ensure_unpacked(rec)
            diff_ids = self.images.get_config(rec).diff_ids
        ws = Workspace(self.engine, chain_ids(diff_ids), self.watchdog)
        try:
            merged = ws.mount()
        except BaseException:
            ws.close()
            raise
        return SourceRoot(merged, None, label=f"stage {from_ref}"), ws

    def _copy_miss(self, st: _State, created_by: str, key: str, cmd: str,
                   root: SourceRoot | None, sources: list[Source],
                   heredocs: list[tuple[str, bytes]], downloads: list[Any], cdest: str,
                   into_dir: bool, chown: str, chmod: int | None) -> None:
        from ketch.builder.copy import Copier, is_archive, resolve_chown
        from ketch.builder.snapshot import Workspace, commit_upper
        from ketch.oci.digest import chain_ids

        chains = chain_ids(st.diff_ids)
        ws = Workspace(self.engine, chains, self.watchdog)
        try:
            merged = ws.mount()
            copier = Copier(merged, resolve_chown(merged, chown), chmod)
            # Docker's WORKDIR makes the directory; ketch's WORKDIR is metadata only, so
            # the first step that writes files makes it (RUN: the runtime, here: COPY).
            copier.ensure_workdir(st.run_config.get("WorkingDir") or "/")
            for src in sources:
                if cmd == "ADD" and not src.is_dir and is_archive(src.path):
                    copier.extract_tar(src, cdest)
                else:
                    assert root is not None
                    copier.copy_source(root, src, cdest, into_dir)
            for name, data in heredocs:
                target = posixpath.join(cdest, name) if into_dir else cdest
                copier.write_bytes(target, data)
            for d in downloads:
                target = posixpath.join(cdest, d.name) if into_dir else cdest
                copier.write_bytes(target, d.path.read_bytes(), 0o600, d.mtime_ns)
            copier.finish()
            ws.unmount()
            with self.images.writing():
                layer = commit_upper(self.engine, ws.upper, ws.lowers,
                                     chains[-1] if chains else None)
                self._commit(st, _clone(st.config), created_by, key, layer)
        except OSError as e:
            raise BuildError(f"{cmd} failed: {e.strerror or e}"
                             + (f": {e.filename}" if e.filename else "")) from None
        finally:
            ws.close()


def build(engine: BuildHost, context: BuildContext, dockerfile_text: str, dockerfile_name: str,
          options: BuildOptions, emit: Emit, cancel: Cancellation | None = None
          ) -> BuildResult:
    """Run a build, its events to `emit`; the caller owns (and closes) the context.
    `cancel` stops a step's waiting when the build is cancelled."""
    return Builder(engine, context, dockerfile_text, dockerfile_name, options, emit,
                   cancel).build()

"""Sandbox networking through CNI plugins, as the kubelet expects of a node's runtime.

The network is the first configuration file (lexical order) in the CNI configuration
directory: a `.conflist`, or a single plugin's `.conf`/`.json`, as libcni reads them.
Each plugin of the list is executed in turn (found on the plugin path, CNI_PATH) with
the CNI protocol: the operation and sandbox in CNI_* variables, the plugin's network
configuration on stdin (with `name`, `cniVersion`, the previous plugin's `prevResult`,
and `runtimeConfig.portMappings` for a plugin that declares that capability, e.g.
portmap), and its result or error as JSON on stdout. Before it, as containerd does, the
`loopback` plugin brings up `lo` when it is installed, unless the caller says `lo` is up
already (a namespace ketch made has it up from the start: the plugin's exec, ~15 ms,
would change nothing, and its DEL, on a namespace about to go, neither).

What ADD was given and what it returned are kept under the state root
(`<root>/cri/cni/<sandbox>.json`): DEL, which the CRI asks for on StopPodSandbox and
again on RemovePodSandbox, runs from that copy (the plugins in reverse order, with the
cached result as `prevResult`), so it works after a configuration change or a restart
of the server, and is a no-op once it has succeeded.

Settings: `ketch system cri --cni-conf-dir DIR --cni-bin-dir DIR[:DIR...]`, else the
`[cri]` table of the root's ketch.toml (`cni_conf_dir`, `cni_bin_dir` a string or a
list), else containerd's defaults: /etc/cni/net.d and /opt/cni/bin, plus /usr/lib/cni
where Debian's containernetworking-plugins installs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from ketch.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
CONFIG_FILE = "ketch.toml"
IFNAME = "eth0"
_EXTENSIONS = (".conf", ".conflist", ".json")
_SETTINGS = ("cni_conf_dir", "cni_bin_dir")
# what containerd's CNI library runs for the sandbox's loopback interface
_LOOPBACK = {"cniVersion": "0.3.1", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}
_PLUGIN_TIMEOUT = 60
_PROFILE_DIR = os.environ.get("KETCH_CRI_PROFILE", "")


class CniError(KetchError):
    """A plugin failed, or there is no usable network configuration."""


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


class Cni:
    """The CNI settings of a CRI server and the operations on a sandbox's network."""

    def __init__(self, root: str, conf_dir: str = "", bin_dirs: str = "") -> None:
        file_conf, file_bins = _from_file(root)
        self.conf_dir = conf_dir or file_conf or DEFAULT_CONF_DIR
        if bin_dirs:
            self.bin_dirs = [d for d in bin_dirs.split(":") if d]
        else:
            self.bin_dirs = file_bins or list(DEFAULT_BIN_DIRS)
        for d in (self.conf_dir, *self.bin_dirs):
            if not os.path.isabs(d):
                raise InvalidArgument(f"invalid CNI directory {d!r}: the path must be"
                                      " absolute")
        self.cache_dir = os.path.join(root, "cri", "cni")

    # -- configuration ---------------------------------------------------------------
    def network(self) -> dict[str, Any] | None:
        """The network list of the first configuration file, None without one; a file
        that is not a valid configuration is a CniError naming it."""
        try:
            names = sorted(n for n in os.listdir(self.conf_dir) if n.endswith(_EXTENSIONS))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CniError(f"cannot read the CNI configuration directory: {e}") from None
        for name in names:
            path = os.path.join(self.conf_dir, name)
            if not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                raise CniError(f"invalid CNI configuration {path}: {e}") from None
            if not isinstance(data, dict):
                raise CniError(f"invalid CNI configuration {path}: not a JSON object")
            if name.endswith(".conflist"):
                plugins = data.get("plugins")
                if not isinstance(plugins, list) or not plugins or not all(
                        isinstance(p, dict) and isinstance(p.get("type"), str)
                        for p in plugins):
                    raise CniError(f"invalid CNI configuration {path}: `plugins` must list"
                                   " plugin configurations, each with a `type`")
                net = {"cniVersion": str(data.get("cniVersion") or "0.4.0"),
                       "name": str(data.get("name") or ""), "plugins": plugins}
            else:
                if not isinstance(data.get("type"), str) or not data["type"]:
                    continue  # libcni skips a .conf without a plugin type
                net = {"cniVersion": str(data.get("cniVersion") or "0.4.0"),
                       "name": str(data.get("name") or ""), "plugins": [data]}
            if not net["name"]:
                raise CniError(f"invalid CNI configuration {path}: the network has no name")
            return net
        return None

    def not_ready(self) -> str:
        """Why sandbox networking through CNI is not ready; "" when it is."""
        try:
            net = self.network()
        except CniError as e:
            return f"cni config load failed: {e.message}: cni plugin not initialized"
        if net is None:
            return (f"cni config load failed: no network config found in {self.conf_dir}:"
                    " cni plugin not initialized")
        for p in net["plugins"]:
            if self._find(p["type"]) is None:
                return (f"cni plugin {p['type']!r} of network {net['name']!r} not found in"
                        f" {':'.join(self.bin_dirs)}")
        return ""

    def _find(self, kind: str) -> str | None:
        if "/" in kind or kind in ("", ".", ".."):
            return None
        for d in self.bin_dirs:
            path = os.path.join(d, kind)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return None

    # -- operations ------------------------------------------------------------------
    def add(self, sandbox_id: str, netns: str, args: dict[str, str],
            port_mappings: list[dict[str, Any]], lo_up: bool = False) -> dict[str, Any]:
        """Attach the sandbox's namespace to the network; the network's result. On a
        failure whatever was added is deleted again and the error raised. `lo_up`: the
        namespace's loopback is up already (no loopback plugin)."""
        net = self.network()
        if net is None:
            raise CniError(f"no network config found in {self.conf_dir}: cni plugin not"
                           " initialized")
        entry: dict[str, Any] = {
            "network": net, "netns": netns, "ifname": IFNAME, "args": args,
            "runtimeConfig": {"portMappings": port_mappings}, "result": None,
            "loopback": not lo_up and self._find("loopback") is not None}
        self._save(sandbox_id, entry)  # first: DEL knows what to undo after a crash
        try:
            if entry["loopback"]:
                self._run_list("ADD", _LOOPBACK, sandbox_id, netns, "lo", args, {})
            entry["result"] = self._run_list("ADD", net, sandbox_id, netns, IFNAME, args,
                                             entry["runtimeConfig"], progress=entry)
            self._save(sandbox_id, entry)
        except BaseException:
            # the result of the plugins that did succeed goes to their DEL as its
            # prevResult (the firewall plugin finds the rules it made for the pod there)
            try:
                self._save(sandbox_id, entry)
            except OSError:
                pass
            self.forget(sandbox_id, netns)
            raise
        return entry["result"]

    def forget(self, sandbox_id: str, netns: str = "") -> None:
        """DEL as far as it goes, then drop the cache: for a sandbox that is going away
        on a failure of its own making, which nothing would retry."""
        try:
            self.delete(sandbox_id, netns)
        except KetchError:
            pass
        try:
            os.unlink(self._path(sandbox_id))
        except FileNotFoundError:
            pass

    def delete(self, sandbox_id: str, netns: str | None = None) -> None:
        """Detach the sandbox from the network it was added to; nothing when it is not
        attached (DEL is idempotent). `netns`: the namespace's path if it still exists
        (a namespace that is gone is passed as it was: the plugins release the rest)."""
        entry = self.cached(sandbox_id)
        if entry is None:
            return
        ns = netns if netns is not None else entry["netns"]
        if not (ns and os.path.exists(ns)):
            ns = ""  # gone with its sandbox: the plugins clean up on the host only
        net = entry["network"]
        self._run_list("DEL", net, sandbox_id, ns, entry["ifname"], entry["args"],
                       entry["runtimeConfig"], cached=entry.get("result"))
        if entry.get("loopback") and ns and self._find("loopback") is not None:
            self._run_list("DEL", _LOOPBACK, sandbox_id, ns, "lo", entry["args"], {})
        try:
            os.unlink(self._path(sandbox_id))
        except FileNotFoundError:
            pass

    def attached(self) -> list[str]:
        """The sandboxes with a cached ADD."""
        try:
            names = os.listdir(self.cache_dir)
        except FileNotFoundError:
            return []
        return [n[:-len(".json")] for n in names if n.endswith(".json")]

    def cached(self, sandbox_id: str) -> dict[str, Any] | None:
        try:
            with open(self._path(sandbox_id), "rb") as f:
                data: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CniError(f"the sandbox's CNI cache {self._path(sandbox_id)} is unreadable:"
                           f" {e}") from None
        return data

    def _path(self, sandbox_id: str) -> str:
        if not sandbox_id or "/" in sandbox_id or sandbox_id.startswith("."):
            raise InvalidArgument(f"invalid sandbox id {sandbox_id!r}")
        return os.path.join(self.cache_dir, f"{sandbox_id}.json")

    def _save(self, sandbox_id: str, entry: dict[str, Any]) -> None:
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        path = self._path(sandbox_id)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _run_list(self, command: str, net: dict[str, Any], sandbox_id: str, netns: str,
                  ifname: str, args: dict[str, str], runtime: dict[str, Any],
                  cached: dict[str, Any] | None = None,
                  progress: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Run each plugin of `net` (ADD in order, DEL in reverse); the last result. On ADD,
        `progress["result"]` follows the result of the plugins run so far."""
        version = net["cniVersion"]
        plugins = list(net["plugins"])
        prev: dict[str, Any] | None = None
        failed: CniError | None = None
        if command == "DEL":
            plugins.reverse()
            # the cached result goes to DEL from spec 0.4.0 on, as libcni does
            if _version(version) >= (0, 4, 0):
                prev = cached
        for plugin in plugins:
            conf = dict(plugin)
            conf["name"], conf["cniVersion"] = net["name"], version
            if prev is not None:
                conf["prevResult"] = prev
            caps = conf.get("capabilities") or {}
            wanted = {k: v for k, v in runtime.items()
                      if isinstance(caps, dict) and caps.get(k) and v}
            if wanted:
                conf["runtimeConfig"] = {**(conf.get("runtimeConfig") or {}), **wanted}
            if command == "DEL":
                # every plugin gets its DEL even when one fails (the spec asks DEL to
                # release all it can); the first failure is the call's error
                try:
                    self._exec(command, conf, sandbox_id, netns, ifname, args)
                except CniError as e:
                    failed = failed or e
                continue
            prev = self._exec(command, conf, sandbox_id, netns, ifname, args)
            if progress is not None and prev is not None:
                progress["result"] = prev
        if failed is not None:
            raise failed
        return prev

    def _exec(self, command: str, conf: dict[str, Any], sandbox_id: str, netns: str,
              ifname: str, args: dict[str, str]) -> dict[str, Any] | None:
        kind = conf["type"]
        binary = self._find(kind)
        if binary is None:
            raise CniError(f"failed to find plugin {kind!r} in path"
                           f" [{' '.join(self.bin_dirs)}]")
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "CNI_COMMAND": command, "CNI_CONTAINERID": sandbox_id,
               "CNI_NETNS": netns, "CNI_IFNAME": ifname,
               "CNI_ARGS": ";".join(["IgnoreUnknown=1", *(f"{k}={v}"
                                                          for k, v in args.items())]),
               "CNI_PATH": ":".join(self.bin_dirs)}
        began = time.perf_counter()
        try:
            proc = subprocess.run([binary], input=json.dumps(conf).encode(), env=env,
                                  capture_output=True, timeout=_PLUGIN_TIMEOUT,
                                  close_fds=True)
        except subprocess.TimeoutExpired:
            raise CniError(f"plugin type={kind!r} name={conf['name']!r} failed ({command}):"
                           f" no answer in {_PLUGIN_TIMEOUT}s") from None
        except OSError as e:
            raise CniError(f"plugin type={kind!r} failed ({command}): {e}") from None
        if _PROFILE_DIR:  # the plugins' times, the calls' profiles beside (cri.common)
            try:
                with open(os.path.join(_PROFILE_DIR, "cni.log"), "a") as log:
                    log.write(f"{time.time():.3f} {command} {kind}"
                              f" {(time.perf_counter() - began) * 1000:.1f} ms\n")
            except OSError:
                pass  # a profiling aid never fails the plugin call
        text = proc.stdout.decode(errors="replace").strip()
        if proc.returncode != 0:
            msg = text or proc.stderr.decode(errors="replace").strip()
            try:
                err = json.loads(text)
                msg = str(err.get("msg") or msg)
                if err.get("details"):
                    msg += f": {err['details']}"
            except (ValueError, AttributeError):
                pass
            raise CniError(f"plugin type={kind!r} name={conf['name']!r} failed ({command}):"
                           f" {msg.splitlines()[0] if msg else f'exit {proc.returncode}'}")
        if command != "ADD":
            return None
        try:
            result = json.loads(text)
        except ValueError:
            raise CniError(f"plugin type={kind!r} ({command}) answered with invalid JSON:"
                           f" {text[:200]!r}") from None
        if not isinstance(result, dict):
            raise CniError(f"plugin type={kind!r} ({command}) answered with {text[:200]!r}")
        return result


def pod_ips(result: dict[str, Any] | None) -> list[str]:
    """The sandbox's addresses from a CNI result, IPv4 first: those on eth0 inside the
    sandbox when the result names its interfaces, else every address it gives."""
    if not result:
        return []
    ips: list[str] = []
    entries = result.get("ips")
    if isinstance(entries, list):
        interfaces = result.get("interfaces") or []
        ours = {i for i, itf in enumerate(interfaces)
                if isinstance(itf, dict) and itf.get("name") == IFNAME and itf.get("sandbox")}
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("address"), str):
                continue
            idx = e.get("interface")
            if ours and isinstance(idx, int) and idx not in ours:
                continue
            ips.append(e["address"].split("/")[0])
    else:  # results of spec 0.1.0/0.2.0
        for key in ("ip4", "ip6"):
            block = result.get(key)
            if isinstance(block, dict) and isinstance(block.get("ip"), str):
                ips.append(block["ip"].split("/")[0])
    return sorted(ips, key=lambda ip: ":" in ip)


def _from_file(root: str) -> tuple[str, list[str]]:
    """`cni_conf_dir` and `cni_bin_dir` of the `[cri]` table in `<root>/ketch.toml`."""
    path = os.path.join(root, CONFIG_FILE)
    if not os.path.isfile(path):
        return "", []
    from ketch import tomlfile

    table = tomlfile.read(path, root).get("cri") or {}
    if not isinstance(table, dict):
        raise InvalidArgument(f"{path}: [cri] must be a table")
    for key in table:
        if key not in _SETTINGS:
            raise InvalidArgument(f"{path}: unknown setting [cri] {key}")
    conf = table.get("cni_conf_dir", "")
    if not isinstance(conf, str):
        raise InvalidArgument(f"{path}: [cri] cni_conf_dir must be a string")
    bins = table.get("cni_bin_dir", [])
    if isinstance(bins, str):
        bins = [d for d in bins.split(":") if d]
    if not isinstance(bins, list) or not all(isinstance(b, str) for b in bins):
        raise InvalidArgument(f"{path}: [cri] cni_bin_dir must be a path or a list of paths")
    return conf, bins

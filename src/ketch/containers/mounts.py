"""What a container mounts: `-v`, `--mount` and `--tmpfs`, parsed and checked as Docker
does, and the host facts that decide whether a bind propagation can be honoured.

`parse_mount_flag` turns a `--mount` value into the Engine API's `Mount` object (the
docker CLI's job); `parse_bind` reads a `-v` spec into a `MountPoint` and
`mount_point` checks an API `Mount` (both the daemon's job). Every option either takes
effect or is refused here, with Docker's message: nothing is accepted and ignored.
"""

from __future__ import annotations

from ketch.errors import InvalidArgument
from ketch.values import field, value

TYPE_CHECKING = False  # typing only for annotations: it is not on create's path
if TYPE_CHECKING:
    from typing import Any

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_PROPAGATION = "rprivate"
_RW_MODES = ("rw", "ro")
_LABEL_MODES = ("z", "Z")
_COPY_MODES = ("nocopy",)
_CONSISTENCY_MODES = ("consistent", "cached", "delegated")
# what tmpfs takes besides mount flags (Docker's list)
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")
# mount(2) flags by their fstab names: (set?, bit)
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (True, 1), "rw": (False, 1), "nosuid": (True, 2), "suid": (False, 2),
    "nodev": (True, 4), "dev": (False, 4), "noexec": (True, 8), "exec": (False, 8),
    "sync": (True, 16), "async": (False, 16), "dirsync": (True, 128),
    "mand": (True, 64), "nomand": (False, 64), "noatime": (True, 1024),
    "atime": (False, 1024), "nodiratime": (True, 2048), "diratime": (False, 2048),
    "bind": (True, 4096), "rbind": (True, 4096 | 16384), "relatime": (True, 1 << 21),
    "norelatime": (False, 1 << 21), "strictatime": (True, 1 << 24),
    "nostrictatime": (False, 1 << 24), "defaults": (False, 0),
}


@value
class MountPoint:
    """One mount of a container, resolved from `-v`, `--mount` or the image's VOLUME."""

    type: str  # bind | volume | tmpfs
    target: str
    source: str = ""  # host path (bind) or volume name ("" = anonymous volume)
    read_only: bool = False
    propagation: str = ""  # binds: Docker's default (rprivate) when empty
    recursive: bool = True
    copy_data: bool = True  # volumes: seed an empty volume from the image
    tmpfs_data: str = ""  # tmpfs: "size=2m,mode=1770"
    volume_options: dict[str, str] = field(default_factory=dict)
    volume_labels: dict[str, str] = field(default_factory=dict)
    mode: str = ""  # the -v mode text, shown by inspect


def _spec_error(raw: str, detail: str | None = None) -> InvalidArgument:
    text = f"invalid volume specification: '{raw}'"
    return InvalidArgument(f"{text}: {detail}" if detail else text)


def _config_error(kind: str, detail: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {detail}')


def _valid_mode(mode: str) -> bool:
    if not mode:
        return True
    counts = [0, 0, 0, 0, 0]
    for o in mode.split(","):
        for i, group in enumerate((_RW_MODES, _LABEL_MODES, PROPAGATIONS, _COPY_MODES,
                                   _CONSISTENCY_MODES)):
            if o in group:
                counts[i] += 1
                break
        else:
            return False
    return max(counts) <= 1


def _check_target(kind: str, target: str) -> str:
    import posixpath

    if not target:
        raise _config_error(kind, "field Target must not be empty")
    if not target.startswith("/"):
        raise _config_error(kind, f"invalid mount path: '{target}' mount path must be"
                                  " absolute")
    target = posixpath.normpath(target)
    if target.startswith("//"):
        target = "/" + target.lstrip("/")
    if target == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return target


def parse_bind(raw: str) -> MountPoint:
    """A `-v` spec: `/dest`, `src:/dest` or `src:/dest:mode`, by Docker's Linux rules."""
    if raw.count(":") > 2 or raw.startswith(":") or not raw:
        raise _spec_error(raw)
    parts = raw.split(":")
    mode = ""
    if len(parts) == 1:
        source, target = "", parts[0]
    elif len(parts) == 2:
        if _valid_mode(parts[1]):
            raise _spec_error(raw)  # "/dest:ro" is no volume
        source, target = parts
    else:
        source, target, mode = parts
    if not _valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    opts = mode.split(",") if mode else []
    kind = "bind" if source.startswith("/") else "volume"
    propagation = next((o for o in opts if o in PROPAGATIONS), "")
    try:
        target = _check_target(kind, target)
        if kind == "bind":
            if "nocopy" in opts:
                raise _config_error(kind, "field VolumeOptions must not be specified")
        elif propagation:
            raise _config_error(kind, "field BindOptions must not be specified")
    except InvalidArgument as e:
        raise _spec_error(raw, e.message) from None
    if kind == "bind":
        import posixpath

        source = posixpath.normpath(source)
    return MountPoint(kind, target, source, read_only="ro" in opts,
                      propagation=propagation, copy_data="nocopy" not in opts, mode=mode)


def _parse_bool(key: str, text: str) -> bool:
    t = text.lower()
    if t in ("1", "t", "true"):
        return True
    if t in ("0", "f", "false"):
        return False
    raise InvalidArgument(f"invalid value for {key}: {text}")


def parse_mount_flag(spec: str) -> dict[str, Any]:
    """A `--mount` value → the Engine API's Mount object, as the docker CLI builds it."""
    import csv

    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise InvalidArgument(f"invalid --mount value {spec!r}") from None
    m: dict[str, Any] = {"Type": "volume"}

    def sub(name: str) -> dict[str, Any]:
        return m.setdefault(name, {})

    for item in fields:
        key, eq, val = item.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                m["ReadOnly"] = True
            elif key == "volume-nocopy":
                sub("VolumeOptions")["NoCopy"] = True
            elif key == "bind-nonrecursive":
                sub("BindOptions")["NonRecursive"] = True
            else:
                raise InvalidArgument(f"invalid field '{item}' must be a key=value pair")
            continue
        if key == "type":
            m["Type"] = val.lower()
        elif key in ("source", "src"):
            m["Source"] = val
            if val == "." or val.startswith("./"):
                import os

                m["Source"] = os.path.abspath(val)
        elif key in ("target", "dst", "destination"):
            m["Target"] = val
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = _parse_bool(key, val)
        elif key == "consistency":
            m["Consistency"] = val.lower()
        elif key == "bind-propagation":
            sub("BindOptions")["Propagation"] = val.lower()
        elif key == "bind-nonrecursive":
            sub("BindOptions")["NonRecursive"] = _parse_bool(key, val)
        elif key == "volume-nocopy":
            sub("VolumeOptions")["NoCopy"] = _parse_bool(key, val)
        elif key in ("volume-label", "volume-opt"):
            k, _, v = val.partition("=")
            if k:
                target = (sub("VolumeOptions").setdefault("Labels", {})
                          if key == "volume-label" else
                          sub("VolumeOptions").setdefault("DriverConfig", {})
                          .setdefault("Options", {}))
                target[k] = v
        elif key == "volume-driver":
            sub("VolumeOptions").setdefault("DriverConfig", {})["Name"] = val
        elif key == "tmpfs-size":
            from ketch.fmt.units import parse_size

            try:
                sub("TmpfsOptions")["SizeBytes"] = parse_size(val)
            except InvalidArgument:
                raise InvalidArgument(f"invalid value for {key}: {val}") from None
        elif key == "tmpfs-mode":
            try:
                sub("TmpfsOptions")["Mode"] = int(val, 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for {key}: {val}") from None
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{item}'")
    if not m.get("Type"):
        raise InvalidArgument("type is required")
    if not m.get("Target"):
        raise InvalidArgument("target is required")
    for opts, kind in (("VolumeOptions", "volume"), ("BindOptions", "bind"),
                       ("TmpfsOptions", "tmpfs")):
        if opts in m and m["Type"] != kind:
            raise InvalidArgument(f"cannot mix '{kind}-*' options with mount type"
                                  f" '{m['Type']}'")
    m.setdefault("Source", "")
    m.setdefault("ReadOnly", False)
    return m


def _tmpfs_size_text(size: int) -> str:
    for suffix, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size % div == 0:
            return f"{size // div}{suffix}"
    return str(size)


def mount_point(m: dict[str, Any]) -> MountPoint:
    """Check an API Mount object (HostConfig.Mounts) by Docker's rules."""
    kind = m.get("Type") or ""
    source = m.get("Source") or ""
    ro = bool(m.get("ReadOnly"))
    bind_opts = m.get("BindOptions") or None
    vol_opts = m.get("VolumeOptions") or None
    tmpfs_opts = m.get("TmpfsOptions") or None
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"invalid mount config: mount type unknown: {kind!r}")
    target = _check_target(kind, m.get("Target") or "")
    if kind == "bind":
        if not source:
            raise _config_error(kind, "field Source must not be empty")
        if vol_opts is not None:
            raise _config_error(kind, "field VolumeOptions must not be specified")
        if tmpfs_opts is not None:
            raise _config_error(kind, "field TmpfsOptions must not be specified")
        prop = (bind_opts or {}).get("Propagation") or ""
        if prop and prop not in PROPAGATIONS:
            raise _config_error(kind, f"invalid propagation mode: {prop}")
        if not source.startswith("/"):
            raise _config_error(kind, f"invalid mount path: '{source}' mount path must be"
                                      " absolute")
        import os
        import posixpath

        source = posixpath.normpath(source)
        if not os.path.exists(source):
            raise _config_error(kind, f"bind source path does not exist: {source}")
        return MountPoint(kind, target, source, ro, propagation=prop,
                          recursive=not (bind_opts or {}).get("NonRecursive"))
    if bind_opts is not None:
        raise _config_error(kind, "field BindOptions must not be specified")
    if kind == "volume":
        if tmpfs_opts is not None:
            raise _config_error(kind, "field TmpfsOptions must not be specified")
        if not source and ro:
            raise _config_error(kind, "must not set ReadOnly mode when using anonymous"
                                      " volumes")
        vo = vol_opts or {}
        driver = vo.get("DriverConfig") or {}
        # dockerd's words when it creates the volume, named as there ("create v: ...")
        named = f"create {source}: " if source else ""
        if (driver.get("Name") or "local") != "local":
            raise InvalidArgument(f"{named}error looking up volume plugin {driver['Name']}:"
                                  f" plugin \"{driver['Name']}\" not found")
        from ketch.containers.volumes import check_driver_options

        options = dict(driver.get("Options") or {})
        try:
            check_driver_options(options)
        except InvalidArgument as e:
            raise InvalidArgument(named + e.message) from None
        return MountPoint(kind, target, source, ro, copy_data=not vo.get("NoCopy"),
                          volume_options=options, volume_labels=dict(vo.get("Labels") or {}))
    if source:
        raise _config_error(kind, "field Source must not be specified")
    data = []
    if tmpfs_opts:
        if tmpfs_opts.get("Mode"):
            data.append(f"mode={int(tmpfs_opts['Mode']):o}")
        if tmpfs_opts.get("SizeBytes"):
            data.append(f"size={_tmpfs_size_text(int(tmpfs_opts['SizeBytes']))}")
    return MountPoint(kind, target, read_only=ro, tmpfs_data=",".join(data))


def check_tmpfs_options(data: str) -> None:
    """`--tmpfs /x:OPTS`: mount flags and tmpfs's own options only (Docker's check)."""
    for o in (data or "").split(","):
        if not o or o in MOUNT_FLAGS or o in PROPAGATIONS:
            continue
        if o.partition("=")[0] not in _TMPFS_DATA:
            raise InvalidArgument(f'Invalid tmpfs option ["{o.partition("=")[0]}"'
                                  + (f' "{o.partition("=")[2]}"]' if "=" in o else "]"))


def split_mount_options(options: str) -> tuple[int, str]:
    """fstab-style options → (mount(2) flags, the rest as filesystem data)."""
    flags, data = 0, []
    for o in (options or "").split(","):
        if not o:
            continue
        known = MOUNT_FLAGS.get(o)
        if known is None:
            data.append(o)
        elif known[0]:
            flags |= known[1]
        else:
            flags &= ~known[1]
    return flags, ",".join(data)


# -- propagation -------------------------------------------------------------------------
def _source_mount(path: str) -> tuple[str, str]:
    """The mount holding `path` and its optional fields (`shared:N`, `master:N`)."""
    import os

    path = os.path.realpath(path)
    best, optional = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            sep = fields.index("-")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and \
                    len(point) >= len(best):
                best, optional = point, " ".join(fields[6:sep])
    return best, optional


def check_propagation(source: str, propagation: str) -> str | None:
    """Docker's rule: shared propagation needs a shared source mount, slave a shared or
    slave one. Returns the root propagation the container's rootfs then needs."""
    if propagation in ("shared", "rshared"):
        point, optional = _source_mount(source)
        if "shared:" not in optional:
            raise InvalidArgument(f"path {source} is mounted on {point} but it is not a"
                                  " shared mount")
        return "rshared"
    if propagation in ("slave", "rslave"):
        point, optional = _source_mount(source)
        if "shared:" not in optional and "master:" not in optional:
            raise InvalidArgument(f"path {source} is mounted on {point} but it is not a"
                                  " shared or slave mount")
        return "rslave"
    return None

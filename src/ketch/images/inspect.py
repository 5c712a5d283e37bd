"""`image inspect` and `history`: an image's document in the Engine API's shape
(ImageInspect) and its history rows, with IDs and tags from the local parent chain."""

from __future__ import annotations

import builtins

from ketch.images.service import parse_created
from ketch.oci.digest import chain_ids
from ketch.reference import familiar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.images.service import ImageService
    from ketch.store.images import ImageRecord


def document(svc: ImageService, name: str) -> dict[str, Any]:
    """Docker's image inspect document (GET /images/{name}/json)."""
    from ketch.fmt.units import rfc3339nano

    rec = svc.resolve(name)
    image_config = svc.get_config(rec)
    cfg = image_config.raw
    c = cfg.get("config") or {}
    diff_ids = image_config.diff_ids
    lowers = [svc.layers.diff_dir(ch) for ch in reversed(chain_ids(diff_ids))]
    config = {
        "Hostname": "", "Domainname": "", "User": c.get("User", ""),
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": c.get("ExposedPorts"), "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": c.get("Env"), "Cmd": c.get("Cmd"),
        "Healthcheck": c.get("Healthcheck"), "ArgsEscaped": c.get("ArgsEscaped"),
        "Image": "", "Volumes": c.get("Volumes"), "WorkingDir": c.get("WorkingDir", ""),
        "Entrypoint": c.get("Entrypoint"), "OnBuild": c.get("OnBuild"),
        "Labels": c.get("Labels"), "StopSignal": c.get("StopSignal"),
        "Shell": c.get("Shell"),
    }
    # Docker's container.Config marshals these as null; the rest are omitempty.
    config = {k: v for k, v in config.items()
              if v is not None or k in ("Cmd", "Entrypoint", "Env", "Labels", "OnBuild",
                                        "Volumes")}
    graph: dict[str, str] = {}
    if lowers:
        graph["UpperDir"] = lowers[0]
        if len(lowers) > 1:
            graph["LowerDir"] = ":".join(lowers[1:])
    tagged = svc.records.last_tag_time(rec.id)
    out: dict[str, Any] = {
        "Id": rec.id,
        "RepoTags": sorted(familiar(t) for t in rec.tags),
        "RepoDigests": sorted(familiar(d) for d in rec.digests),
        "Parent": rec.parent or "",
        "Comment": cfg.get("comment") or "",
        "Created": cfg.get("created") or "",
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": config,
        "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant"),
        "Os": cfg.get("os", ""),
        "Size": rec.size,
        "GraphDriver": {"Name": "overlay2", "Data": graph},
        "RootFS": {"Type": "layers", "Layers": diff_ids},
        "Metadata": {"LastTagTime": rfc3339nano(tagged) if tagged
                     else "0001-01-01T00:00:00Z"},
    }
    if not out["Variant"]:
        del out["Variant"]
    return out



def history(svc: ImageService, name: str) -> builtins.list[dict[str, Any]]:
    """Docker's history: one row per history entry, newest first; rows get image IDs
    (and those images' tags) from the local parent chain, the rest say <missing>."""
    rec = svc.resolve(name)
    cfg = svc.get_config(rec)
    sizes = []
    for ch in chain_ids(cfg.diff_ids):
        lr = svc.records.layer(ch)
        sizes.append(lr.size if lr else 0)
    rows: list[dict[str, Any]] = []
    layer_i = 0
    for h in cfg.history:
        size = 0
        if not h.get("empty_layer"):
            if layer_i < len(sizes):
                size = sizes[layer_i]
            layer_i += 1
        rows.insert(0, {"Id": "<missing>", "Created": int(parse_created(h.get("created"))),
                        "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                        "Comment": h.get("comment", "")})
    cur: ImageRecord | None = rec
    for row in rows:
        if cur is None:
            break
        row["Id"] = cur.id
        row["Tags"] = [familiar(t) for t in cur.tags] or None
        cur = svc.records.get(cur.parent) if cur.parent else None
    return rows

"""`commit`: a new image from a container, its image plus its upper dir as one layer,
with the container's settings (and the caller's, merged as moby merges them)."""

from __future__ import annotations

import os

from ketch.errors import ImageNotFound, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService
    from ketch.store.images import ImageRecord

_IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes",
                      "WorkingDir", "Labels", "StopSignal", "Healthcheck", "ArgsEscaped",
                      "OnBuild", "Shell")


def _merge_config(user: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A commit's Config from the caller over the container's: what the caller leaves
    unset comes from the container; ports, volumes, labels and Env (by name) are merged."""
    out = {k: v for k, v in user.items() if k in _IMAGE_CONFIG_KEYS and v not in (None, "",
                                                                                  [], {})}
    for k in ("ExposedPorts", "Volumes", "Labels"):
        if base.get(k):
            out[k] = {**base[k], **(out.get(k) or {})}
    if base.get("Env"):
        own = {e.partition("=")[0] for e in out.get("Env") or []}
        out["Env"] = list(out.get("Env") or []) + [e for e in base["Env"]
                                                   if e.partition("=")[0] not in own]
    if not out.get("Entrypoint"):
        if not out.get("Cmd") and base.get("Cmd") is not None:
            out["Cmd"] = base["Cmd"]
        if base.get("Entrypoint") is not None:
            out["Entrypoint"] = base["Entrypoint"]
    for k in ("User", "WorkingDir", "StopSignal", "Healthcheck", "OnBuild", "Shell"):
        if not out.get(k) and base.get(k) is not None:
            out[k] = base[k]
    return out


def commit_container(svc: ContainerService, rec: ContainerRecord, *, ref: str | None,
                     changes: list[str], message: str, author: str,
                     user_config: dict[str, Any] | None = None) -> ImageRecord:
    import threading

    from ketch import reference
    from ketch.archive import write_layer_from_upper
    from ketch.images.changes import apply_changes
    from ketch.images.service import NewLayer, now_rfc3339

    images = svc.engine.images
    tags: list[str] = []
    if ref:
        target = reference.parse(ref)
        if target.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        tags = [str(target)]
    base = images.records.get(rec.image_id)
    if base is None:
        raise ImageNotFound(rec.image_id)
    base_cfg = images.get_config(base).raw
    base_manifest = images.get_manifest(base)
    config: dict[str, Any] = {
        k: v for k, v in base_cfg.items()
        if k in ("architecture", "os", "os.version", "os.features", "variant")}
    # Docker keeps the container's own settings (its command, env, ...) in the image.
    config["config"] = {k: rec.config[k] for k in _IMAGE_CONFIG_KEYS
                        if rec.config.get(k) is not None}
    if user_config:
        config["config"] = _merge_config(user_config, config["config"])
    apply_changes(config, changes)
    config["created"] = now_rfc3339()
    if author:
        config["author"] = author
    if message:
        config["comment"] = message  # `inspect`'s .Comment, as moby's commit
    path, args = svc.command_line(rec)
    history = list(base_cfg.get("history") or [])
    entry: dict[str, Any] = {"created": config["created"],
                             "created_by": " ".join([path, *args]).strip()}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    history.append(entry)
    config["history"] = history
    diff_ids = list((base_cfg.get("rootfs") or {}).get("diff_ids") or [])

    upper = f"{svc.path(rec.id)}/upper"
    lowers = svc.engine.layers.lower_dirs(rec.chain_ids) if rec.chain_ids else []
    r, w = os.pipe()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            with open(w, "wb") as out:
                if os.path.isdir(upper):
                    write_layer_from_upper(upper, out, lower_dirs=lowers)
                else:
                    # never started: nothing was written over the image, an empty layer
                    import tempfile

                    with tempfile.TemporaryDirectory(dir=svc.path(rec.id)) as empty:
                        write_layer_from_upper(empty, out, lower_dirs=lowers)
        except BaseException as e:  # reported by the reading side
            failed.append(e)

    with images.writing():
        t = threading.Thread(target=produce, daemon=True)
        t.start()
        try:
            with open(r, "rb") as stream:
                layer = images.add_layer_stream(
                    stream, parent=rec.chain_ids[-1] if rec.chain_ids else None)
        finally:
            t.join()
        if failed:
            raise failed[0]
        config["rootfs"] = {"type": "layers", "diff_ids": diff_ids + [layer.diff_id]}
        layers = [NewLayer(d.digest, d.media_type, d.size, diff_id, 0)
                  for d, diff_id in zip(base_manifest.layers, diff_ids, strict=True)]
        image = images.commit(config, layers + [layer], parent=base.id, tags=tags)
    svc.event(rec, "commit", comment=message, imageID=image.id, imageRef=ref or "")
    for tag in tags:  # and the image's tag, as dockerd journals a commit's
        images.event("tag", image.id, reference.familiar(tag))
    return image

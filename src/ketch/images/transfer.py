"""Images in and out of the store as tarballs: `import` (a root filesystem as one
layer), `save` (moby's tarexport name selection, written by images.archive) and `load`."""

from __future__ import annotations

import builtins

from ketch.errors import InvalidArgument, KetchError
from ketch.images.service import hex_of_id, now_rfc3339
from ketch.reference import familiar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from ketch.images.service import ImageService
    from ketch.store.images import ImageRecord


def import_tar(svc: ImageService, stream: Any, *, changes: Sequence[str] = (),
               ref: str | None = None, message: str = "",
               platform: str | None = None) -> ImageRecord:
    """`docker import`: one layer from a rootfs tarball (plain or compressed)."""
    from ketch import reference
    from ketch.archive import open_decompressed
    from ketch.images.changes import apply_changes
    from ketch.oci.model import host_platform

    target = reference.parse(ref) if ref else None
    if target is not None and target.digest:
        raise InvalidArgument("refusing to create a tag with a digest reference")
    plat = host_platform()
    created = now_rfc3339()
    # moby's ImportImage: the message is the image's comment and its one history entry's
    comment = message or "Imported from -"
    config: dict[str, Any] = {
        "architecture": plat.architecture, "os": plat.os, "created": created,
        "comment": comment, "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": created, "comment": comment}],
    }
    if platform:
        from ketch.images.platforms import set_platform

        set_platform(config, platform)
    apply_changes(config, changes)
    with svc.writing():
        layer = svc.add_layer_stream(open_decompressed(stream), parent=None)
        config["rootfs"]["diff_ids"] = [layer.diff_id]
        rec = svc.commit(config, [layer], tags=[str(target)] if target else [])
    svc.event("import", rec.id, familiar(str(target)) if target else rec.id)
    if target:
        svc.event("tag", rec.id, familiar(str(target)))  # as dockerd journals an import
    return rec


def save(svc: ImageService, names: builtins.list[str], out: Any) -> None:
    """Write the images `names` select as one archive (moby's tarexport parseNames):
    `repo` takes every tag of that repository, `repo:tag` that tag, an ID or digest
    the image without a name."""
    from ketch import reference
    from ketch.images.archive import write_image_archive

    if not names:
        raise InvalidArgument("docker save requires at least one image name")
    selected: dict[str, tuple[ImageRecord, builtins.list[str]]] = {}

    def add(rec: ImageRecord, tag: str | None) -> None:
        entry = selected.setdefault(rec.id, (rec, []))
        if tag and tag not in entry[1]:
            entry[1].append(tag)

    for n in names:
        if hex_of_id(n, True):
            add(svc.resolve(n), None)
            continue
        ref = reference.parse(n, default_tag=None)
        if ref.digest or ref.familiar_name == "sha256":
            # `sha256:<prefix>` parses as a name; it is an ID, as moby reads it.
            add(svc.resolve(n), None)
        elif ref.tag is None:
            tagged = svc.records.tags_in_repository(ref.repository)
            for tag, image_id in tagged:
                rec = svc.records.get(image_id)
                if rec is not None:
                    add(rec, tag)
            if not tagged:
                add(svc.resolve(n), None)
        elif svc.records.lookup_tag(str(ref)):
            add(svc.resolve(n), str(ref))
        else:
            add(svc.resolve(n), None)
    for rec, _ in selected.values():
        if not svc.get_config(rec).diff_ids:
            raise InvalidArgument("empty export - not implemented")
    write_image_archive(svc, list(selected.values()), out)
    for rec, tags in selected.values():
        svc.event("save", rec.id, familiar(tags[0]) if tags else rec.id)



def load(svc: ImageService, stream: Any, *, on_message: Callable[[str], None] | None = None,
         on_progress: Callable[[Any], None] | None = None) -> builtins.list[str]:
    """`docker load`: `on_message` gets the "Loaded image" lines, `on_progress` (when
    given) a `Progress` event per layer as it is unpacked ("Loading layer")."""
    from ketch.images.archive import read_image_archive

    with svc.writing():
        loaded = read_image_archive(svc, stream, on_message or (lambda s: None),
                                    on_progress)
    for line in loaded:  # "Loaded image: NAME" or "Loaded image ID: ID"
        name = line.partition(": ")[2]
        try:
            svc.event("load", svc.resolve(name).id, name)
        except KetchError:
            continue  # untagged or removed meanwhile: nothing to name
    return loaded

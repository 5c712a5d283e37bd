"""`rmi` and `image prune`: moby's ImageDelete and ImagePrune, rule for rule (untag by
name, delete by ID, the conflicts that refuse or quietly keep an image, the parent chain
pruned with it)."""

from __future__ import annotations

import builtins
import time

from ketch.errors import Conflict, ImageNotFound, InvalidArgument
from ketch.images.service import PruneReport, labels_match
from ketch.oci.digest import hex_of
from ketch.reference import familiar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.images.service import ImageService
    from ketch.store.images import ImageRecord


def remove(svc: ImageService, name: str, *, force: bool = False,
           prune: bool = True) -> builtins.list[dict[str, str]]:
    """`docker rmi NAME`: moby's ImageDelete, rule for rule.

    A name untags; the image itself goes only when no other tag or digest is left
    (and then quietly: a conflict just keeps it). An ID deletes, refusing when the
    image has child images or a running container (even with -f), or, without -f,
    a stopped container or tags in several repositories.
    """
    # killed between deleting a record and the sweep: the next command sweeps (recover)
    with svc.intents().held("images.remove", name):
        records = _remove(svc, name, force=force, prune=prune)
        svc.gc()
    return records



def _remove(svc: ImageService, name: str, *, force: bool,
            prune: bool) -> builtins.list[dict[str, str]]:
    from ketch import reference

    rec = svc.resolve(name)
    records: list[dict[str, str]] = []
    refs = sorted(rec.tags + rec.digests, key=familiar)  # moby's lexical order
    removed_repo_ref = False
    if not _is_id_prefix(rec.id, name):
        ref = reference.parse(name)
        key = f"{ref.repository}@{ref.digest}" if ref.digest else str(ref)
        with svc.db.transaction() as conn:
            # checked in the transaction that untags: a container created meanwhile
            # (its record reserves the image) is seen, never slipped past
            cur = svc.records.get(rec.id) or rec
            if not force and _is_single_reference(cur.tags, cur.digests):
                users = svc.users(rec.id)
                if users:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{name}"'
                        f" (must force) - container {users[0][0][:12]} is using its"
                        f" referenced image {rec.short_id}")
            if ref.digest:
                svc.records.remove_digest(conn, key)
            else:
                svc.records.remove_tag(conn, key)
        records.append({"Untagged": familiar(key)})
        svc.event("untag", rec.id, familiar(key))
        rec = svc.records.get(rec.id) or rec
        if not ref.digest and not any(_repo_of(t) == ref.repository for t in rec.tags):
            # The last tag of a repository takes that repository's digests with it.
            for d in rec.digests:
                if _repo_of(d) == ref.repository:
                    with svc.db.transaction() as conn:
                        svc.records.remove_digest(conn, d)
                    records.append({"Untagged": familiar(d)})
                    svc.event("untag", rec.id, familiar(d))
            rec = svc.records.get(rec.id) or rec
        if rec.tags or rec.digests:
            return records
        removed_repo_ref = True
    elif _is_single_reference(rec.tags, rec.digests):
        conflict = _conflict(svc, rec, hard=True, soft=not force, active_ref=False)
        if conflict is not None:
            raise conflict
        with svc.db.transaction() as conn:
            for t in rec.tags:
                svc.records.remove_tag(conn, t)
            for d in rec.digests:
                svc.records.remove_digest(conn, d)
        records.extend({"Untagged": familiar(r)} for r in refs)
        for r in refs:
            svc.event("untag", rec.id, familiar(r))
        rec = svc.records.get(rec.id) or rec
    _delete_image(svc, rec, records, force=force, prune=prune, quiet=removed_repo_ref)
    return records



def _conflict(svc: ImageService, rec: ImageRecord, *, hard: bool, soft: bool,
              active_ref: bool = True) -> _DeleteConflict | None:
    if hard and svc.records.children(rec.id):
        return _DeleteConflict(rec, "image has dependent child images", hard=True)
    users = svc.users(rec.id) if hard or soft else []
    if hard:
        running = [cid for cid, run in users if run]
        if running:
            return _DeleteConflict(
                rec, f"image is being used by running container {running[0][:12]}",
                hard=True, used=True)
    if soft and active_ref and (rec.tags or rec.digests):
        return _DeleteConflict(rec, "image is referenced in multiple repositories")
    if soft:
        stopped = [cid for cid, run in users if not run]
        if stopped:
            return _DeleteConflict(
                rec, f"image is being used by stopped container {stopped[0][:12]}",
                used=True)
    return None



def _delete_image(svc: ImageService, rec: ImageRecord,
                  records: builtins.list[dict[str, str]], *, force: bool, prune: bool,
                  quiet: bool) -> None:
    conflict = _conflict(svc, rec, hard=True, soft=not force)
    if conflict is not None:
        dangling = not (rec.tags or rec.digests or svc.records.children(rec.id))
        if quiet and (not dangling or conflict.used):
            return
        raise conflict
    try:
        chains = svc.chain_ids(rec)
    except Exception:  # a damaged image can still be deleted
        chains = []
    with svc.db.transaction() as conn:
        # again inside the transaction: a container created since the check above
        # holds the image (its record is the reservation, see `reserve`)
        conflict = _conflict(svc, rec, hard=True, soft=not force)
        if conflict is not None:
            if quiet and conflict.used:
                return
            raise conflict
        svc.records.delete(conn, rec.id)
    for r in sorted(rec.tags + rec.digests, key=familiar):
        records.append({"Untagged": familiar(r)})
        svc.event("untag", rec.id, familiar(r))
    records.append({"Deleted": rec.id})
    svc.event("delete", rec.id, rec.id)
    # Report the layers nothing references any more, topmost first, as Docker does;
    # the sweep that removes them from disk is gc().
    if chains:
        in_use = svc.chains_in_use()
        for ch in reversed(chains):
            if ch in in_use:
                break
            if svc.records.layer(ch) is not None:
                records.append({"Deleted": ch})
    if prune and rec.parent:
        parent = svc.records.get(rec.parent)
        if parent is not None:
            _delete_image(svc, parent, records, force=False, prune=True, quiet=True)



def prune(svc: ImageService, *, all: bool = False,
          filters: dict[str, builtins.list[str]] | None = None) -> PruneReport:
    """`docker image prune`: moby's ImagePrune over `_remove`, never forced."""
    filters = svc.parse_filters(filters, {"label", "label!", "until", "dangling"})
    dangling_only = not all
    if "dangling" in filters:
        value = filters["dangling"][-1].lower()
        if value not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
        dangling_only = value in ("true", "1")
    until = None
    if "until" in filters:
        if len(filters["until"]) > 1:
            raise InvalidArgument("more than one until filter specified")
        from ketch.fmt.units import parse_timestamp

        until = parse_timestamp(filters["until"][0], time.time())
    report = PruneReport()
    layer_sizes = {lr.chain_id: lr.size for lr in svc.records.all_layers()}
    records = svc.records.all()
    has_children = {r.parent for r in records if r.parent}
    candidates = []
    for r in records:
        if dangling_only and r.id in has_children:
            continue
        if not (r.tags or r.digests) and r.id in has_children:
            continue
        if until is not None and r.created > until:
            continue
        if not labels_match(r.labels, filters.get("label", [])):
            continue
        if filters.get("label!") and labels_match(r.labels, filters["label!"]):
            continue
        if svc.users(r.id):
            continue  # moby's ImagePrune: an image a container uses keeps every tag
        candidates.append(r.id)
    with svc.intents().held("images.remove", "prune"):  # as in remove()
        _prune(svc, candidates, report, dangling_only)
    report.space_reclaimed = sum(layer_sizes.get(d["Deleted"], 0)
                                 for d in report.deleted if "Deleted" in d)
    return report


def _prune(svc: ImageService, candidates: builtins.list[str], report: PruneReport,
           dangling_only: bool) -> None:
    for image_id in candidates:
        cur = svc.records.get(image_id)
        if cur is None:
            continue  # already pruned as the parent of another
        refs = cur.tags + cur.digests
        names = refs if refs else [hex_of(cur.id)]
        if refs and dangling_only and cur.tags:
            continue
        for n in names:
            try:
                report.deleted.extend(_remove(svc, n, force=False, prune=True))
            except (Conflict, ImageNotFound):
                continue
    svc.gc()



class _DeleteConflict(Conflict):
    """moby's imageDeleteConflict: hard ones cannot be forced; `used` means a container."""

    def __init__(self, rec: ImageRecord, message: str, *, hard: bool = False,
                 used: bool = False) -> None:
        super().__init__(f"conflict: unable to delete {rec.short_id}"
                         f" ({'cannot be forced' if hard else 'must be forced'}) - {message}")
        self.hard = hard
        self.used = used



def _repo_of(name: str) -> str:
    """`docker.io/library/x` from `docker.io/library/x:tag` or `...x@sha256:...`."""
    if "@" in name:
        return name.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name



def _is_id_prefix(image_id: str, name: str) -> bool:
    return image_id.startswith(name) or hex_of(image_id).startswith(name)



def _is_single_reference(tags: builtins.list[str], digests: builtins.list[str]) -> bool:
    """moby's isSingleReference: at most one tag, and every reference in one repository."""
    refs = tags + digests
    if len(refs) <= 1:
        return len(refs) == 1
    if len(tags) > 1:
        return False
    single = tags[0] if tags else digests[0]
    return {_repo_of(d) for d in digests} == {_repo_of(single)}

"""`images` (GET /images/json): Docker's image summaries with its filters (dangling,
label, reference as distribution's FamiliarMatch, before, since, until), and the shared
sizes only a container count asks for."""

from __future__ import annotations

import builtins
import time

from ketch.errors import InvalidArgument
from ketch.images.service import labels_match
from ketch.reference import familiar

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from typing import Any

    from ketch.images.service import ImageService
    from ketch.store.images import ImageRecord


def summaries(svc: ImageService, *, all: bool = False,
              filters: dict[str, list[str]] | None = None,
              container_count: bool = False) -> list[dict[str, Any]]:
    """`GET /images/json`: Docker's image summaries, newest first.

    Containers and SharedSize stay -1 ("not computed") unless `container_count` is
    set, as in Docker: listing images must not pay for a scan of every container.
    """
    filters = svc.parse_filters(
        filters, {"dangling", "label", "reference", "before", "since", "until"})
    dangling_only = False
    if "dangling" in filters:
        values = set(filters["dangling"])
        if values == {"true"}:
            dangling_only = True
        elif values != {"false"}:
            raise InvalidArgument(
                f"invalid filter 'dangling=[{' '.join(filters['dangling'])}]'")
    before = since = until = None
    for v in filters.get("before", []):
        before = svc.resolve(v).created
    for v in filters.get("since", []):
        since = svc.resolve(v).created
    if "until" in filters:
        from ketch.fmt.units import parse_timestamp

        until = parse_timestamp(filters["until"][-1], time.time())
    patterns = [_compile_path_pattern(p) for p in filters.get("reference", [])]
    records = svc.records.all()
    has_children = {r.parent for r in records if r.parent}
    users: dict[str, int] = {}
    shared: dict[str, int] = {}
    if container_count:
        for r in records:
            users[r.id] = len(svc.users(r.id))
        shared = _shared_sizes(svc, records)
    out = []
    for r in records:
        if dangling_only and r.id in has_children:
            continue
        if before is not None and r.created >= before:
            continue
        if since is not None and r.created <= since:
            continue
        if until is not None and r.created > until:
            continue
        if "label" in filters and not labels_match(r.labels, filters["label"]):
            continue
        # moby lists references in lexical order of their familiar form.
        tags = sorted(familiar(t) for t in r.tags)
        digests = sorted(familiar(d) for d in r.digests)
        if patterns:
            tags = [t for t in tags if _ref_matches(patterns, t)]
            digests = [d for d in digests if _ref_matches(patterns, d)]
        if dangling_only and tags:
            continue
        if not tags and not digests:
            if ((not all and r.id in has_children)
                    or ("dangling" in filters and not dangling_only) or patterns):
                continue
        out.append({
            "Containers": users.get(r.id, -1),
            "Created": int(r.created),
            "Id": r.id,
            "Labels": r.labels or None,
            "ParentId": r.parent or "",
            "RepoDigests": digests,
            "RepoTags": tags,
            "SharedSize": shared.get(r.id, -1),
            "Size": r.size,
            "VirtualSize": r.size,
        })
    return out



def _shared_sizes(svc: ImageService, records: builtins.list[ImageRecord]) -> dict[str, int]:
    """Per image, the size of its layers that another image uses too."""
    layer_sizes = {lr.chain_id: lr.size for lr in svc.records.all_layers()}
    chains_of: dict[str, builtins.list[str]] = {}
    refs: dict[str, int] = {}
    for r in records:
        try:
            chains_of[r.id] = svc.chain_ids(r)
        except Exception:  # a damaged record shares nothing
            chains_of[r.id] = []
        for c in chains_of[r.id]:
            refs[c] = refs.get(c, 0) + 1
    return {image_id: sum(layer_sizes.get(c, 0) for c in chains if refs[c] > 1)
            for image_id, chains in chains_of.items()}



def _compile_path_pattern(pattern: str) -> re.Pattern[str]:
    """Go's path.Match, as distribution's FamiliarMatch uses it."""
    from ketch.globs import compile_glob

    try:
        return compile_glob(pattern)
    except ValueError:
        raise InvalidArgument("syntax error in pattern") from None



def _ref_matches(patterns: builtins.list[re.Pattern[str]], ref: str) -> bool:
    """distribution's FamiliarMatch: the pattern against `name:tag`, then against `name`."""
    name = ref.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    if sep and "/" not in tail:
        name = head
    return any(p.match(ref) or p.match(name) for p in patterns)

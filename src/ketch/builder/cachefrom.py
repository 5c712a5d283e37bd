"""`build --cache-from IMAGE`: other images' histories as cache sources, as the classic
builder reads them (moby's daemon/images/cache.go).

A step is a hit in a source image when the image being built so far is a prefix of the
source (its history entries equal, its layers the source's first ones) and the source's
next history entry was made by the same command (`created_by`, which for COPY/ADD holds
the sources' digest and for RUN the build args). The source's last entry gives the
source image itself, so a build that matches all the way ends with the source's ID;
an earlier entry gives a new image: the step's config on the parent's history and
layers plus that entry (and its layer). Once a source has matched, only it is used for
the rest of the stage, as moby does. A source image that is not in the store is left
out, as dockerd leaves it out (with a line in its log)."""

from __future__ import annotations

import copy

from ketch.errors import ImageNotFound, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.images.service import ImageService


def _diff_ids(config: dict[str, Any]) -> list[str]:
    return list((config.get("rootfs") or {}).get("diff_ids") or [])


class CacheSources:
    """The images named by --cache-from, read when a step first misses the local cache."""

    def __init__(self, images: ImageService, names: list[str]) -> None:
        self.images = images
        self.names = list(names)
        self._sources: list[tuple[str, dict[str, Any]]] | None = None

    def _load(self) -> list[tuple[str, dict[str, Any]]]:
        if self._sources is None:
            self._sources = []
            for name in self.names:
                try:
                    rec = self.images.resolve(name)
                    self._sources.append((rec.id, self.images.read_config(rec.id)))
                except (ImageNotFound, NotFound, ValueError):
                    continue
        return self._sources

    def lookup(self, parent_id: str | None, parent: dict[str, Any], created_by: str,
               config: dict[str, Any], cache_key: str) -> tuple[str, dict[str, Any]] | None:
        """The image a step that runs `created_by` on `parent` (the image built so far,
        ID and config) and ends with `config` has in a source, as (ID, config), or None."""
        history = list(parent.get("history") or []) if parent_id else []
        diff_ids = _diff_ids(parent) if parent_id else []
        n = len(history)
        for source_id, source in self._load():
            s_history = list(source.get("history") or [])
            s_diff_ids = _diff_ids(source)
            if len(s_history) <= n or s_history[:n] != history \
                    or s_diff_ids[:len(diff_ids)] != diff_ids:
                continue
            entry = s_history[n]
            if entry.get("created_by", "") != created_by:
                continue
            self._sources = [(source_id, source)]
            if len(s_history) == n + 1:
                return source_id, copy.deepcopy(source)
            return self._restore(parent_id, source_id, source, n, config, cache_key)
        return None

    def _restore(self, parent_id: str | None, source_id: str, source: dict[str, Any],
                 n: int, config: dict[str, Any], cache_key: str
                 ) -> tuple[str, dict[str, Any]] | None:
        """The source's state after its entry `n`, as an image of its own."""
        s_history = source["history"]
        entry = s_history[n]
        # the entry's layer: the diff ID after those of the entries before it that
        # made one
        index = sum(1 for h in s_history[:n] if not h.get("empty_layer"))
        layers = self.images.new_layers(parent_id) if parent_id else []
        new = copy.deepcopy(config)
        new["history"] = [*copy.deepcopy(s_history[:n]), copy.deepcopy(entry)]
        diff_ids = [x.diff_id for x in layers]
        if not entry.get("empty_layer"):
            s_layers = self.images.new_layers(source_id)
            if index >= len(s_layers):
                return None
            layers.append(s_layers[index])
            diff_ids.append(s_layers[index].diff_id)
        new["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        for key in ("architecture", "os", "variant", "author"):
            if key in source:
                new[key] = source[key]
        if entry.get("created"):
            new["created"] = entry["created"]
        rec = self.images.commit(new, layers, parent=parent_id, cache_key=cache_key)
        return rec.id, new

"""Everything about tar: safe extraction, layer diffs from overlay upper dirs, and the
digesting/compressing streams around them.

Public API (import from here; the submodules are implementation):

* extraction: `extract`, `ExtractStats`
* writing: `write_layer_from_upper`, `write_tree`, `write_dir_fd`,
  `layer_blob_from_upper`
* streams: `open_decompressed`, `compress_gzip`, `gzip_writer`, `DigestingWriter`,
  `DigestingReader`, `LayerDigests`, `detect_compression`
* paths in an untrusted root: `safe_join`, `resolve_in_root`, `open_in_root`, `InRoot`
"""

from __future__ import annotations

from ketch.archive.compression import (
    COPY_BUFSIZE,
    DEFAULT_GZIP_LEVEL,
    DigestingReader,
    DigestingWriter,
    LayerDigests,
    compress_gzip,
    copy_stream,
    detect_compression,
    gzip_writer,
    open_decompressed,
)
from ketch.archive.extract import ExtractStats, extract
from ketch.archive.paths import (
    InRoot,
    clean_member_name,
    open_in_root,
    resolve_in_root,
    safe_join,
)
from ketch.archive.whiteouts import (
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
)
from ketch.archive.writer import (
    layer_blob_from_upper,
    write_dir_fd,
    write_layer_from_upper,
    write_tree,
)

__all__ = [
    "COPY_BUFSIZE",
    "DEFAULT_GZIP_LEVEL",
    "OVERLAY_OPAQUE_XATTR",
    "WHITEOUT_META_PREFIX",
    "WHITEOUT_OPAQUE",
    "WHITEOUT_PREFIX",
    "DigestingReader",
    "DigestingWriter",
    "ExtractStats",
    "InRoot",
    "LayerDigests",
    "clean_member_name",
    "compress_gzip",
    "copy_stream",
    "detect_compression",
    "extract",
    "gzip_writer",
    "layer_blob_from_upper",
    "open_decompressed",
    "open_in_root",
    "resolve_in_root",
    "safe_join",
    "write_dir_fd",
    "write_layer_from_upper",
    "write_tree",
]

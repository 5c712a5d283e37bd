"""`python -m ketch.cri ROOT RUN_ROOT URI [STREAM_ADDRESS [CNI_CONF_DIR CNI_BIN_DIR]]`: the
CRI server as a program (see __init__); an empty argument takes the default."""

from __future__ import annotations

import sys

from ketch.errors import KetchError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4, 6):
        sys.stderr.write("usage: python -m ketch.cri ROOT RUN_ROOT URI [STREAM_ADDRESS"
                         " [CNI_CONF_DIR CNI_BIN_DIR]] (empty arguments take the"
                         " defaults)\n")
        return 2
    root, run_root, uri = args[:3]
    stream = args[3] if len(args) >= 4 else ""
    conf_dir, bin_dir = (args[4], args[5]) if len(args) == 6 else ("", "")
    try:
        # a typo in an address is refused before the server's imports (gRPC, aiohttp:
        # some 0.3 s)
        from ketch.cri.addresses import parse_address, socket_path

        socket_path(uri or None)
        parse_address(stream or None)
        from ketch.registry.aiohttp_import import import_aiohttp

        import_aiohttp()
        from ketch.cri.server import serve

        serve(root, run_root, uri or None, stream or None, conf_dir, bin_dir)
    except KetchError as e:
        sys.stderr.write(f"Error: {e.message}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 (one line, as the CLI says it, never a traceback)
        sys.stderr.write(f"Error: internal error: {type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the `ketch` command as a lean launcher: `python3 -m ketch.launcher [PATH]`.

pip's console script starts a full interpreter: `site` runs every `.pth` file in
site-packages, and one such file can cost more than ketch's whole command (a certifi
import at every start costs 55 ms on our CI machines, where `python -S` starts in 15 ms).
A container engine's `ps` or a cached `build` should not pay that.

The launcher written here starts Python with `-I -S` (isolated: no PYTHONPATH, no user
site, no script directory on sys.path; no `site` processing) and puts on sys.path exactly
the directories this installation imports ketch and its dependencies from, as found now by
the interpreter that runs this module. Like Debian's `#!/usr/bin/python3 -Es` system
scripts, ketch then behaves the same whatever the caller's environment holds. It also
runs in UTF-8 mode (`-X utf8`, as Python does by itself in the C locale): text is
UTF-8 whatever the locale says, as for the docker CLI, and the interpreter skips
looking up the locale's codec at start (1.4 of the 27 million instructions of a bare
`python -I -S` start, callgrind). The flags are one word, `-ISXutf8`: a `#!` line passes
a single argument.

Run it again after moving the source tree or the interpreter (scripts/install-deps.sh
runs it after every `pip install`).
"""

from __future__ import annotations

import os
import sys

HEADER = "# ketch launcher, written by `python3 -m ketch.launcher`; see ketch/launcher.py\n"


def search_path() -> list[str]:
    """Directories the launcher needs on sys.path, in this interpreter's order."""
    import subprocess

    import ketch

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(ketch.__file__)))
    # What `python -I -S` has anyway (the standard library and lib-dynload).
    bare = subprocess.run([sys.executable, "-I", "-S", "-c",
                           "import sys; print('\\0'.join(sys.path))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    skip = {os.path.realpath(p) for p in bare.split("\0") if p}
    # `python -m ketch.launcher` puts the working directory first; it is not ketch's.
    entries = sys.path[1:] if sys.argv and sys.argv[0] == __file__ else sys.path
    wanted: list[str] = []
    for entry in [pkg_parent, *entries]:
        if not entry or not os.path.isdir(entry) or os.path.realpath(entry) in skip:
            continue
        if entry not in wanted:
            wanted.append(entry)
    return wanted


def render(python: str, path: list[str]) -> str:
    return (f"#!{python} -ISXutf8\n{HEADER}"
            "import sys\n"
            # after the standard library, as `site` would put them: nothing installed
            # can shadow a standard module
            f"sys.path += {path!r}\n"
            "from ketch.cli.main import run\n"
            "run()\n")


def default_target() -> str:
    import sysconfig

    return os.path.join(sysconfig.get_path("scripts"), "ketch")


def self_command() -> list[str]:
    """The argv prefix that runs ketch again the way this process was started: through
    the launcher when this process came through one (what conmon's exit command and the
    restart waiter run, without paying for `site` again), else the interpreter this
    process runs on with its module path (`python -I -S -c ...`): a server started
    through `ketch system service` runs as `-c` code, and the bare interpreter need not
    find ketch at all (a venv's packages, for one)."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.isabs(script):
        try:
            with open(script, "rb") as f:
                head = f.read(512)
        except OSError:
            head = b""
        if HEADER.encode() in head and os.access(script, os.X_OK):
            return [script]
    return python_command("from ketch.cli.main import run; run()")


def python_command(statements: str) -> list[str]:
    """The argv that runs `statements` in a new interpreter like this one: the same
    executable with `-I -S` and this process's module path. The launcher's path is
    explicit, and the bare interpreter need not find ketch at all (a venv's packages,
    for one), so a child that imports ketch gets the path its parent has. Arguments
    for the child follow the returned list (its `sys.argv[1:]`)."""
    path = [p for p in sys.path if p]
    return [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:] = {path!r}; {statements}"]


def install(target: str) -> None:
    text = render(os.path.realpath(sys.executable), search_path())
    tmp = f"{target}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python3 -m ketch.launcher [PATH]   (default: the `ketch` console"
              " script beside this interpreter)", file=sys.stderr)
        return 2
    target = argv[0] if argv else default_target()
    try:
        install(target)
    except OSError as e:
        print(f"ketch.launcher: cannot write {target}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

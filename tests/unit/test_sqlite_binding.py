"""ketch.store.db loads the _sqlite3 extension without functools (and the collections
behind it), and leaves the real functools to whoever imports it later."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from ketch.store.db import Database, sqlite3
db = Database(sys.argv[2] + "/ketch.db")
conn = db.conn
conn.execute("CREATE TABLE t (k TEXT)")
for i in range(300):  # more distinct statements than the statement cache holds
    conn.execute(f"INSERT INTO t VALUES ('{i}')")
    conn.execute("SELECT count(*) FROM t WHERE k = ?", (str(i),)).fetchone()
count = conn.execute("SELECT count(*) FROM t").fetchone()[0]
loaded = sorted(m for m in ("functools", "collections", "operator") if m in sys.modules)
import functools
print(count, loaded, hasattr(functools, "partial") and hasattr(functools, "reduce"))
"""


def test_sqlite_binding_loads_without_functools_and_leaves_the_real_one(tmp_path) -> None:
    import ketch

    src = ketch.__path__[0].rsplit("/", 1)[0]
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", PROBE, src, str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(maxsplit=1) == ["300", "[] True\n"]

"""What the service costs while it waits: its idle memory (issue 11's goal: at most 30
MiB RSS, dockerd idles at ~135 MiB here) and what it imports (its HTTP layer is
ketch.api.web on h11: aiohttp, yarl and multidict, ~16 MiB between them, stay out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.api.conftest import ping, start_service, stop_service
from tests.containers.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
RSS_GOAL_KIB = 30 << 10

# The service's own serve() in the main thread (it installs signal handlers), a client
# thread that drives it over its socket, then reports which modules the process holds.
_PROBE = r"""
import http.client, json, os, socket, sys, threading, time
from ketch.api.server import serve

root, run_root, sock = sys.argv[1:4]

class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(sock)

def drive():
    try:
        report()
    except BaseException:  # (a failure ends the probe at once, with its traceback)
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)

def report():
    deadline = time.monotonic() + 30
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    statuses = []
    for method, path in (("HEAD", "/_ping"), ("GET", "/v1.45/version"),
                         ("GET", "/v1.45/info"), ("GET", "/v1.45/containers/json?all=1"),
                         ("GET", "/v1.45/images/json"), ("GET", "/v1.45/networks"),
                         ("GET", "/v1.45/volumes"), ("GET", "/v1.45/containers/nope/json"),
                         ("GET", "/v1.45/events?since=0&until=1")):
        c = Conn("localhost")
        c.request(method, path)
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
        c.close()
    mods = sorted(m for m in sys.modules
                  if m.split(".")[0] in ("aiohttp", "yarl", "multidict", "h11", "ketch"))
    print(json.dumps({"statuses": statuses, "modules": mods}), flush=True)
    os._exit(0)

threading.Thread(target=drive, daemon=True).start()
serve(root, run_root, "unix://" + sock, 0)
"""


def test_the_service_serves_without_importing_aiohttp_yarl_or_multidict(
        api_root: Path) -> None:
    sock = api_root / "probe.sock"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run([sys.executable, "-I", "-c",
                          f"import sys; sys.path.insert(0, {str(REPO / 'src')!r});" + _PROBE,
                          str(api_root), str(api_root / "run"), str(sock)],
                         capture_output=True, text=True, timeout=90, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["statuses"] == [200, 200, 200, 200, 200, 200, 200, 404, 200]
    assert "ketch.api.web" in report["modules"] and "h11" in report["modules"]
    assert [m for m in report["modules"]
            if m.split(".")[0] in ("aiohttp", "yarl", "multidict")] == []


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_the_idle_service_holds_at_most_30_mib_after_start_and_after_requests(
        api_root: Path) -> None:
    sock = api_root / "rss.sock"
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        time.sleep(1)
        at_start = _rss_kib(proc.pid)
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}",
                   DOCKER_CONFIG=str(api_root / "docker-config"))
        for args in (["version"], ["ps", "-a"], ["images"], ["network", "ls"],
                     ["volume", "ls"], ["info"]):
            done = subprocess.run(["docker", *args], env=env, capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert done.returncode == 0, (args, done.stderr)
        time.sleep(3.5)  # the service returns a burst's memory after 2 idle seconds
        after = _rss_kib(proc.pid)
    finally:
        stop_service(proc)
    assert at_start <= RSS_GOAL_KIB, f"{at_start} KiB idle after start"
    assert after <= RSS_GOAL_KIB, f"{after} KiB idle after requests"

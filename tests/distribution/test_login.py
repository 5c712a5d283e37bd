"""`ketch login/logout` keep docker's config.json, and push/pull use what they stored."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, require_root
from tests.distribution.conftest import write_htpasswd


@pytest.fixture(autouse=True)
def _as_root() -> None:
    # Images are imported and pulled here: unpacking layers keeps ownership, root only.
    require_root()


@pytest.fixture
def docker_config(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "docker-config"
    d.mkdir()
    # Something docker owns that ketch must keep.
    (d / "config.json").write_text(json.dumps({"psFormat": "table {{.ID}}"}))
    return {"DOCKER_CONFIG": str(d)}


def _config(env: dict[str, str]) -> dict:
    return json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text())


def test_login_stores_docker_auth_and_logout_removes_it(ketch: KetchCLI, tmp_path: Path,
                                                         inproc_registry,
                                                         docker_config: dict[str, str]
                                                         ) -> None:
    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))
    out = ketch("login", reg.host, "-u", "alice", "--password-stdin", input="s3cret\n",
                env=docker_config)
    assert out.stdout.strip() == "Login Succeeded"
    cfg = _config(docker_config)
    assert cfg["psFormat"] == "table {{.ID}}"
    assert cfg["auths"][reg.host]["auth"] == base64.b64encode(b"alice:s3cret").decode()
    path = Path(docker_config["DOCKER_CONFIG"]) / "config.json"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    # as the docker CLI: a new password stored in the file is warned about, once
    assert out.stderr == (f"WARNING! Your credentials are stored unencrypted in '{path}'.\n"
                          "Configure a credential helper to remove this warning.\n")
    again = ketch("login", reg.host, "-u", "alice", "--password-stdin", input="s3cret\n",
                  env=docker_config)
    assert (again.stdout, again.stderr) == ("Login Succeeded\n", "")
    empty = ketch("login", reg.host, "-u", "", "-p", "x", env=docker_config, check=False)
    assert (empty.returncode, empty.stderr) == (1, "username is empty\n")
    no_tty = ketch("login", reg.host, "-u", "bob", env=docker_config, check=False)
    assert (no_tty.returncode, no_tty.stderr) == (
        1, "Error: Cannot perform an interactive login from a non TTY device\n")

    out = ketch("logout", reg.host, env=docker_config)
    assert out.stdout.strip() == f"Removing login credentials for {reg.host}"
    assert reg.host not in _config(docker_config).get("auths", {})
    again = ketch("logout", reg.host, env=docker_config)  # the docker CLI 28 says it anyway
    assert again.stdout.strip() == f"Removing login credentials for {reg.host}"


def test_login_with_wrong_password_is_unauthorized_and_stores_nothing(
        ketch: KetchCLI, tmp_path: Path, inproc_registry,
        docker_config: dict[str, str]) -> None:
    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))
    proc = ketch("login", reg.host, "-u", "alice", "-p", "wrong", env=docker_config,
                 check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: login attempt to http://{reg.host}/v2/ failed with status:"
                      " 401 Unauthorized"]  # dockerd's words
    assert "Traceback" not in proc.stderr
    assert "auths" not in _config(docker_config)


def test_push_and_pull_need_credentials_and_use_stored_ones(
        ketch: KetchCLI, tmp_path: Path, busybox_tar: Path, inproc_registry, other_root,
        docker_config: dict[str, str]) -> None:
    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))
    name = f"{reg.host}/private/app:1"
    ketch("import", str(busybox_tar), name)

    denied = ketch("push", name, env=docker_config, check=False)
    assert denied.returncode == 1
    # the error in the push's stream, which the docker CLI prints as it is
    assert denied.stderr == "no basic auth credentials\n"

    ketch("login", reg.host, "-u", "alice", "-p", "s3cret", env=docker_config)
    assert ": Pushed" in ketch("push", name, env=docker_config).stdout

    puller = other_root("puller")
    anonymous = puller("pull", name, env=docker_config | {"DOCKER_CONFIG": str(tmp_path)},
                       check=False)
    assert anonymous.returncode == 1
    assert anonymous.stderr == (f'Error: Head "http://{reg.host}/v2/private/app/manifests/1":'
                                " no basic auth credentials\n")  # dockerd names the request
    pulled = puller("pull", name, env=docker_config)
    assert f"Status: Downloaded newer image for {name}" in pulled.stdout


def test_bearer_token_registry_login_push_pull(ketch: KetchCLI, tmp_path: Path,
                                               busybox_tar: Path, inproc_registry, other_root,
                                               docker_config: dict[str, str]) -> None:
    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "bob", "pw"), auth="token")
    name = f"{reg.host}/team/app:2"
    image_id = ketch("import", str(busybox_tar), name).stdout.strip()

    denied = ketch("push", name, env=docker_config, check=False)
    assert denied.returncode != 0 and "unauthorized" in denied.stderr

    wrong = ketch("login", reg.host, "-u", "bob", "-p", "nope", env=docker_config,
                  check=False)
    assert wrong.returncode != 0 and "unauthorized" in wrong.stderr

    ketch("login", reg.host, "-u", "bob", "--password-stdin", input="pw",
          env=docker_config)
    assert ": Pushed" in ketch("push", name, env=docker_config).stdout
    ketch("tag", name, f"{reg.host}/team/copy:2")
    assert ": Mounted from team/app" in ketch("push", f"{reg.host}/team/copy:2",
                                              env=docker_config).stdout
    puller = other_root("puller")
    puller("pull", name, env=docker_config)
    assert puller("images", "-q", "--no-trunc").stdout.split() == [image_id]


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_skopeo_authenticates_against_ketch_registry(ketch: KetchCLI, tmp_path: Path,
                                                     busybox_tar: Path, inproc_registry,
                                                     docker_config: dict[str, str],
                                                     auth: str) -> None:
    import subprocess

    from tests.conftest import require_tool

    skopeo = require_tool("skopeo")
    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "dave", "pw"), auth=auth)
    name = f"{reg.host}/auth/{auth}:1"
    ketch("import", str(busybox_tar), name)
    ketch("login", reg.host, "-u", "dave", "-p", "pw", env=docker_config)
    ketch("push", name, env=docker_config)
    base = [skopeo, "copy", "--src-tls-verify=false", f"docker://{name}"]
    anonymous = subprocess.run([*base, f"dir:{tmp_path / 'anon'}"], capture_output=True,
                               text=True, timeout=120,
                               env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "none"),
                                    "REGISTRY_AUTH_FILE": str(tmp_path / "none.json")})
    assert anonymous.returncode != 0
    # distribution's UNAUTHORIZED error, from the registry (basic) or its token endpoint
    expected = {"basic": "unauthorized: authentication required",
                "token": "unauthorized: incorrect username or password"}[auth]
    assert expected in anonymous.stderr, anonymous.stderr
    subprocess.run([*base, "--src-creds", "dave:pw", f"dir:{tmp_path / 'copy'}"],
                   check=True, capture_output=True, timeout=120)
    assert (tmp_path / "copy" / "manifest.json").exists()


FAKE_HELPER = """#!{python}
import json, os, sys
path = os.environ["FAKE_HELPER_STORE"]
db = json.load(open(path)) if os.path.exists(path) else {{}}
action, data = sys.argv[1], sys.stdin.read()
if action == "store":
    entry = json.loads(data)
    db[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
elif action == "get":
    if data not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": data, "Username": db[data][0], "Secret": db[data][1]}}))
elif action == "erase":
    db.pop(data, None)
json.dump(db, open(path, "w"))
"""


def test_login_uses_the_configured_credential_helper(ketch: KetchCLI, tmp_path: Path,
                                                      busybox_tar: Path, inproc_registry,
                                                      docker_config: dict[str, str]
                                                      ) -> None:
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-ketchtest"
    helper.write_text(FAKE_HELPER.format(python=sys.executable))
    helper.chmod(0o755)
    store = tmp_path / "helper-store.json"
    env = docker_config | {"PATH": f"{bindir}:{os.environ['PATH']}",
                           "FAKE_HELPER_STORE": str(store)}
    cfg_path = Path(docker_config["DOCKER_CONFIG"]) / "config.json"
    cfg_path.write_text(json.dumps({"credsStore": "ketchtest"}))

    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "erin", "pw"))
    ketch("login", reg.host, "-u", "erin", "-p", "pw", env=env)
    assert json.loads(store.read_text()) == {reg.host: ["erin", "pw"]}
    assert _config(docker_config)["auths"] == {reg.host: {}}

    name = f"{reg.host}/helped:1"
    ketch("import", str(busybox_tar), name)
    assert ": Pushed" in ketch("push", name, env=env).stdout

    out = ketch("logout", reg.host, env=env)
    assert out.stdout.strip() == f"Removing login credentials for {reg.host}"
    assert json.loads(store.read_text()) == {}
    denied = ketch("push", name, env=env, check=False)
    assert denied.stderr.strip() == "no basic auth credentials"

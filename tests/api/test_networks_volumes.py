"""Networks, volumes and `system df` through the Engine API: the docker CLI 28 and
docker-py 7 against `ketch system service`, on the same state as the ketch CLI."""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.api.conftest import Api
from tests.network.helpers import SubnetPicker, configured_subnets


def _netcfg(root: Path) -> dict[str, str]:
    return tomllib.loads((root / "network.toml").read_text())["network"]


def links(prefix: str) -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir()
                  if p.name.startswith(prefix))


def user_rules(root: Path) -> list[str]:
    """iptables rules that name one of the root's user-network bridges."""
    prefix = _netcfg(root)["bridge_prefix"]
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if prefix in line]


@pytest.fixture
def napi(api: Api) -> Iterator[Api]:
    """The service; after the test no user network, bridge, rule or volume is left."""
    yield api
    api.ketch.remove_everything()
    for name in api.ketch("network", "ls", "--filter", "type=custom",
                          "--format", "{{.Name}}").stdout.split():
        api.ketch("network", "rm", name)
    for name in api.ketch("volume", "ls", "-q").stdout.split():
        api.ketch("volume", "rm", name)
    assert links(_netcfg(api.root)["bridge_prefix"]) == []
    assert user_rules(api.root) == []


def _status(api: Api, method: str, path: str, body: object = None) -> tuple[int, dict]:
    conn = api.http()
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data,
                 headers={"Content-Type": "application/json"} if data else {})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, (json.loads(raw) if raw else {})


# -- networks -----------------------------------------------------------------------------
def test_docker_network_ls_shows_the_default_network_as_bridge(napi: Api) -> None:
    out = napi.docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout
    assert sorted(out.splitlines()) == ["bridge bridge local", "host host local",
                                        "none null local"]
    r = napi.docker("network", "rm", "bridge", check=False)
    assert r.returncode == 1
    assert "bridge is a pre-defined network and cannot be removed" in r.stderr
    status, body = _status(napi, "DELETE", "/v1.45/networks/host")
    assert status == 403 and "pre-defined" in body["message"]


def test_docker_network_create_inspect_ls_and_rm(napi: Api) -> None:
    subnet = SubnetPicker(avoid=configured_subnets(napi.root))()
    gateway = subnet.replace(".0/24", ".1")
    nid = napi.docker("network", "create", "--label", "team=a", "--subnet", subnet,
                      "--gateway", gateway, "apnet").stdout.strip()
    assert len(nid) == 64
    info = json.loads(napi.docker("network", "inspect", "apnet").stdout)[0]
    assert info["Id"] == nid and info["Name"] == "apnet"
    assert (info["Driver"], info["Scope"], info["Internal"]) == ("bridge", "local", False)
    assert info["IPAM"] == {"Driver": "default", "Options": None,
                            "Config": [{"Subnet": subnet, "Gateway": gateway}]}
    assert info["Labels"] == {"team": "a"} and info["Containers"] == {}
    assert {"EnableIPv6", "Attachable", "Ingress", "ConfigFrom", "ConfigOnly",
            "Options", "Created"} <= set(info)
    # the ketch CLI sees the same network at once
    assert napi.ketch("network", "inspect", "-f", "{{.Id}}", "apnet").stdout.strip() == nid
    ls = napi.docker("network", "ls", "--filter", "label=team=a", "--format",
                     "{{.Name}}").stdout.split()
    assert ls == ["apnet"]
    assert napi.docker("network", "ls", "-q", "--filter", "type=custom").stdout.split() == [
        nid[:12]]
    r = napi.docker("network", "create", "apnet", check=False)
    assert r.returncode == 1 and "network with name apnet already exists" in r.stderr
    status, _ = _status(napi, "POST", "/v1.45/networks/create",
                        {"Name": "apnet", "CheckDuplicate": True})
    assert status == 409
    assert napi.docker("network", "rm", "apnet").stdout.strip() == "apnet"
    r = napi.docker("network", "inspect", "apnet", check=False)
    assert r.returncode == 1 and "network apnet not found" in r.stderr
    assert links(_netcfg(napi.root)["bridge_prefix"]) == []


def test_docker_network_create_ip_range_aux_address_and_driver_options(napi: Api) -> None:
    subnet = SubnetPicker(avoid=configured_subnets(napi.root))()
    base = subnet.rsplit(".", 1)[0]
    napi.docker("network", "create", "--subnet", subnet, "--ip-range", f"{base}.128/25",
                "--aux-address", f"printer={base}.128", "-o",
                "com.docker.network.driver.mtu=1400", "--attachable", "apranged")
    info = json.loads(napi.docker("network", "inspect", "apranged").stdout)[0]
    assert info["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": f"{base}.1",
                                       "IPRange": f"{base}.128/25",
                                       "AuxiliaryAddresses": {"printer": f"{base}.128"}}]
    assert info["Attachable"] is True
    assert info["Options"]["com.docker.network.driver.mtu"] == "1400"
    bridge = info["Options"]["com.docker.network.bridge.name"]
    assert open(f"/sys/class/net/{bridge}/mtu").read().strip() == "1400"
    r = napi.docker("network", "create", "--ipam-opt", "x=y", "apipamopt", check=False)
    assert r.returncode == 1 and "takes no options (--ipam-opt)" in r.stderr
    napi.docker("network", "rm", "apranged")


def test_network_create_refuses_bad_requests_and_creates_nothing(napi: Api) -> None:
    for body, want in ((["x"], 400), ({}, 400), ({"Name": "bad name!"}, 400),
                       ({"Name": "v6", "IPAM": {"Config": [{"Subnet": "fd00:1::/64"}]}}, 400),
                       ({"Name": "opt", "Options": {"com.docker.network.bridge.bogus": "x"}},
                        400),
                       ({"Name": "cfg", "ConfigOnly": True}, 400),
                       ({"Name": "plug", "Driver": "overlay"}, 404)):
        status, doc = _status(napi, "POST", "/v1.45/networks/create", body)
        assert (status, bool(doc.get("message"))) == (want, True), (body, doc)
    # wrong JSON types where objects belong (each was a 500 with a Python error)
    for body, message in (({"Name": "t1", "IPAM": 5}, "invalid IPAM: expected an object"),
                          ({"Name": "t2", "IPAM": {"Config": "10.9.0.0/24"}},
                           "invalid IPAM.Config: expected an array of objects"),
                          ({"Name": "t3", "IPAM": {"Config": [5]}},
                           "invalid IPAM.Config: expected an array of objects"),
                          ({"Name": "t4", "ConfigFrom": "x"},
                           "invalid ConfigFrom: expected an object")):
        assert _status(napi, "POST", "/v1.45/networks/create", body) == \
            (400, {"message": message})
    conn = napi.http()
    conn.request("POST", "/v1.45/networks/create", body=b"{not json",
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 400 and "invalid JSON" in json.loads(r.read())["message"]
    conn.close()
    assert napi.docker("network", "ls", "-q", "--filter", "type=custom").stdout == ""
    status, doc = _status(napi, "GET", "/v1.45/networks/nosuchnet")
    assert status == 404 and doc["message"] == "network nosuchnet not found"


def test_docker_network_connect_disconnect_and_rm_refused_while_in_use(napi: Api) -> None:
    napi.docker("network", "create", "apfront")
    cid = napi.docker("run", "-d", "--name", "web", "busybox", "sh", "-c",
                      "mkdir -p /www && echo front page > /www/index.html &&"
                      " exec httpd -f -p 80 -h /www").stdout.strip()
    napi.docker("network", "connect", "--alias", "site", "apfront", "web")
    net = json.loads(napi.docker("network", "inspect", "apfront").stdout)[0]
    ep = net["Containers"][cid]
    assert ep["Name"] == "web" and ep["IPv4Address"].startswith(
        net["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0])
    nets = json.loads(napi.docker("inspect", "web").stdout)[0]["NetworkSettings"]["Networks"]
    assert sorted(nets) == ["apfront", "bridge"]
    assert "site" in nets["apfront"]["Aliases"]
    # a second container on the network reaches the first by its alias
    out = napi.docker("run", "--rm", "--network", "apfront", "busybox", "wget", "-qO-",
                      "http://site/").stdout
    assert out == "front page\n"
    r = napi.docker("network", "rm", "apfront", check=False)
    assert r.returncode == 1 and "has active endpoints" in r.stderr
    status, _ = _status(napi, "DELETE", "/v1.45/networks/apfront")
    assert status == 403
    napi.docker("network", "disconnect", "apfront", "web")
    nets = json.loads(napi.docker("inspect", "web").stdout)[0]["NetworkSettings"]["Networks"]
    assert sorted(nets) == ["bridge"]
    r = napi.docker("network", "disconnect", "apfront", "web", check=False)
    assert r.returncode == 1 and "is not connected to network apfront" in r.stderr
    napi.docker("network", "rm", "apfront")


def test_a_created_container_connected_to_a_network_joins_it_at_start(napi: Api) -> None:
    napi.docker("network", "create", "apback")
    napi.docker("network", "create", "apside")
    napi.docker("create", "--name", "late", "--network", "apback", "busybox", "sleep", "30")
    ps = napi.client().api.containers(all=True, filters={"name": "late"})[0]
    assert ps["HostConfig"]["NetworkMode"] == "apback"
    assert list(ps["NetworkSettings"]["Networks"]) == ["apback"]
    napi.docker("network", "disconnect", "apback", "late")
    napi.docker("network", "connect", "--alias", "db", "apback", "late")
    napi.docker("network", "connect", "apside", "late")
    nets = json.loads(napi.docker("inspect", "late").stdout)[0]["NetworkSettings"]["Networks"]
    assert nets["apback"]["Aliases"] == ["db"] and nets["apback"]["IPAddress"] == ""
    napi.docker("start", "late")
    nets = json.loads(napi.docker("inspect", "late").stdout)[0]["NetworkSettings"]["Networks"]
    assert set(nets) == {"apback", "apside"}
    assert nets["apback"]["IPAddress"] and "db" in nets["apback"]["Aliases"]
    assert nets["apside"]["IPAddress"]
    assert json.loads(napi.docker("inspect", "late").stdout)[0]["HostConfig"][
        "NetworkMode"] == "apback"
    for net, name in (("apback", "db"), ("apside", "late")):
        out = napi.docker("run", "--rm", "--network", net, "busybox", "ping", "-c1",
                          "-W2", name).stdout
        assert "1 packets received" in out
    napi.docker("rm", "-f", "late")


def test_created_containers_show_the_networks_they_will_join(napi: Api) -> None:
    napi.docker("network", "create", "apnz")
    napi.docker("create", "--name", "plain", "busybox", "true")
    napi.docker("create", "--name", "onnz", "--network", "apnz", "--network-alias", "al",
                "busybox", "true")
    napi.ketch("create", "--name", "byketch", "busybox", "true")
    ps = napi.docker("ps", "-a", "--format", "{{.Names}} {{.Networks}}").stdout
    assert sorted(ps.splitlines()) == ["byketch bridge", "onnz apnz", "plain bridge"]
    nets = json.loads(napi.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                  "onnz").stdout)
    assert list(nets) == ["apnz"] and nets["apnz"]["Aliases"] == ["al"]
    assert nets["apnz"]["NetworkID"] == napi.docker("network", "inspect", "-f", "{{.Id}}",
                                                    "apnz").stdout.strip()
    assert nets["apnz"]["IPAddress"] == ""


def test_docker_network_prune_removes_only_unused_networks(napi: Api) -> None:
    napi.docker("network", "create", "--label", "keep=1", "apkeep")
    napi.docker("network", "create", "apgone")
    napi.docker("network", "create", "apused")
    napi.docker("run", "-d", "--name", "user", "--network", "apused", "busybox", "sleep", "30")
    out = napi.docker("network", "prune", "-f", "--filter", "label!=keep").stdout
    assert out.split() == ["Deleted", "Networks:", "apgone"]
    names = napi.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "apkeep" in names and "apused" in names and "apgone" not in names
    assert napi.docker("network", "ls", "-q", "--filter", "dangling=true").stdout.split() == [
        napi.docker("network", "inspect", "-f", "{{.Id}}", "apkeep").stdout.strip()[:12]]


def test_docker_py_manages_networks(napi: Api) -> None:
    import docker

    client = napi.client()
    subnet = SubnetPicker(avoid=configured_subnets(napi.root))()
    net = client.networks.create("pynet", driver="bridge", labels={"via": "docker-py"},
                                 ipam=docker.types.IPAMConfig(pool_configs=[
                                     docker.types.IPAMPool(subnet=subnet)]))
    assert net.name == "pynet" and net.attrs["IPAM"]["Config"][0]["Subnet"] == subnet
    fixed = subnet.replace(".0/24", ".50")
    assert [n.name for n in client.networks.list(names=["pynet"])] == ["pynet"]
    assert [n.name for n in client.networks.list(filters={"label": "via=docker-py"})] == [
        "pynet"]
    with pytest.raises(docker.errors.APIError) as exc:
        client.networks.create("pynet")
    assert exc.value.status_code == 409
    c = client.containers.run("busybox", ["sleep", "30"], detach=True, name="pyc")
    net.connect(c, aliases=["pyalias"], ipv4_address=fixed)
    net.reload()
    assert net.attrs["Containers"][c.id]["IPv4Address"] == fixed + "/24"
    c.reload()
    assert c.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"] == fixed
    with pytest.raises(docker.errors.APIError) as exc:
        net.remove()
    assert exc.value.status_code == 403
    net.disconnect(c)
    c.remove(force=True)
    net.remove()
    with pytest.raises(docker.errors.NotFound):
        client.networks.get("pynet")
    assert client.networks.prune() == {"NetworksDeleted": []}


# -- volumes ------------------------------------------------------------------------------
def test_docker_volume_create_ls_inspect_rm_and_refused_while_in_use(napi: Api) -> None:
    assert napi.docker("volume", "create", "--label", "tier=db", "apvol").stdout == "apvol\n"
    info = json.loads(napi.docker("volume", "inspect", "apvol").stdout)[0]
    assert (info["Name"], info["Driver"], info["Scope"]) == ("apvol", "local", "local")
    assert info["Labels"] == {"tier": "db"} and Path(info["Mountpoint"]).is_dir()
    assert napi.ketch("volume", "ls", "-q").stdout.split() == ["apvol"]
    napi.docker("volume", "create", "other")
    assert napi.docker("volume", "ls", "-q", "--filter", "label=tier=db").stdout.split() == [
        "apvol"]
    assert napi.docker("volume", "ls", "-q", "--filter", "name=oth").stdout.split() == [
        "other"]
    napi.docker("run", "-d", "--name", "holder", "-v", "apvol:/data", "busybox", "sh", "-c",
                "echo kept > /data/f; sleep 30")
    r = napi.docker("volume", "rm", "apvol", check=False)
    assert r.returncode == 1 and "volume is in use" in r.stderr
    r = napi.docker("volume", "rm", "-f", "apvol", check=False)
    assert r.returncode == 1 and "volume is in use" in r.stderr
    assert napi.docker("volume", "ls", "-q", "--filter", "dangling=true").stdout.split() == [
        "other"]
    napi.docker("rm", "-f", "holder")
    assert (Path(info["Mountpoint"]) / "f").read_text() == "kept\n"
    assert napi.docker("volume", "rm", "apvol", "other").stdout.split() == ["apvol", "other"]
    r = napi.docker("volume", "inspect", "apvol", check=False)
    assert r.returncode == 1 and "no such volume" in r.stderr
    status, _ = _status(napi, "DELETE", "/v1.45/volumes/apvol?force=1")
    assert status == 204
    status, doc = _status(napi, "DELETE", "/v1.45/volumes/apvol")
    assert status == 404 and "no such volume" in doc["message"]


def test_docker_volume_prune_takes_anonymous_volumes_unless_all(napi: Api) -> None:
    napi.docker("volume", "create", "named")
    anon = napi.docker("volume", "create").stdout.strip()
    assert len(anon) == 64
    out = napi.docker("volume", "prune", "-f").stdout
    assert anon in out.split() and "named" not in out.split()
    assert napi.docker("volume", "ls", "-q").stdout.split() == ["named"]
    out = napi.docker("volume", "prune", "-a", "-f").stdout
    assert "named" in out.split()
    assert napi.docker("volume", "ls", "-q").stdout == ""
    # API before 1.42: prune takes named volumes as well, as Docker did
    napi.docker("volume", "create", "old")
    status, doc = _status(napi, "POST", "/v1.41/volumes/prune")
    assert status == 200 and doc["VolumesDeleted"] == ["old"]


def test_volume_create_refuses_bad_requests(napi: Api) -> None:
    for body in ({"Name": "bad/name"}, {"Name": "x", "Driver": "nfs"},
                 {"Name": "x", "DriverOpts": {"bogus": "1"}}, {"Name": 5},
                 {"Name": "x", "Labels": ["a"]}):
        status, doc = _status(napi, "POST", "/v1.45/volumes/create", body)
        assert status == 400 and doc["message"], (body, doc)
    assert napi.docker("volume", "ls", "-q").stdout == ""


def test_docker_py_manages_volumes(napi: Api) -> None:
    import docker

    client = napi.client()
    v = client.volumes.create("pyvol", labels={"by": "py"})
    assert v.name == "pyvol" and v.attrs["Labels"] == {"by": "py"}
    assert [x.name for x in client.volumes.list(filters={"label": "by=py"})] == ["pyvol"]
    assert client.volumes.get("pyvol").attrs["Mountpoint"].endswith("/pyvol/_data")
    c = client.containers.run("busybox", ["sleep", "30"], detach=True,
                              volumes={"pyvol": {"bind": "/d", "mode": "rw"}})
    with pytest.raises(docker.errors.APIError) as exc:
        v.remove()
    assert exc.value.status_code == 409
    c.remove(force=True)
    assert client.volumes.prune(filters={"all": ["true"]})["VolumesDeleted"] == ["pyvol"]
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("pyvol")


# -- system df ----------------------------------------------------------------------------
def test_docker_system_df_counts_images_containers_and_volumes(napi: Api) -> None:
    napi.docker("volume", "create", "dfvol")
    napi.docker("run", "--name", "dfc", "-v", "dfvol:/d", "busybox", "sh", "-c",
                "head -c 4096 /dev/zero > /d/blob")
    rows = {}
    for line in napi.docker("system", "df", "--format",
                            "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}").stdout.splitlines():
        typ, total, active, size = line.split("|")
        rows[typ] = (total, active, size)
    assert rows["Images"][:2] == ("1", "1")
    assert rows["Containers"][:2] == ("1", "0")
    assert rows["Local Volumes"] == ("1", "1", "4.096kB")
    status, doc = _status(napi, "GET", "/v1.45/system/df")
    assert status == 200
    assert {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"} <= set(doc)
    assert "BuilderSize" not in doc  # gone from API 1.42 on, as from dockerd's answer
    status, old = _status(napi, "GET", "/v1.41/system/df")
    assert (status, old["BuilderSize"]) == (200, 0)  # still sent to older clients
    vol = doc["Volumes"][0]
    assert vol["Name"] == "dfvol" and vol["UsageData"] == {"Size": 4096, "RefCount": 1}
    # the ketch CLI reads the same Engine data
    ketch_rows = napi.ketch("system", "df", "--format", "{{.Type}}|{{.TotalCount}}").stdout
    assert "Local Volumes|1" in ketch_rows.splitlines()
    napi.docker("rm", "dfc")

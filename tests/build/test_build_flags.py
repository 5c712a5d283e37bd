"""`ketch build` flags: -t, -q, --iidfile, --label, --pull, --platform, --network, the
RUN steps' resources and host settings, the refused BuildKit/experimental flags,
--rm/--force-rm."""

from __future__ import annotations

import platform
import re
from pathlib import Path

from tests.build.conftest import Builder


def test_tags_quiet_iidfile_and_labels(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nLABEL from=dockerfile\nRUN echo noisy\n"})
    iid = kb.tmp / "iid"
    r = kb.build(ctx, "-q", "-t", "app:1", "-t", "registry.example:5000/team/app",
                 "--iidfile", str(iid), "--label", "built-by=ketch", "--label", "x=a b")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.stdout), r.stdout
    assert iid.read_text() == r.stdout.strip()
    assert kb.image_id("app:1") == kb.image_id("registry.example:5000/team/app:latest") \
        == r.stdout.strip()
    labels = kb.inspect("app:1", "{{json .Config.Labels}}")
    assert labels == '{"built-by":"ketch","from":"dockerfile","x":"a b"}'
    bad = kb.build(ctx, "-t", "Bad:Tag", check=False)
    assert bad.returncode == 125  # a flag value refused, as the docker CLI's flag errors
    assert 'invalid argument "Bad:Tag" for "-t, --tag" flag' in bad.stderr


def test_an_iidfile_is_removed_before_the_build_and_one_it_cannot_write_is_one_line(
        kb: Builder) -> None:
    """As the docker CLI: a stale --iidfile goes before the build (a failed build leaves
    none), a path it cannot remove stops the build, and a path it cannot write says so
    in one line, exit 1, after the -q line (it was an internal error)."""
    ctx = kb.context({"Dockerfile": "FROM busybox\nRUN false\n"})
    iid = kb.tmp / "stale-iid"
    iid.write_text("sha256:" + "0" * 64)
    assert kb.build(ctx, "--iidfile", str(iid), check=False).returncode == 1
    assert not iid.exists()
    ctx = kb.context({"Dockerfile": "FROM busybox\nCMD [\"true\"]\n"})
    where = kb.tmp / "no-such-dir" / "iid"
    r = kb.build(ctx, "-q", "--iidfile", str(where), check=False)
    assert r.returncode == 1
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.stdout), r.stdout
    assert r.stderr == f"Error: open {where}: no such file or directory\n"
    (kb.tmp / "a-dir" / "inside").mkdir(parents=True)
    r = kb.build(ctx, "-q", "--iidfile", str(kb.tmp / "a-dir"), check=False)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"Error: Removing image ID file: remove {kb.tmp / 'a-dir'}:"
                        " directory not empty\n")


def test_platform_must_be_the_hosts(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nCMD [\"true\"]\n"})
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    kb.build(ctx, "--platform", f"linux/{arch}", "-t", "p")
    other = "s390x" if arch != "s390x" else "amd64"
    r = kb.build(ctx, "--platform", f"linux/{other}", check=False)
    assert r.returncode == 1 and "host platform" in r.stderr
    help_text = kb("build", "--help").stdout
    assert "--pull" in help_text and "Always attempt to pull a newer version" in help_text


def test_network_none_gives_run_only_loopback(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nRUN ls /sys/class/net | sort | tr '\\n' ' '"
                                    " > /ifaces\n"})
    kb.build(ctx, "--network", "none", "-t", "nonet")
    assert kb.run("nonet", "cat", "/ifaces").split() == ["lo"]
    kb.build(ctx, "--no-cache", "-t", "withnet")
    assert len(kb.run("withnet", "cat", "/ifaces").split()) >= 2


def test_rm_false_keeps_intermediate_containers(kb: Builder) -> None:
    kb.allow_containers = True
    ctx = kb.context({"Dockerfile": "FROM busybox\nRUN echo kept > /k\n"})
    out = kb.build(ctx, "--rm=false", "-t", "kept").stdout
    assert "Removed intermediate container" not in out
    cid = re.search(r"Running in ([0-9a-f]{12})", out).group(1)  # type: ignore[union-attr]
    assert cid in kb("ps", "-aq").stdout
    assert kb.run("kept", "cat", "/k") == "kept\n"


def test_failed_step_container_is_removed_unless_kept(kb: Builder) -> None:
    kb.allow_containers = True
    ctx = kb.context({"Dockerfile": "FROM busybox\nRUN exit 3\n"})
    r = kb.build(ctx, "--rm=false", check=False)
    assert r.returncode == 3  # the RUN's status, as docker build's classic builder
    assert r.stderr.strip() == "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    assert kb("ps", "-aq").stdout.strip()  # --rm=false keeps it for a post-mortem
    for c in kb("ps", "-aq").stdout.split():
        kb("rm", "-f", c)
    r = kb.build(ctx, "--rm=false", "--force-rm", check=False)
    assert r.returncode == 3
    assert kb("ps", "-aq").stdout.strip() == ""


def test_run_network_flag_and_buildkit_only_flags(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nRUN --network=none ls /sys/class/net >"
                                    " /ifaces\n"})
    kb.build(ctx, "-t", "runnet")
    assert kb.run("runnet", "cat", "/ifaces").split() == ["lo"]
    mount = kb.context({"Dockerfile": "FROM busybox\nRUN --mount=type=cache,target=/c true\n"},
                       "mount")
    r = kb.build(mount, check=False)
    assert r.returncode == 1 and "requires BuildKit" in r.stderr


def test_builder_prune_removes_intermediate_images(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nENV A=1\nRUN echo x > /x\n"})
    kb.build(ctx, "-t", "pruned")
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=2\nRUN echo y > /x\n")
    kb.build(ctx, "-t", "pruned")  # the first build's images are now dangling cache
    before = kb("images", "-a", "-q").stdout.split()
    out = kb("builder", "prune", "-f").stdout
    assert "Total reclaimed space:" in out
    after = kb("images", "-a", "-q").stdout.split()
    assert len(after) == len(before) - 2  # the old ENV and RUN images
    assert kb.run("pruned", "cat", "/x") == "y\n"


def test_resource_and_host_flags_apply_to_every_run_step(kb: Builder) -> None:
    from tests.conftest import require

    require(open("/proc/self/mountinfo").read().count(" /sys/fs/cgroup/memory ") > 0,
            "cgroup v1 (the RUN step reads its limits from /sys/fs/cgroup/<controller>)")
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares"
              " /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
              " /sys/fs/cgroup/cpuset/cpuset.cpus > /r;"
              " df -k /dev/shm | tail -1 | awk '{print $2}' >> /r; ulimit -n >> /r;"
              " grep db.internal /etc/hosts | awk '{print $1}' >> /r;"
              " grep ^NoNewPrivs /proc/self/status | awk '{print $2}' >> /r;"
              " grep -c ketch-build-parent /proc/self/cgroup >> /r")
    ctx = kb.context({"Dockerfile": f"FROM busybox\nRUN {script}\nRUN cat /r > /r2\n"})
    try:
        _build_limited(kb, ctx)
    finally:  # the parent cgroup the steps ran under is the test's to remove
        import os

        for controller in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(f"/sys/fs/cgroup/{controller}/ketch-build-parent")
            except OSError:
                pass
    values = kb.run("limited", "cat", "/r").split()
    assert values[:5] == [str(32 << 20), "512", "50000", "25000", "0"]
    assert values[5:9] == [str(8 * 1024), "512", "10.1.2.3", "1"]
    assert int(values[9]) >= 3  # the step ran below the parent in each controller
    # the settings are the RUN containers', not the image's
    assert kb.inspect("limited", "{{json .Config.Labels}}") == "null"


def _build_limited(kb: Builder, ctx: Path) -> None:
    kb.build(ctx, "-m", "32m", "--memory-swap", "64m", "--cpu-shares", "512",
             "--cpu-period", "50000", "--cpu-quota", "25000", "--cpuset-cpus", "0",
             "--cpuset-mems", "0", "--shm-size", "8m", "--ulimit", "nofile=512:1024",
             "--add-host", "db.internal:10.1.2.3", "--security-opt", "no-new-privileges",
             "--cgroup-parent", "ketch-build-parent", "--isolation", "default",
             "--compress", "--progress", "plain", "--disable-content-trust", "-t", "limited")


def test_build_refuses_what_it_cannot_do_and_builds_nothing(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nRUN touch /x\n"})
    for args, message in (
            (["--squash"], "experimental"),
            (["--stream"], "experimental"),
            (["--secret", "id=a,src=/etc/hostname"], "--secret requires DOCKER_BUILDKIT=1"),
            (["--ssh", "default"], "--ssh requires DOCKER_BUILDKIT=1"),
            (["-o", "type=local,dest=out"], "--output requires DOCKER_BUILDKIT=1"),
            (["--progress", "tty"], 'invalid --progress value "tty"'),
            (["--isolation", "hyperv"], 'Invalid isolation: "hyperv"'),
            (["--cpu-period", "10"], "CPU cfs period can not be less than 1ms"),
            (["-m", "lots"], 'invalid argument "lots" for "-m, --memory" flag'),
            (["--ulimit", "nofile"], 'invalid argument "nofile" for "--ulimit" flag'),
            (["--security-opt", "bogus"], "bogus"),
            (["--platform", "linux/s390x" if platform.machine() != "s390x" else "linux/amd64"],
             "host platform")):
        r = kb.build(ctx, *args, "-t", "refused", check=False)
        assert r.returncode != 0, args
        assert message in r.stderr, (args, r.stderr)
        assert "Step 1/" not in r.stdout, args
        assert kb("images", "-q", "refused").stdout == "", args


def test_a_built_layers_size_is_what_it_holds_as_dockerd_counts_it(kb: Builder) -> None:
    """`history` and `image inspect` count a layer's files and symlink targets, as
    dockerd does, not the length of its tar (headers and padding: 1536 bytes more for
    one small file)."""
    ctx = kb.context({"Dockerfile": "FROM busybox\nRUN printf 12345 > /five && ln -s /five"
                                    " /six\n"})
    kb.build(ctx, "-t", "sized")
    first = kb("history", "--human=false", "--format", "{{.Size}}", "sized").stdout.split()[0]
    assert first == str(5 + len("/five"))
    base = int(kb.inspect("busybox", "{{.Size}}"))
    assert int(kb.inspect("sized", "{{.Size}}")) == base + 10

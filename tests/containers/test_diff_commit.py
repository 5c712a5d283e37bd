"""`diff` and `commit`: a container's thin writable layer, read and turned into an image."""

from __future__ import annotations

import json
import time

CHANGES = ("echo new > /tmp/new; rm /etc/group; echo more >> /etc/passwd;"
           " mkdir -p /var/made/deeper")


def test_diff_lists_added_changed_and_deleted_paths(ketch):
    ketch("run", "--name", "df", "busybox", "sh", "-c", CHANGES)
    lines = ketch("diff", "df").stdout.splitlines()
    assert lines == [
        "C /etc",
        "D /etc/group",
        "C /etc/passwd",
        "C /tmp",
        "A /tmp/new",
        "C /var",
        "A /var/made",
        "A /var/made/deeper",
    ]
    assert ketch("container", "diff", "df").stdout.splitlines() == lines


def test_diff_of_an_untouched_container_is_empty(ketch):
    # the /etc files ketch mounts are no change of the user's, as in Docker
    ketch("run", "--name", "clean", "busybox", "true")
    assert ketch("diff", "clean").stdout == ""
    ketch("create", "--name", "fresh", "busybox")
    assert ketch("diff", "fresh").stdout == ""


def test_diff_of_a_running_container(ketch, run_d):
    run_d("--name", "live", "busybox", "sh", "-c", "touch /root/x; sleep 300")
    ketch("exec", "live", "true")
    from tests.helpers.host import wait_for

    wait_for(lambda: "A /root/x" in ketch("diff", "live").stdout, what="the change")


def test_commit_makes_an_image_from_the_containers_changes(ketch):
    ketch("run", "--name", "src", "-e", "FROM_RUN=1", "busybox", "sh", "-c", CHANGES)
    p = ketch("commit", "-a", "Ada <ada@example.com>", "-m", "my change", "src",
              "snap:v1")
    image_id = p.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    doc = json.loads(ketch("image", "inspect", "snap:v1").stdout)[0]
    assert doc["Id"] == image_id
    assert doc["Author"] == "Ada <ada@example.com>"
    assert "FROM_RUN=1" in doc["Config"]["Env"]
    base = json.loads(ketch("image", "inspect", "busybox").stdout)[0]
    assert doc["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(doc["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
    hist = ketch("history", "--no-trunc", "snap:v1").stdout.splitlines()
    assert "my change" in hist[1]
    # a container of the new image sees the changes, deletions included
    p = ketch("run", "--rm", "snap:v1", "sh", "-c",
              "cat /tmp/new; test -e /etc/group || echo no-group; tail -1 /etc/passwd;"
              " test -d /var/made/deeper && echo dir")
    assert p.stdout == "new\nno-group\nmore\ndir\n"


def test_commit_with_changes_and_without_a_name(ketch):
    ketch("run", "--name", "src2", "busybox", "sh", "-c", "echo hi > /greeting")
    image_id = ketch("commit", "-c", 'CMD ["cat", "/greeting"]', "-c", "ENV MODE=x",
                     "--change", "LABEL k=v", "src2").stdout.strip()
    assert ketch("run", "--rm", image_id).stdout == "hi\n"
    cfg = json.loads(ketch("image", "inspect", image_id).stdout)[0]["Config"]
    assert cfg["Cmd"] == ["cat", "/greeting"]
    assert "MODE=x" in cfg["Env"] and cfg["Labels"] == {"k": "v"}
    untagged = ketch("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert f"<none>:<none> {image_id[7:19]}" in untagged
    ketch("rmi", image_id)


def test_commit_of_a_running_container_pauses_it_and_resumes(ketch, run_d):
    # the file is replaced by a rename, so a commit at any instant sees it whole; the
    # commit waits until the first one exists
    run_d("--name", "busy", "busybox", "sh", "-c",
          "while true; do date > /tmp/next; mv /tmp/next /tmp/now; sleep 0.05; done")
    for _ in range(100):
        if ketch("exec", "busy", "test", "-s", "/tmp/now", check=False).returncode == 0:
            break
        time.sleep(0.05)
    ketch("commit", "busy", "snap:running")
    status = ketch("container", "inspect", "-f", "{{.State.Status}}", "busy").stdout.strip()
    assert status == "running"
    assert ketch("run", "--rm", "snap:running", "sh", "-c", "test -s /tmp/now && echo ok",
                 ).stdout == "ok\n"
    ketch("commit", "--pause=false", "busy", "snap:running2")


def test_commit_of_a_container_that_never_ran_is_its_image_plus_an_empty_layer(ketch):
    cid = ketch("create", "--name", "unstarted", "busybox", "true").stdout.strip()
    image = ketch("commit", cid, "unstarted-image").stdout.strip()
    try:
        assert image.startswith("sha256:")
        assert ketch("run", "--rm", "unstarted-image", "echo", "ok").stdout == "ok\n"
        layers = ketch("image", "inspect", "-f", "{{len .RootFS.Layers}}",
                       "unstarted-image").stdout.strip()
        assert layers == str(1 + int(ketch("image", "inspect", "-f",
                                           "{{len .RootFS.Layers}}", "busybox").stdout))
    finally:
        ketch("rm", cid)
        ketch("rmi", "unstarted-image")


def test_commit_errors(ketch):
    p = ketch("commit", "nosuch", check=False)
    assert p.returncode == 1 and p.stderr == "Error: No such container: nosuch\n"
    ketch("create", "--name", "c1x", "busybox")
    p = ketch("commit", "c1x", "Bad:Name", check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    p = ketch("commit", "-c", "RUN echo", "c1x", check=False)
    assert p.returncode == 1 and "not a valid change command" in p.stderr

"""`ketch tag` and `ketch rmi` / `image rm`: untag versus delete exactly as moby decides,
ID prefixes, and the reference grammar at the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import KetchCLI
from tests.images.conftest import (
    StoreState,
    add_repo_digest,
    assert_one_line_error,
    child_image,
    import_files,
)


def tags(ketch: KetchCLI) -> list[str]:
    return sorted(ketch("images", "-a", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())


def ids(ketch: KetchCLI) -> set[str]:
    return set(ketch("images", "-a", "-q", "--no-trunc").stdout.split())


# -- tag ------------------------------------------------------------------------------------
def test_tag_adds_a_name_for_the_same_image(ketch: KetchCLI, busybox: str) -> None:
    proc = ketch("tag", "busybox", "registry.example:5000/team/bb:1.0")
    assert proc.stdout == "" and proc.stderr == ""
    assert tags(ketch) == ["busybox:latest", "registry.example:5000/team/bb:1.0"]
    out = ketch("image", "inspect", "--format", "{{.Id}}", "registry.example:5000/team/bb:1.0")
    assert out.stdout.strip() == busybox


def test_tag_moves_an_existing_tag_to_the_new_image(ketch: KetchCLI, busybox: str,
                                                    tmp_path: Path) -> None:
    other = import_files(ketch, tmp_path, {"x": b"1"}, "app:1")
    ketch("tag", busybox[7:19], "app:1")
    assert ketch("image", "inspect", "-f", "{{.Id}}", "app:1").stdout.strip() == busybox
    # the old image lost its only tag and is dangling now, not deleted
    assert other in ids(ketch)
    assert ketch("images", "-q", "--no-trunc", "-f", "dangling=true").stdout.split() == [other]


def test_tag_by_full_id_with_and_without_sha256_prefix(ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", busybox, "a:1")
    ketch("tag", busybox[7:], "b:1")
    assert tags(ketch) == ["a:1", "b:1", "busybox:latest"]


@pytest.mark.parametrize("target,detail", [
    ("UPPER", "repository name (library/UPPER) must be lowercase"),
    ("bad name", "invalid reference format"),
    ("x:tag:extra", "invalid reference format"),
    ("x/_leading", "invalid reference format"),
    ("x::", "invalid reference format"),
])
def test_tag_rejects_an_invalid_target_with_dockers_message(
        ketch: KetchCLI, busybox: str, target: str, detail: str) -> None:
    before = tags(ketch)
    proc = ketch("tag", "busybox", target, check=False)
    assert proc.returncode == 1
    # the docker CLI checks it itself and prints its words as they are (no "Error:")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f'Error parsing reference: "{target}" is not a valid'
                                  " repository/tag: invalid reference format"), proc.stderr
    assert detail in proc.stderr
    assert tags(ketch) == before


def test_tag_checks_the_reference_before_the_image_exists(ketch: KetchCLI) -> None:
    proc = ketch("tag", "x", "UPPER", check=False)
    assert proc.returncode == 1
    assert proc.stderr == ('Error parsing reference: "UPPER" is not a valid repository/tag:'
                           " invalid reference format: repository name (library/UPPER) must"
                           " be lowercase\n")


def test_tag_refuses_a_digest_target(ketch: KetchCLI, busybox: str) -> None:
    proc = ketch("tag", "busybox", "app@sha256:" + "a" * 64, check=False)
    assert (proc.returncode, proc.stderr) == (
        1, "refusing to create a tag with a digest reference\n")  # as the docker CLI prints it


def test_tag_of_unknown_image_says_no_such_image(ketch: KetchCLI) -> None:
    proc = ketch("tag", "ghost:1", "x:1", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "No such image: ghost:1")


# -- ID prefixes ----------------------------------------------------------------------------
def _two_images_sharing_first_hex(ketch: KetchCLI, tmp_path: Path) -> tuple[str, str]:
    seen: dict[str, str] = {}
    for i in range(40):
        image_id = import_files(ketch, tmp_path, {f"f{i}": str(i).encode()})
        first = image_id[7]
        if first in seen:
            return seen[first], image_id
        seen[first] = image_id
    raise AssertionError("17 images cannot all have different first hex digits")


def test_unique_id_prefix_names_an_image(ketch: KetchCLI, busybox: str) -> None:
    for prefix in (busybox[7:11], busybox[7:19], "sha256:" + busybox[7:15]):
        out = ketch("image", "inspect", "-f", "{{.Id}}", prefix).stdout.strip()
        assert out == busybox


def test_ambiguous_id_prefix_is_an_error_that_says_so(ketch: KetchCLI,
                                                      tmp_path: Path) -> None:
    a, b = _two_images_sharing_first_hex(ketch, tmp_path)
    common = 0
    while a[7 + common] == b[7 + common]:
        common += 1
    prefix = a[7:7 + common]
    for cmd in (["image", "inspect"], ["rmi"], ["history"], ["tag"]):
        args = [*cmd, prefix] + (["x:1"] if cmd == ["tag"] else [])
        proc = ketch(*args, check=False)
        assert proc.returncode == 1, cmd
        assert_one_line_error(proc.stderr, "ambiguous", prefix)
    # one more character decides
    assert ketch("image", "inspect", "-f", "{{.Id}}", a[7:8 + common]).stdout.strip() == a
    assert {a, b} <= ids(ketch)


def test_a_tag_wins_over_an_id_prefix(ketch: KetchCLI, busybox: str, tmp_path: Path) -> None:
    other = import_files(ketch, tmp_path, {"x": b"1"})
    ketch("tag", other, busybox[7:13])  # a repository named like busybox's ID prefix
    out = ketch("image", "inspect", "-f", "{{.Id}}", busybox[7:13]).stdout.strip()
    assert out == other


# -- rmi: untag versus delete ---------------------------------------------------------------
def test_rmi_untags_only_when_other_tags_remain(ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", "busybox", "other:1")
    before = StoreState.of(ketch)
    proc = ketch("rmi", "other:1")
    assert proc.stdout == "Untagged: other:1\n"
    assert tags(ketch) == ["busybox:latest"]
    assert StoreState.of(ketch).blobs == before.blobs


def test_rmi_of_the_last_tag_deletes_the_image_and_its_layer(
        ketch: KetchCLI, busybox: str) -> None:
    layer = ketch("image", "inspect", "-f", "{{index .RootFS.Layers 0}}", "busybox").stdout
    proc = ketch("image", "rm", "busybox")
    assert proc.stdout.splitlines() == ["Untagged: busybox:latest", f"Deleted: {busybox}",
                                        f"Deleted: {layer.strip()}"]
    state = StoreState.of(ketch)
    assert state.images == [] and state.blobs == set() and state.layers == set()


def test_rmi_without_a_tag_means_latest(ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", "busybox", "busybox:1")
    assert ketch("rmi", "busybox").stdout == "Untagged: busybox:latest\n"
    assert tags(ketch) == ["busybox:1"]


def test_rmi_by_id_refuses_an_image_tagged_in_several_repositories(
        ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", "busybox", "other:1")
    proc = ketch("rmi", busybox[7:19], check=False)
    assert proc.returncode == 1
    assert_one_line_error(
        proc.stderr, f"conflict: unable to delete {busybox[7:19]} (must be forced) - image is"
        " referenced in multiple repositories")
    assert tags(ketch) == ["busybox:latest", "other:1"]


def test_rmi_force_by_id_untags_everything_and_deletes(ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", "busybox", "other:1")
    out = ketch("rmi", "-f", busybox[7:19]).stdout.splitlines()
    assert out[:3] == ["Untagged: busybox:latest", "Untagged: other:1", f"Deleted: {busybox}"]
    assert ids(ketch) == set()


def test_rmi_by_id_of_an_image_with_one_repository_untags_and_deletes(
        ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", "busybox", "busybox:2")  # same repository: still a "single reference"?
    proc = ketch("rmi", busybox[7:19], check=False)
    # two tags are two references: moby wants -f
    assert proc.returncode == 1
    ketch("rmi", "busybox:2")
    out = ketch("rmi", busybox[7:19]).stdout.splitlines()
    assert out[:2] == ["Untagged: busybox:latest", f"Deleted: {busybox}"]


def test_rmi_several_at_once_reports_each_and_fails_for_the_missing_one(
        ketch: KetchCLI, busybox: str, tmp_path: Path) -> None:
    other = import_files(ketch, tmp_path, {"x": b"1"}, "other:1")
    proc = ketch("rmi", "other:1", "ghost", "busybox", check=False)
    assert proc.returncode == 1
    assert "Untagged: other:1" in proc.stdout and f"Deleted: {other}" in proc.stdout
    assert "Untagged: busybox:latest" in proc.stdout and f"Deleted: {busybox}" in proc.stdout
    assert_one_line_error(proc.stderr, "No such image: ghost")
    assert ids(ketch) == set()


def test_rmi_of_unknown_image_says_no_such_image(ketch: KetchCLI) -> None:
    # named as dockerd names it: the reference as parsed, with its default tag
    proc = ketch("rmi", "nothere", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "Error: No such image: nothere:latest\n"
    # with --force a missing image is reported and is no failure, as docker rmi -f
    proc = ketch("rmi", "-f", "nothere", check=False)
    assert (proc.returncode, proc.stderr) == (0, "Error: No such image: nothere:latest\n")


def test_rmi_of_an_invalid_name_says_invalid_reference_format(ketch: KetchCLI) -> None:
    proc = ketch("rmi", "Not/Valid", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "invalid reference format")


def test_rmi_of_a_parent_tag_keeps_the_image_for_its_child(
        ketch: KetchCLI, busybox: str) -> None:
    child = child_image(ketch, busybox, {"c": b"1"}, "child:1")
    assert ketch("rmi", "busybox").stdout == "Untagged: busybox:latest\n"
    assert {busybox, child} == ids(ketch)


def test_rmi_by_id_of_a_parent_is_a_hard_conflict_even_forced(
        ketch: KetchCLI, busybox: str) -> None:
    child_image(ketch, busybox, {"c": b"1"}, "child:1")
    ketch("rmi", "busybox")
    for args in (["rmi", busybox[7:19]], ["rmi", "-f", busybox[7:19]]):
        proc = ketch(*args, check=False)
        assert proc.returncode == 1
        assert_one_line_error(proc.stderr, f"unable to delete {busybox[7:19]} (cannot be"
                              " forced) - image has dependent child images")


def test_rmi_of_a_child_prunes_its_untagged_parents(ketch: KetchCLI, busybox: str) -> None:
    child = child_image(ketch, busybox, {"c": b"1"}, "child:1")
    ketch("rmi", "busybox")
    out = ketch("rmi", "child:1").stdout.splitlines()
    assert out[:2] == ["Untagged: child:1", f"Deleted: {child}"]
    assert f"Deleted: {busybox}" in out
    assert ids(ketch) == set()


def test_rmi_no_prune_keeps_untagged_parents(ketch: KetchCLI, busybox: str) -> None:
    child_image(ketch, busybox, {"c": b"1"}, "child:1")
    ketch("rmi", "busybox")
    ketch("rmi", "--no-prune", "child:1")
    assert ids(ketch) == {busybox}


def test_rmi_by_digest_reference_removes_only_that_digest(
        ketch: KetchCLI, busybox: str) -> None:
    digest = "sha256:" + "ef" * 32
    add_repo_digest(ketch, f"docker.io/library/busybox@{digest}", busybox)
    assert ketch("rmi", f"busybox@{digest}").stdout == f"Untagged: busybox@{digest}\n"
    assert tags(ketch) == ["busybox:latest"]
    assert ketch("image", "inspect", "-f", "{{len .RepoDigests}}", "busybox").stdout == "0\n"


def test_rmi_of_the_last_tag_of_a_repository_takes_its_digests(
        ketch: KetchCLI, busybox: str) -> None:
    digest = "sha256:" + "12" * 32
    add_repo_digest(ketch, f"docker.io/library/busybox@{digest}", busybox)
    ketch("tag", "busybox", "keep:1")
    out = ketch("rmi", "busybox").stdout.splitlines()
    assert out == ["Untagged: busybox:latest", f"Untagged: busybox@{digest}"]
    assert tags(ketch) == ["keep:1"]


def test_rmi_refuses_image_used_by_stopped_container_unless_forced(
        ketch: KetchCLI, busybox: str) -> None:
    cid = ketch("create", "busybox", "true").stdout.strip()
    proc = ketch("rmi", "busybox", check=False)
    assert proc.returncode == 1
    assert_one_line_error(
        proc.stderr, 'unable to remove repository reference "busybox" (must force) -'
        f" container {cid[:12]} is using its referenced image {busybox[7:19]}")
    proc = ketch("rmi", busybox[7:19], check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "(must be forced) - image is being used by stopped"
                          f" container {cid[:12]}")
    out = ketch("rmi", "-f", "busybox").stdout.splitlines()
    assert out[:2] == ["Untagged: busybox:latest", f"Deleted: {busybox}"]
    # the container still holds its layers: they are not reported nor removed
    assert len(out) == 2
    assert StoreState.of(ketch).layers

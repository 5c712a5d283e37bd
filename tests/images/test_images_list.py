"""`ketch images` / `ketch image ls`: Docker's table, flags, filters and formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import KetchCLI
from tests.images.conftest import (
    add_repo_digest,
    assert_one_line_error,
    child_image,
    import_files,
)

HEADER = re.compile(r"^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$")


def rows(text: str) -> list[list[str]]:
    """Table rows split on runs of 2+ spaces (cells like "2 seconds ago" keep theirs)."""
    return [re.split(r" {2,}", line.strip()) for line in text.splitlines()[1:]]


def test_images_prints_docker_table_with_header_and_aligned_columns(
        ketch: KetchCLI, busybox: str) -> None:
    out = ketch("images").stdout
    lines = out.splitlines()
    assert HEADER.match(lines[0])
    assert rows(out) == [["busybox", "latest", busybox[7:19], rows(out)[0][3], "1.99MB"]]
    assert re.fullmatch(r"\d+ seconds? ago|Less than a second ago|About a minute ago",
                        rows(out)[0][3])
    # docker's tabwriter: each column padded to its widest cell + 3, at least 10 wide
    assert lines[0].index("TAG") == len("REPOSITORY") + 3
    assert lines[0].index("IMAGE ID") == lines[0].index("TAG") + 10
    assert lines[1].index(busybox[7:19]) == lines[0].index("IMAGE ID")


def test_image_ls_and_image_list_are_the_same_command(ketch: KetchCLI, busybox: str) -> None:
    a = ketch("images", "--format", "{{.ID}} {{.Repository}}").stdout
    assert a == ketch("image", "ls", "--format", "{{.ID}} {{.Repository}}").stdout
    assert a == ketch("image", "list", "--format", "{{.ID}} {{.Repository}}").stdout
    assert a == f"{busybox[7:19]} busybox\n"


def test_empty_store_prints_only_the_header(ketch: KetchCLI) -> None:
    out = ketch("images").stdout
    assert out.splitlines() == ["REPOSITORY   TAG       IMAGE ID   CREATED   SIZE"]


def test_images_lists_newest_first_with_one_row_per_tag(ketch: KetchCLI, busybox: str,
                                                        tmp_path: Path) -> None:
    newer = import_files(ketch, tmp_path, {"a": b"1"}, "newer:1")
    ketch("tag", "busybox", "zz/busybox:2")
    table = rows(ketch("images").stdout)
    assert [r[:3] for r in table] == [
        ["newer", "1", newer[7:19]],
        ["busybox", "latest", busybox[7:19]],
        ["zz/busybox", "2", busybox[7:19]],
    ]


def test_quiet_prints_one_id_per_row_like_docker(ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", "busybox", "other:1")
    assert ketch("images", "-q").stdout.splitlines() == [busybox[7:19]] * 2
    assert ketch("images", "-q", "--no-trunc").stdout.splitlines() == [busybox] * 2


def test_no_trunc_shows_the_full_image_id(ketch: KetchCLI, busybox: str) -> None:
    assert rows(ketch("images", "--no-trunc").stdout)[0][2] == busybox


def test_all_shows_intermediate_images_that_the_default_hides(
        ketch: KetchCLI, busybox: str) -> None:
    child = child_image(ketch, busybox, {"etc/child": b"x"}, "child:1")
    ketch("rmi", "busybox")  # untags only: the image is now an intermediate parent
    assert [r[2] for r in rows(ketch("images").stdout)] == [child[7:19]]
    table = rows(ketch("images", "-a").stdout)
    assert [r[:3] for r in table] == [["child", "1", child[7:19]],
                                      ["<none>", "<none>", busybox[7:19]]]


def test_digests_column_shows_each_repository_digest(ketch: KetchCLI, busybox: str) -> None:
    digest = "sha256:" + "ab" * 32
    add_repo_digest(ketch, f"docker.io/library/busybox@{digest}", busybox)
    out = ketch("images", "--digests").stdout
    assert re.match(r"^REPOSITORY +TAG +DIGEST +IMAGE ID +CREATED +SIZE$",
                    out.splitlines()[0])
    assert rows(out)[0][:4] == ["busybox", "latest", digest, busybox[7:19]]
    # without --digests the digest is only in RepoDigests, not a row of its own
    assert len(rows(ketch("images").stdout)) == 1


def test_digest_only_repository_gets_a_none_tag_row(ketch: KetchCLI, busybox: str) -> None:
    digest = "sha256:" + "cd" * 32
    add_repo_digest(ketch, f"registry.example:5000/app@{digest}", busybox)
    table = rows(ketch("images", "--digests").stdout)
    assert ["registry.example:5000/app", "<none>", digest, busybox[7:19]] in [
        r[:4] for r in table]
    table = rows(ketch("images").stdout)
    assert ["registry.example:5000/app", "<none>", busybox[7:19]] in [r[:3] for r in table]


def test_filter_dangling_true_lists_only_untagged_leaves(ketch: KetchCLI, busybox: str,
                                                         tmp_path: Path) -> None:
    loose = import_files(ketch, tmp_path, {"loose": b"1"})
    parent = import_files(ketch, tmp_path, {"parent": b"1"})
    child_image(ketch, parent, {"c": b"1"}, "child:1")
    assert ketch("images", "-q", "--no-trunc", "-f", "dangling=true").stdout.split() == [loose]
    listed = ketch("images", "-q", "--no-trunc", "--filter", "dangling=false").stdout.split()
    assert loose not in listed and busybox in listed


def test_filter_dangling_rejects_values_other_than_true_or_false(
        ketch: KetchCLI, busybox: str) -> None:
    proc = ketch("images", "-f", "dangling=maybe", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "invalid filter 'dangling=[maybe]'")


def test_unknown_filter_is_an_error(ketch: KetchCLI, busybox: str) -> None:
    proc = ketch("images", "--filter", "colour=red", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "invalid filter 'colour'")


def test_filter_label_matches_key_or_key_and_value(ketch: KetchCLI, tmp_path: Path) -> None:
    a = import_files(ketch, tmp_path, {"a": b"1"}, "a:1", "LABEL tier=web team=x")
    b = import_files(ketch, tmp_path, {"b": b"1"}, "b:1", "LABEL tier=db")
    import_files(ketch, tmp_path, {"c": b"1"}, "c:1")

    def ids(*f: str) -> set[str]:
        args = [x for v in f for x in ("--filter", v)]
        return set(ketch("images", "-q", "--no-trunc", *args).stdout.split())

    assert ids("label=tier") == {a, b}
    assert ids("label=tier=db") == {b}
    assert ids("label=tier", "label=team=x") == {a}


def test_filter_reference_uses_path_match_semantics(ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", "busybox", "bench/img:v1")
    ketch("tag", "busybox", "bench/img:v2")

    def refs(pattern: str) -> list[str]:
        out = ketch("images", "--filter", f"reference={pattern}", "--format",
                    "{{.Repository}}:{{.Tag}}").stdout
        return sorted(out.split())

    assert refs("busybox") == ["busybox:latest"]
    assert refs("bench/*") == ["bench/img:v1", "bench/img:v2"]
    assert refs("bench/img:v1") == ["bench/img:v1"]
    # `*` stops at "/", as Go's path.Match does
    assert refs("*") == ["busybox:latest"]
    assert refs("*/*:v?") == ["bench/img:v1", "bench/img:v2"]


def test_positional_repository_argument_filters_by_reference(
        ketch: KetchCLI, busybox: str) -> None:
    ketch("tag", "busybox", "other:1")
    out = ketch("images", "other").stdout
    assert [r[:2] for r in rows(out)] == [["other", "1"]]
    assert rows(ketch("images", "nothing-here").stdout) == []


def test_filter_before_and_since_compare_creation_times(ketch: KetchCLI,
                                                        tmp_path: Path) -> None:
    first = import_files(ketch, tmp_path, {"1": b"1"}, "first:1")
    second = import_files(ketch, tmp_path, {"2": b"2"}, "second:1")
    third = import_files(ketch, tmp_path, {"3": b"3"}, "third:1")

    def ids(f: str) -> list[str]:
        return ketch("images", "-q", "--no-trunc", "--filter", f).stdout.split()

    assert ids("before=second:1") == [first]
    assert ids("since=second:1") == [third]
    assert ids(f"since={first[7:19]}") == [third, second]
    proc = ketch("images", "--filter", "before=ghost", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "No such image: ghost")


def test_filter_until_takes_a_timestamp_or_duration(ketch: KetchCLI, busybox: str) -> None:
    assert ketch("images", "-q", "--filter", "until=2000-01-01").stdout == ""
    assert ketch("images", "-q", "--filter", "until=2999-01-01T00:00:00Z").stdout.split() == [
        busybox[7:19]]
    assert ketch("images", "-q", "--filter", "until=1h").stdout == ""


def test_format_template_renders_each_row(ketch: KetchCLI, busybox: str) -> None:
    out = ketch("images", "--format", "{{.Repository}}|{{.Tag}}|{{.ID}}|{{.Size}}").stdout
    assert out == f"busybox|latest|{busybox[7:19]}|1.99MB\n"


def test_format_table_template_adds_headers(ketch: KetchCLI, busybox: str) -> None:
    out = ketch("images", "--format", "table {{.Repository}}\t{{.ID}}").stdout
    assert out.splitlines() == ["REPOSITORY   IMAGE ID", f"busybox      {busybox[7:19]}"]


def test_format_table_with_digests_appends_the_digest_column(
        ketch: KetchCLI, busybox: str) -> None:
    out = ketch("images", "--digests", "--format", "table {{.Repository}}").stdout
    assert out.splitlines() == ["REPOSITORY   DIGEST", "busybox      <none>"]


def test_format_json_prints_one_docker_shaped_object_per_row(
        ketch: KetchCLI, busybox: str) -> None:
    lines = ketch("images", "--format", "json").stdout.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert list(obj) == sorted(obj)  # Go marshals the map with sorted keys
    assert obj["Repository"] == "busybox" and obj["Tag"] == "latest"
    assert obj["ID"] == busybox[7:19] and obj["Size"] == "1.99MB"
    assert obj["Containers"] == "N/A" and obj["Digest"] == "<none>"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+", obj["CreatedAt"])


def test_bad_template_is_a_one_line_error(ketch: KetchCLI, busybox: str) -> None:
    proc = ketch("images", "--format", "{{.Repository", check=False)
    assert proc.returncode == 1
    # one line, as the docker CLI 28 prints it (no "Error:")
    assert proc.stderr == "template parsing error: template: :1: unclosed action\n"

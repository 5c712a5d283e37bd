""".dockerignore semantics (moby/patternmatcher tests, docker-py utils_build_test.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ketch.dockerfile.dockerignore import (
    Pattern,
    PatternMatcher,
    clean_path,
    parse_pattern,
    read_ignore_file,
    walk_context,
)
from ketch.errors import BuildError

# (pattern, path, excluded) from patternmatcher_test.go TestMatches, as
# MatchesOrParentMatches sees them (exact and parent-dir matches both exclude).
SINGLE_PATTERN = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**/**", "dir/file", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        True,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    # Go's filepath.Match table, run through the matcher.
    ("*c", "abc", True),
    ("a*", "ab/c", True),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[^e-g]", "abc", True),
    ("a?b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), SINGLE_PATTERN)
def test_single_pattern(pattern: str, path: str, excluded: bool) -> None:
    assert PatternMatcher([pattern]).matches(path) is excluded


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
        (["!fileutils.go", "*.go"], "fileutils.go", True),
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        (["docs", "!docs/README.md"], "docs/README.md", False),
        (["docs/", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-bis.md", False),
        ([], "any/path/there", False),
        (["*.go"], ".", False),
    ],
)
def test_patterns_apply_in_order_and_the_last_match_wins(
    patterns: list[str], path: str, excluded: bool
) -> None:
    assert PatternMatcher(patterns).matches(path) is excluded


@pytest.mark.parametrize(
    "pattern",
    ["[", "[^", "[^bc", "a[", "\\", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "!"],
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(BuildError):
        PatternMatcher([pattern])


@pytest.mark.parametrize(
    ("written", "cleaned", "exclusion"),
    [
        ("/foo", "foo", False),
        ("./foo", "foo", False),
        ("foo/", "foo", False),
        ("foo//bar/./baz/..", "foo/bar", False),
        ("/../b.py", "b.py", False),
        ("  !  docs/README.md  ", "docs/README.md", True),
        ("!/inverted/abs/path", "inverted/abs/path", True),
    ],
)
def test_patterns_are_cleaned_like_go_filepath_clean(
    written: str, cleaned: str, exclusion: bool
) -> None:
    pattern = parse_pattern(written)
    assert (pattern.text, pattern.exclusion) == (cleaned, exclusion)


def test_clean_path_matches_go() -> None:
    assert [clean_path(p) for p in ["", ".", "a/../..", "//a//b/", "/../x", "../a"]] == [
        ".",
        ".",
        "..",
        "/a/b",
        "/x",
        "../a",
    ]


def test_read_ignore_file() -> None:
    content = (
        "\ufefftest1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n"
        "  # not a comment: only column 1 starts one\n! /inverted/abs/path\r\n"
    )
    assert [str(p) for p in read_ignore_file(content)] == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "# not a comment: only column 1 starts one",
        "!inverted/abs/path",
    ]


def test_read_ignore_file_refuses_a_bare_exclamation_mark_naming_the_line() -> None:
    with pytest.raises(BuildError, match='line 2: illegal exclusion pattern: "!"'):
        read_ignore_file("a\n!\n")


def test_a_malformed_pattern_object_fails_when_first_used() -> None:
    matcher = PatternMatcher([Pattern("a[")])
    with pytest.raises(BuildError, match="syntax error in pattern"):
        matcher.matches("a")


def test_matcher_reports_whether_it_has_exceptions() -> None:
    assert PatternMatcher(["docs", "  !docs/README.md"]).exclusions
    assert not PatternMatcher(["docs", "config", ""]).exclusions
    assert len(PatternMatcher(["docs", "config", ""]).patterns) == 2
    assert PatternMatcher([Pattern("docs"), "!docs/x"]).patterns == [
        Pattern("docs"),
        Pattern("docs/x", True),
    ]


# --- walking a context (docker-py's ExcludePathsTest tree) --------------------------------

DIRS = [
    "foo",
    "foo/bar",
    "bar",
    "target",
    "target/subdir",
    "subdir",
    "subdir/target",
    "subdir/target/subdir",
    "subdir/subdir2",
    "subdir/subdir2/target",
    "subdir/subdir2/target/subdir",
]
FILES = [
    "Dockerfile",
    "Dockerfile.alt",
    ".dockerignore",
    "a.py",
    "a.go",
    "b.py",
    "cde.py",
    "foo/a.py",
    "foo/b.py",
    "foo/bar/a.py",
    "bar/a.py",
    "foo/Dockerfile3",
    "target/file.txt",
    "target/subdir/file.txt",
    "subdir/file.txt",
    "subdir/target/file.txt",
    "subdir/target/subdir/file.txt",
    "subdir/subdir2/file.txt",
    "subdir/subdir2/target/file.txt",
    "subdir/subdir2/target/subdir/file.txt",
]
ALL = set(DIRS + FILES)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in DIRS:
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    for f in FILES:
        (tmp_path / f).write_text("x")
    return tmp_path


def listed(root: Path, patterns: list[str], dockerfile: str = "Dockerfile") -> set[str]:
    return set(walk_context(root, PatternMatcher(patterns), {dockerfile, ".dockerignore"}))


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ([""], ALL),
        (["*"], {"Dockerfile", ".dockerignore"}),
        (["Dockerfile", ".dockerignore"], ALL),
        (["a.py"], ALL - {"a.py"}),
        (["./a.py"], ALL - {"a.py"}),
        (["a.py/"], ALL - {"a.py"}),
        (["*.py"], ALL - {"a.py", "b.py", "cde.py"}),
        (["*.py", "!b.py"], ALL - {"a.py", "cde.py"}),
        (["*.*", "!*.go"], ALL - {"a.py", "b.py", "cde.py", "Dockerfile.alt"}),
        (["a.*"], ALL - {"a.py", "a.go"}),
        (["?.py"], ALL - {"a.py", "b.py"}),
        (["foo/a.py"], ALL - {"foo/a.py"}),
        (["/foo/a.py"], ALL - {"foo/a.py"}),
        (["foo/whoops/../a.py"], ALL - {"foo/a.py"}),
        (["foo/*.py"], ALL - {"foo/a.py", "foo/b.py"}),
        (["*/a.py"], ALL - {"foo/a.py", "bar/a.py"}),
        (["*/*.py"], ALL - {"foo/a.py", "foo/b.py", "bar/a.py"}),
        (
            ["foo"],
            ALL - {"foo", "foo/a.py", "foo/b.py", "foo/bar", "foo/bar/a.py", "foo/Dockerfile3"},
        ),
        (
            ["foo", "!foo/bar/a.py"],
            ALL - {"foo/a.py", "foo/b.py", "foo", "foo/bar", "foo/Dockerfile3"},
        ),
        (["foo", "!foo/bar"], ALL - {"foo/a.py", "foo/b.py", "foo", "foo/Dockerfile3"}),
        (["foo", "!foo/*.py"], ALL - {"foo/bar", "foo/bar/a.py", "foo", "foo/Dockerfile3"}),
        (["foo/bar"], ALL - {"foo/bar", "foo/bar/a.py"}),
        (["**/a.py"], ALL - {"a.py", "foo/a.py", "foo/bar/a.py", "bar/a.py"}),
        (["foo/**/bar"], ALL - {"foo/bar", "foo/bar/a.py"}),
        (
            ["**/target/*/*"],
            ALL
            - {
                "target/subdir/file.txt",
                "subdir/target/subdir/file.txt",
                "subdir/subdir2/target/subdir/file.txt",
            },
        ),
        (["subdir/**"], ALL - {p for p in ALL if p.startswith("subdir/")}),
        (
            ["**", "!bar", "!foo/bar"],
            {"foo/bar", "foo/bar/a.py", "bar", "bar/a.py", "Dockerfile", ".dockerignore"},
        ),
    ],
)
def test_walk_context_lists_what_is_not_ignored(
    tree: Path, patterns: list[str], expected: set[str]
) -> None:
    assert listed(tree, patterns) == expected


def test_custom_dockerfile_is_kept_even_inside_an_excluded_directory(tree: Path) -> None:
    assert listed(tree, ["*"], "Dockerfile.alt") == {"Dockerfile.alt", ".dockerignore"}
    assert listed(tree, ["*"], "foo/Dockerfile3") == {"foo/Dockerfile3", ".dockerignore"}
    assert listed(tree, ["*"], "./foo/Dockerfile3") == {"foo/Dockerfile3", ".dockerignore"}
    kept = listed(tree, ["foo/"], "foo/Dockerfile3")
    assert "foo/Dockerfile3" in kept and "foo/a.py" not in kept


def test_wildcard_exception_reaches_into_an_excluded_directory(tmp_path: Path) -> None:
    # The classic CLI skipped `a` here; BuildKit walks it because the exception has a
    # wildcard that could match below it, and ketch does the same.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.py").write_text("x")
    (tmp_path / "a" / "c.txt").write_text("x")
    assert set(walk_context(tmp_path, PatternMatcher(["*", "!*/b.py"]))) == {"a/b.py"}


def test_last_line_precedence(tmp_path: Path) -> None:
    for name in ["garbage.md", "trash.md", "README.md", "README-bis.md", "README-secret.md"]:
        (tmp_path / name).write_text("x")
    matcher = PatternMatcher(["*.md", "!README*.md", "README-secret.md"])
    assert set(walk_context(tmp_path, matcher)) == {"README.md", "README-bis.md"}


def test_absolute_patterns_mean_context_relative(tmp_path: Path) -> None:
    for name in ["a.py", "b.py", "c.txt"]:
        (tmp_path / name).write_text("x")
    assert set(walk_context(tmp_path, PatternMatcher(["/*", "!/*.py"]))) == {"a.py", "b.py"}
    assert set(walk_context(tmp_path, PatternMatcher(["/../b.py"]))) == {"a.py", "c.txt"}


def test_excluded_directories_without_exceptions_are_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "node_modules" / "deep").mkdir(parents=True)
    (tmp_path / "node_modules" / "deep" / "x.js").write_text("x")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.js").write_text("x")
    read: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: str) -> object:
        read.append(os.path.relpath(path, tmp_path))
        return real_scandir(path)

    monkeypatch.setattr("ketch.dockerfile.dockerignore.os.scandir", recording_scandir)
    assert list(walk_context(tmp_path, PatternMatcher(["node_modules"]))) == ["src", "src/app.js"]
    assert sorted(read) == [".", "src"]
    read.clear()
    # An exception that could match inside forces the walk to look.
    assert list(
        walk_context(tmp_path, PatternMatcher(["node_modules", "!node_modules/deep/*.js"]))
    ) == [
        "node_modules/deep/x.js",
        "src",
        "src/app.js",
    ]
    assert "node_modules" in read


def test_walk_is_sorted_directories_first_and_symlinks_not_followed(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z").write_text("x")
    (tmp_path / "a").write_text("x")
    (tmp_path / "c").symlink_to(tmp_path / "b")
    assert list(walk_context(tmp_path, None)) == ["a", "b", "b/z", "c"]
    assert list(walk_context(tmp_path, PatternMatcher(["b/z"]))) == ["a", "b", "c"]

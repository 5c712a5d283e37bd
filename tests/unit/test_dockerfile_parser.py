"""Dockerfile parsing as Docker does it (cases from BuildKit's parser and instructions tests
and the Dockerfile reference)."""

from __future__ import annotations

import pytest

from ketch.dockerfile.parser import (
    Dockerfile,
    DockerfileParseError,
    Instruction,
    parse,
    parse_go_duration,
    parse_instruction,
    parse_port_spec,
)
from ketch.errors import BuildError


def instructions_of(text: str) -> list[Instruction]:
    return parse(text).instructions


def only(text: str, cmd: str) -> Instruction:
    """The single instruction `cmd` in a Dockerfile that starts with FROM."""
    found = [i for i in parse(text).instructions if i.cmd == cmd]
    assert len(found) == 1, found
    return found[0]


def error_of(text: str) -> DockerfileParseError:
    with pytest.raises(DockerfileParseError) as info:
        parse(text)
    return info.value


# --- parser directives --------------------------------------------------------------


def test_syntax_and_check_directives_are_recorded() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# check=skip=all\nFROM scratch\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all"}


def test_escape_directive_switches_continuation_to_backtick() -> None:
    df = parse("# escape=`\nFROM windows\nRUN dir `\n    c:\\\nCOPY a b\n")
    assert df.escape == "`"
    run = df.instructions[1]
    assert run.args == ["dir     c:\\"]
    assert [i.cmd for i in df.instructions] == ["FROM", "RUN", "COPY"]


def test_directive_keys_are_case_insensitive_and_whitespace_tolerant() -> None:
    df = parse("#  ESCAPE = `\nFROM scratch\n")
    assert df.escape == "`"
    assert df.directives == {"escape": "`"}


def test_repeated_directive_is_an_error() -> None:
    err = error_of("# escape=`\n# escape=\\\nFROM scratch\n")
    assert (
        str(err) == "Dockerfile parse error on line 2: only one escape parser directive can be used"
    )


def test_invalid_escape_token_is_an_error() -> None:
    err = error_of("# escape=x\nFROM scratch\n")
    assert "invalid escape token 'x' does not match ` or \\" in str(err)
    assert err.line == 1


@pytest.mark.parametrize(
    "prefix",
    [
        "# a plain comment\n",
        "\n",
        "# unknowndirective=x\n",
        "FROM scratch\n",
    ],
    ids=["after-comment", "after-empty-line", "after-unknown-directive", "after-instruction"],
)
def test_directives_are_only_read_at_the_very_top(prefix: str) -> None:
    text = prefix + "# escape=`\n" + ("" if prefix.startswith("FROM") else "FROM scratch\n")
    df = parse(text)
    assert df.escape == "\\"
    assert "escape" not in df.directives


def test_utf8_bom_is_stripped() -> None:
    df = parse("\ufeff# escape=`\nFROM scratch\n")
    assert df.escape == "`"
    assert parse("\ufeffFROM scratch").instructions[0].cmd == "FROM"


# --- lines, continuations, comments ---------------------------------------------------


def test_continuation_joins_lines_without_adding_a_space_and_keeps_indentation() -> None:
    run = only("FROM a\nRUN echo \\\n    hello\\\nworld\n", "RUN")
    assert run.args == ["echo     helloworld"]
    assert run.original == "RUN echo     helloworld"


def test_blanks_after_the_escape_still_continue_the_line() -> None:
    run = only("FROM a\nRUN echo a \\  \t\n b\n", "RUN")
    assert run.args == ["echo a  b"]


def test_escaped_escape_at_end_of_line_is_not_a_continuation() -> None:
    df = parse("FROM a\nRUN echo foo\\\\\nRUN echo bar\n")
    assert [i.args for i in df.instructions[1:]] == [["echo foo\\\\"], ["echo bar"]]


def test_continuation_at_end_of_file_ends_the_instruction() -> None:
    run = only("FROM a\nRUN echo hi \\", "RUN")
    assert run.args == ["echo hi"]


@pytest.mark.parametrize(
    "text",
    [
        "FROM a\nRUN non-indented \\\n# this is a comment\n   after-comment\n",
        "FROM a\nRUN non-indented \\\n    # this is an indented comment\n   after-comment\n",
    ],
)
def test_comment_lines_inside_a_continuation_are_dropped(text: str) -> None:
    df = parse(text)
    assert df.instructions[1].args == ["non-indented    after-comment"]
    assert df.warnings == []


def test_empty_continuation_lines_are_skipped_with_a_warning() -> None:
    df = parse(
        "FROM alpine:3.6\n\nRUN valid \\\n    continuation\n\n"
        "RUN something \\\n\n    following \\\n\n    more\n\n"
        "RUN another \\\n\n    thing\n"
    )
    assert [i.args[0] for i in df.instructions[1:]] == [
        "valid     continuation",
        "something     following     more",
        "another     thing",
    ]
    assert len(df.warnings) == 3
    assert (
        "Empty continuation line found in: RUN something     following     more" in df.warnings[0]
    )
    assert "RUN another     thing" in df.warnings[1]
    assert "will become errors in a future release" in df.warnings[2]


def test_a_comment_never_continues() -> None:
    df = parse("FROM a\n# comment ending in an escape \\\nRUN echo hi\n")
    assert [i.cmd for i in df.instructions] == ["FROM", "RUN"]


def test_hash_after_line_start_is_an_ordinary_character() -> None:
    assert only("FROM a\nRUN echo hi # not a comment\n", "RUN").args == ["echo hi # not a comment"]


def test_leading_whitespace_before_instructions_and_comments_is_ignored() -> None:
    df = parse("   FROM a\n   # comment\n\tRUN echo\n")
    assert [i.cmd for i in df.instructions] == ["FROM", "RUN"]


def test_instruction_keywords_are_case_insensitive() -> None:
    df = parse("from alpine\nRuN echo hi\n")
    assert [i.cmd for i in df.instructions] == ["FROM", "RUN"]


def test_crlf_line_endings_are_accepted() -> None:
    df = parse("FROM a\r\nRUN echo hi \\\r\n  there\r\n")
    assert df.instructions[1].args == ["echo hi   there"]


def test_line_numbers_cover_continuations() -> None:
    df = parse("\n\nFROM a\n\n# c\nRUN a \\\n  b \\\n  c\nUSER x\n")
    assert [(i.cmd, i.line, i.end_line) for i in df.instructions] == [
        ("FROM", 3, 3),
        ("RUN", 6, 8),
        ("USER", 9, 9),
    ]


# --- exec form vs shell form ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "args", "json_form"),
    [
        ('CMD ["echo", "hi"]', ["echo", "hi"], True),
        ("CMD []", [], True),
        ('CMD [ "a" , "b" ]', ["a", "b"], True),
        ('RUN ["echo", "a\\tb \\u2603"]', ["echo", "a\tb \u2603"], True),
        ("CMD ['echo', 'hi']", ["['echo', 'hi']"], False),
        ('RUN ["echo", "hi"] && ls', ['["echo", "hi"] && ls'], False),
        ('ENTRYPOINT ["unterminated"', ['["unterminated"'], False),
        ('RUN echo "$HOME"  &&  ls', ['echo "$HOME"  &&  ls'], False),
        ("CMD", [], False),
    ],
)
def test_exec_form_is_json_and_anything_else_is_shell_form(
    line: str, args: list[str], json_form: bool
) -> None:
    ins = parse(f"FROM a\n{line}\n").instructions[1]
    assert (ins.args, ins.json_form) == (args, json_form)


def test_json_array_with_non_strings_is_an_error() -> None:
    err = error_of('FROM a\nCMD ["a", 42]\n')
    assert err.line == 2
    assert "arrays must be comprised of strings only" in str(err)


def test_copy_sources_are_whitespace_separated_or_json() -> None:
    assert only("FROM a\nCOPY a  b\tc /dest/\n", "COPY").args == ["a", "b", "c", "/dest/"]
    copy = only('FROM a\nCOPY ["a b", "/dest dir/"]\n', "COPY")
    assert (copy.args, copy.json_form) == (["a b", "/dest dir/"], True)


def test_only_ascii_blanks_separate_words() -> None:
    # Docker splits arguments on space, tab, \v, \f and \r; a no-break space is text.
    assert only("FROM a\nCOPY a\u00a0b\tc /d\n", "COPY").args == ["a\u00a0b", "c", "/d"]
    assert only("FROM a\nENV key \u00e9t\u00e9  value\n", "ENV").args == [
        "key",
        "\u00e9t\u00e9  value",
    ]


def test_volume_accepts_list_and_json() -> None:
    assert only("FROM a\nVOLUME /a /b\n", "VOLUME").args == ["/a", "/b"]
    assert only('FROM a\nVOLUME ["/data"]\n', "VOLUME").args == ["/data"]


# --- ENV, LABEL, ARG ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "args"),
    [
        ("ENV key value with  spaces", ["key", "value with  spaces"]),
        (
            'ENV a=1 b="two words" c=three\\ words',
            ["a", "1", "b", '"two words"', "c", "three\\ words"],
        ),
        ("ENV a= b=''", ["a", "", "b", "''"]),
        (
            'LABEL "com.example.vendor"="ACME" version=1.0',
            ['"com.example.vendor"', '"ACME"', "version", "1.0"],
        ),
        ("LABEL description This text illustrates", ["description", "This text illustrates"]),
    ],
)
def test_env_and_label_become_flattened_key_value_pairs(line: str, args: list[str]) -> None:
    assert parse(f"FROM a\n{line}\n").instructions[1].args == args


def test_arg_keeps_each_declaration_as_written() -> None:
    assert only('FROM a\nARG a b=2 c="x y"\n', "ARG").args == ["a", "b=2", 'c="x y"']


# --- errors, each naming its line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("FROM a\nFOO bar\n", 2, "unknown instruction: FOO"),
        ("FROM a\nENV\n", 2, "ENV requires at least one argument"),
        ("FROM a\nENV onlyname\n", 2, "ENV must have two arguments"),
        ("FROM a\nENV a=1 b\n", 2, 'can\'t find = in "b"'),
        ("FROM a\nENV =x\n", 2, "ENV names can not be blank"),
        ("FROM a\nLABEL\n", 2, "LABEL requires at least one argument"),
        ("FROM a\nARG\n", 2, "ARG requires at least one argument"),
        ("FROM a\nARG =x\n", 2, "ARG names can not be blank"),
        ("FROM a\nCOPY onlyone\n", 2, "COPY requires at least two arguments"),
        ("FROM a\n\nADD x\n", 3, "ADD requires at least two arguments"),
        ("FROM a\nCOPY\t\n\t\tquux \\\n      bar\n", 2, "COPY requires at least two arguments"),
        ("FROM a\nWORKDIR\n", 2, "WORKDIR requires exactly one argument"),
        ("FROM a\nUSER\n", 2, "USER requires exactly one argument"),
        ("FROM a\nSTOPSIGNAL\n", 2, "STOPSIGNAL requires exactly one argument"),
        ("FROM a\nMAINTAINER\n", 2, "MAINTAINER requires exactly one argument"),
        ("FROM a\nEXPOSE\n", 2, "EXPOSE requires at least one argument"),
        ("FROM a\nEXPOSE abc\n", 2, "invalid containerPort: abc"),
        ("FROM a\nEXPOSE 80/xyz\n", 2, "invalid proto: xyz"),
        ("FROM a\nEXPOSE 70000\n", 2, "invalid containerPort: 70000"),
        ("FROM a\nVOLUME\n", 2, "VOLUME requires at least one argument"),
        ('FROM a\nVOLUME [""]\n', 2, "VOLUME specified can not be an empty string"),
        ("FROM a\nSHELL /bin/bash -c\n", 2, "SHELL requires the arguments to be in JSON form"),
        ("FROM a\nSHELL []\n", 2, "SHELL requires at least one argument"),
        ("FROM a\nONBUILD\n", 2, "ONBUILD requires at least one argument"),
        (
            "FROM a\nONBUILD ONBUILD RUN touch foobar\n",
            2,
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("FROM a\nONBUILD FROM scratch\n", 2, "FROM isn't allowed as an ONBUILD trigger"),
        (
            "FROM a\nONBUILD MAINTAINER docker.io\n",
            2,
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        ("FROM a\nONBUILD COPY x\n", 2, "COPY requires at least two arguments"),
        ("FROM\n", 1, "FROM requires either one or three arguments"),
        ("FROM a b\n", 1, "FROM requires either one or three arguments"),
        ("FROM a AS\n", 1, "FROM requires either one or three arguments"),
        (
            "FROM a AS 1st\n",
            1,
            'invalid name for build stage: "1st", name can\'t start with a number',
        ),
        ("FROM a AS b@d\n", 1, "invalid name for build stage"),
        ("RUN echo hi\nFROM a\n", 1, "no build stage in current context"),
        ("ARG X=1\nENV A=b\nFROM a\n", 2, "no build stage in current context"),
    ],
)
def test_invalid_instructions_are_refused_with_the_line(text: str, line: int, message: str) -> None:
    err = error_of(text)
    assert err.line == line
    assert str(err).startswith(f"Dockerfile parse error on line {line}: ")
    assert message in str(err)
    assert isinstance(err, BuildError)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n\n# another\n"])
def test_a_file_without_instructions_is_refused(text: str) -> None:
    assert "file with no instructions" in str(error_of(text))


def test_a_file_with_only_global_args_has_no_stage_to_build() -> None:
    assert "no stages to build" in str(error_of("ARG A=1\nARG B\n"))


# --- stages -----------------------------------------------------------------------------


def test_stages_have_names_bases_platforms_and_their_instructions() -> None:
    df = parse(
        "ARG BASE=alpine\n"
        "FROM --platform=$BUILDPLATFORM ${BASE} AS Build\n"
        "RUN make\n"
        "FROM build\n"
        "COPY --from=build /out /out\n"
    )
    assert [a.args for a in df.meta_args] == [["BASE=alpine"]]
    first, second = df.stages
    assert (first.name, first.base, first.platform, first.index) == (
        "build",
        "${BASE}",
        "$BUILDPLATFORM",
        0,
    )
    assert [i.cmd for i in first.instructions] == ["RUN"]
    assert first.from_instr.args == ["${BASE}", "AS", "Build"]
    assert (second.name, second.base, second.platform) == (None, "build", None)
    assert [i.cmd for i in second.instructions] == ["COPY"]
    assert [i.cmd for i in df.instructions] == ["ARG", "FROM", "RUN", "FROM", "COPY"]


def test_duplicate_stage_names_are_refused_with_the_line() -> None:
    with pytest.raises(DockerfileParseError) as info:
        parse("FROM a AS base\nRUN true\nFROM b AS Base\nFROM c\nCOPY --from=base / /\n")
    assert str(info.value) == ('Dockerfile parse error on line 3: duplicate stage name "base",'
                               " stage names should be unique")


@pytest.mark.parametrize(("text", "line", "cmd"), [
    ("FROM a\nENV A=x\0y\n", 2, "ENV"),
    ("FROM a\nRUN true\nENV A\0B=1\n", 3, "ENV"),
    ("FROM a\nLABEL a=b c=\"d\0\"\n", 2, "LABEL"),
    ("ARG V=\0\nFROM a\n", 1, "ARG"),
    ("FROM a\nARG V=1 \\\n  W=\0\n", 2, "ARG"),
])
def test_nul_byte_in_env_arg_label_is_refused_with_the_line(text: str, line: int,
                                                             cmd: str) -> None:
    with pytest.raises(DockerfileParseError) as info:
        parse(text)
    assert str(info.value) == (f"Dockerfile parse error on line {line}: {cmd} names and"
                               " values cannot contain a NUL byte")


def test_stages_can_be_referenced_by_index() -> None:
    df: Dockerfile = parse("FROM a\nFROM b\n")
    assert df.stage("0") is df.stages[0]
    assert df.stage("1", before=1) is None
    assert df.stage("nope") is None


# --- flags ------------------------------------------------------------------------------


def test_copy_flags_are_split_off_the_arguments() -> None:
    copy = only("FROM a\nCOPY --from=build --chown=1000:1000 --chmod=0755 --link src dst\n", "COPY")
    assert copy.flags == {"from": "build", "chown": "1000:1000", "chmod": "0755", "link": "true"}
    assert copy.args == ["src", "dst"]
    assert copy.flag("from") == "build"


def test_flag_values_lose_their_quotes_and_repeatable_flags_collect() -> None:
    run = only(
        'FROM a\nRUN --mount=type=secret,id="my id" --mount=type=cache,target=/c --network=none cat x\n',
        "RUN",
    )
    assert run.flags == {
        "mount": ["type=secret,id=my id", "type=cache,target=/c"],
        "network": "none",
    }
    assert run.flag_values("mount") == ["type=secret,id=my id", "type=cache,target=/c"]
    assert run.args == ["cat x"]


def test_double_dash_ends_the_flags() -> None:
    run = only("FROM a\nRUN -- --version\n", "RUN")
    assert (run.flags, run.args) == ({}, ["--version"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY --foo=bar a b", "unknown flag: --foo"),
        ("MAINTAINER --boo joe@example.com", "unknown flag: --boo"),
        ("CMD --help", "unknown flag: --help"),
        (
            "FROM --platform=linux/amd64 --platform=linux/arm64 x",
            "duplicate flag specified: --platform",
        ),
        ("COPY --from=a --from=b x y", "duplicate flag specified: --from"),
        ("COPY --from a b", "missing a value on flag: --from"),
        ("COPY --link= a b", "missing a value on flag: --link"),
        ("ADD --link=maybe a b", "expecting boolean value for flag --link, not: maybe"),
        ("RUN --mount echo", "missing a value on flag: --mount"),
    ],
)
def test_bad_flags_are_refused_with_the_line(line: str, message: str) -> None:
    err = error_of(f"FROM a\n{line}\n") if not line.startswith("FROM") else error_of(line + "\n")
    assert message in str(err)
    assert err.line == (1 if line.startswith("FROM") else 2)


def test_boolean_flags_take_true_and_false() -> None:
    assert only("FROM a\nCOPY --link=false a b\n", "COPY").flags == {"link": "false"}
    assert only("FROM a\nADD --keep-git-dir=TRUE a b\n", "ADD").flags == {"keep-git-dir": "true"}


# --- heredocs ---------------------------------------------------------------------------


def test_run_heredoc_body_follows_the_instruction() -> None:
    df = parse("FROM a\nRUN <<EOF\necho hello world\necho foo bar\nEOF\nUSER x\n")
    run = df.instructions[1]
    assert len(run.heredocs) == 1
    doc = run.heredocs[0]
    assert (doc.name, doc.body, doc.expand, doc.chomp_tabs, doc.fd) == (
        "EOF",
        "echo hello world\necho foo bar\n",
        True,
        False,
        None,
    )
    assert (run.line, run.end_line) == (2, 5)
    assert df.instructions[2].cmd == "USER"


def test_heredoc_body_lines_are_not_instructions_or_comments() -> None:
    run = only("FROM a\nRUN <<COMMENT\n# internal comment\nFOO bar # trailing\nCOMMENT\n", "RUN")
    assert run.heredocs[0].body == "# internal comment\nFOO bar # trailing\n"


def test_dash_heredoc_strips_leading_tabs_of_body_and_terminator() -> None:
    run = only("FROM a\nRUN <<-UNINDENT\n\tbaz\n\t\tquux\n\tUNINDENT\n", "RUN")
    doc = run.heredocs[0]
    assert doc.chomp_tabs
    assert doc.body == "\tbaz\n\t\tquux\n"
    assert doc.content == "baz\nquux\n"


def test_plain_heredoc_keeps_tabs_and_needs_an_exact_terminator() -> None:
    run = only("FROM a\nRUN <<INDENT\n\tfoo\n\tINDENT\nINDENT\n", "RUN")
    assert run.heredocs[0].content == "\tfoo\n\tINDENT\n"


@pytest.mark.parametrize(
    ("word", "expand"),
    [
        ("<<EOF", True),
        ("<<'EOF'", False),
        ('<<"EOF"', False),
        ("<<-'EOF'", False),
        ('<<E"O"F', False),
    ],
)
def test_quoting_the_heredoc_word_turns_expansion_off(word: str, expand: bool) -> None:
    run = only(f"FROM a\nRUN {word}\n\texpand $NAME\nEOF\n", "RUN")
    assert (run.heredocs[0].name, run.heredocs[0].expand) == ("EOF", expand)


def test_several_heredocs_on_one_line_are_read_in_order() -> None:
    df = parse(
        "FROM a\nCOPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\nCOPY <<X <<Y /d\nY\nX\nX\nY\n"
    )
    first, second = df.instructions[1:]
    assert [(d.name, d.body) for d in first.heredocs] == [
        ("FILE1", "content 1\n"),
        ("FILE2", "content 2\n"),
    ]
    assert first.args == ["<<FILE1", "<<FILE2", "/dest"]
    assert [(d.name, d.body) for d in second.heredocs] == [("X", "Y\n"), ("Y", "X\n")]


def test_heredoc_inside_a_shell_command_with_fd_and_flags() -> None:
    run = only(
        "FROM a\nRUN --mount=type=cache,target=/foo cat 3<<EMPTY > /f && cat << SPACED\nEMPTY\nx\nSPACED\n",
        "RUN",
    )
    assert [(d.name, d.fd, d.body) for d in run.heredocs] == [
        ("EMPTY", 3, ""),
        ("SPACED", None, "x\n"),
    ]
    assert run.flags == {"mount": ["type=cache,target=/foo"]}


@pytest.mark.parametrize(
    "line",
    ['RUN "<<NOHEREDOC"', "RUN '<<EOF'", 'RUN ["<<EOF"]', "USER <<INVALID", "RUN cat<<EOF"],
)
def test_no_heredoc_where_docker_sees_none(line: str) -> None:
    df = parse(f"FROM a\n{line}\nRUN next\n")
    assert df.instructions[1].heredocs == []
    assert df.instructions[2].args == ["next"]


def test_unterminated_heredoc_names_the_instruction_line() -> None:
    err = error_of("FROM a\n\nRUN <<EOF\necho hi\nEOFX\n")
    assert str(err) == "Dockerfile parse error on line 3: unterminated heredoc"


def test_heredoc_at_end_of_file_without_final_newline() -> None:
    run = only("FROM a\nCOPY <<EOF /x\nlast line\r\nEOF\r", "COPY")
    assert run.heredocs[0].body == "last line\r\n"


def test_onbuild_trigger_can_carry_a_heredoc() -> None:
    ins = only("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n", "ONBUILD")
    assert ins.sub is not None and ins.sub.cmd == "RUN"
    assert ins.heredocs[0].body == "echo hi\n"
    assert ins.sub.heredocs == ins.heredocs


# --- ONBUILD, HEALTHCHECK, single-string instructions --------------------------------------


def test_onbuild_wraps_a_parsed_trigger() -> None:
    ins = only("FROM a\nONBUILD COPY --chown=1 . /app\n", "ONBUILD")
    assert ins.args == ["COPY --chown=1 . /app"]
    assert ins.sub is not None
    assert (ins.sub.cmd, ins.sub.args, ins.sub.flags) == ("COPY", [".", "/app"], {"chown": "1"})


def test_parse_instruction_reads_a_stored_onbuild_trigger() -> None:
    ins = parse_instruction('RUN ["echo", "fired"]')
    assert (ins.cmd, ins.args, ins.json_form) == ("RUN", ["echo", "fired"], True)
    with pytest.raises(DockerfileParseError, match="unknown instruction: BOGUS"):
        parse_instruction("BOGUS x")


def test_single_string_instructions_keep_the_rest_of_the_line() -> None:
    df = parse(
        "FROM a\nWORKDIR /path with spaces\nUSER app:app\nSTOPSIGNAL SIGKILL\nMAINTAINER Jane <j@x>\n"
    )
    assert [i.args for i in df.instructions[1:]] == [
        ["/path with spaces"],
        ["app:app"],
        ["SIGKILL"],
        ["Jane <j@x>"],
    ]


@pytest.mark.parametrize(
    ("line", "args", "json_form", "flags"),
    [
        ("HEALTHCHECK NONE", ["NONE"], False, {}),
        (
            "HEALTHCHECK cmd curl -f http://x/ || exit 1",
            ["CMD", "curl -f http://x/ || exit 1"],
            False,
            {},
        ),
        (
            'HEALTHCHECK CMD ["curl", "-f", "http://x/"]',
            ["CMD", "curl", "-f", "http://x/"],
            True,
            {},
        ),
        (
            "HEALTHCHECK --interval=5m --timeout=3s --start-period=1s --start-interval=2s --retries=3 CMD true",
            ["CMD", "true"],
            False,
            {
                "interval": "5m",
                "timeout": "3s",
                "start-period": "1s",
                "start-interval": "2s",
                "retries": "3",
            },
        ),
    ],
)
def test_healthcheck_forms(
    line: str, args: list[str], json_form: bool, flags: dict[str, str]
) -> None:
    ins = only(f"FROM a\n{line}\n", "HEALTHCHECK")
    assert (ins.args, ins.json_form, ins.flags) == (args, json_form, flags)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE extra", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK PING x", 'Unknown type "PING" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CMD []", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK --interval=soon CMD true", 'time: invalid duration "soon"'),
        ("HEALTHCHECK --timeout=5 CMD true", "missing unit in duration"),
        ("HEALTHCHECK --interval=50ns CMD true", 'Interval "interval" cannot be less than 1ms'),
        ("HEALTHCHECK --retries=-1 CMD true", "--retries cannot be negative"),
        ("HEALTHCHECK --retries=many CMD true", "invalid value for --retries"),
        ("HEALTHCHECK --port=80 CMD true", "unknown flag: --port"),
    ],
)
def test_healthcheck_errors(line: str, message: str) -> None:
    err = error_of(f"FROM a\n{line}\n")
    assert err.line == 2
    assert message in str(err)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1ms", 1_000_000),
        ("30s", 30_000_000_000),
        ("1m30s", 90_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("300us", 300_000),
        ("2µs", 2_000),
        ("-1s", -1_000_000_000),
        (".5s", 500_000_000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "s", "1", "1x", "1.s.", "--1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


# --- EXPOSE ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "ports"),
    [
        ("80", ["80/tcp"]),
        ("53/UDP", ["53/udp"]),
        ("8000-8002", ["8000/tcp", "8001/tcp", "8002/tcp"]),
        ("8080:80", ["80/tcp"]),
        ("127.0.0.1:8080:80/sctp", ["80/sctp"]),
    ],
)
def test_port_specs_expand_to_exposed_ports(spec: str, ports: list[str]) -> None:
    assert parse_port_spec(spec) == ports


@pytest.mark.parametrize("spec", ["", "abc", "80/icmp", "90-80", "1.2.3:80:80", "8080-8081:80-89"])
def test_bad_port_specs(spec: str) -> None:
    with pytest.raises(BuildError):
        parse_port_spec(spec)


def test_expose_with_variables_is_left_for_the_builder() -> None:
    assert only("FROM a\nEXPOSE $PORT 80/udp\n", "EXPOSE").args == ["$PORT", "80/udp"]


# --- whole files --------------------------------------------------------------------------


def test_original_text_is_what_docker_prints_in_step_lines() -> None:
    df = parse('FROM busybox\n  RUN echo a \\\n  && echo b\nCMD ["sh"]\n')
    assert [i.original for i in df.instructions] == [
        "FROM busybox",
        "RUN echo a   && echo b",
        'CMD ["sh"]',
    ]


def test_a_realistic_multi_stage_dockerfile() -> None:
    df = parse(
        "# syntax=docker/dockerfile:1.7\n"
        "ARG GO=1.22\n"
        "FROM golang:${GO} AS build\n"
        "WORKDIR /src\n"
        "COPY go.mod go.sum ./\n"
        "RUN --mount=type=cache,target=/go/pkg/mod go mod download\n"
        "COPY . .\n"
        "RUN CGO_ENABLED=0 go build -o /out/app ./cmd/app\n"
        "\n"
        "FROM gcr.io/distroless/static AS final\n"
        "COPY --from=build /out/app /app\n"
        "EXPOSE 8080\n"
        'ENTRYPOINT ["/app"]\n'
    )
    assert [s.name for s in df.stages] == ["build", "final"]
    assert len(df.stages[0].instructions) == 5
    assert df.stages[1].instructions[-1].args == ["/app"]
    assert df.warnings == []

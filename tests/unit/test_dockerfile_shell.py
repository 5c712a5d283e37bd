"""Dockerfile variable expansion (BuildKit shell/lex_test.go, envVarTest and wordsTest)."""

from __future__ import annotations

import pytest

from ketch.dockerfile.shell import (
    EXPANDING_INSTRUCTIONS,
    ShellLex,
    expand,
    expand_heredoc,
    expand_words,
    split_shell_words,
)
from ketch.errors import BuildError

ERROR = object()

# BuildKit's envVarTest environment.
ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}

# (word, expected) from envVarTest; ERROR means the word must be refused.
ENV_VAR_TEST = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", ERROR),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", ERROR),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', ERROR),
    ('"hello\\"', ERROR),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", ERROR),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ("\"''\"", "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}xx", "he${}xx"),
    ("${}", ERROR),
    ("${}aaa", ERROR),
    ("he${}xx", ERROR),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", ERROR),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", ERROR),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ("\"he'$PWD'\"", "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("'he\\$PWD'", "he\\$PWD"),
    ("he${PWD", ERROR),
    ("he${PWD:=000}xx", ERROR),
    ("he${PWD:+${PWD}:}xx", "he/home:xx"),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    ("안녕하세요", "안녕하세요"),
    ("안'녕'하세요", "안녕하세요"),
    ("안'녕하세요", ERROR),
    ("안녕\\'하세요", "안녕'하세요"),
    ('"안녕\\t하세요"', "안녕\\t하세요"),
    ("$KOREAN", "한국어"),
    ("안녕$KOREAN", "안녕한국어"),
    ("${{aaa}", ERROR),
    ("${aaa}}", "}"),
    ("${aaa", ERROR),
    ("${{aaa:-bbb}", ERROR),
    ("${aaa:-bbb}}", "bbb}"),
    ("${aaa:-bbb", ERROR),
    ("${aaa:-bbb}", "bbb"),
    ("${aaa:-${bbb:-ccc}}", "ccc"),
    ("${aaa:-bbb ${foo}", ERROR),
    ("${aaa:-bbb {foo}", "bbb {foo"),
    ("${:}", ERROR),
    ("${:-bbb}", ERROR),
    ("${:+bbb}", ERROR),
    # Positional and special parameters are never set in a Dockerfile.
    ("$1", ""),
    ("${1}", ""),
    ("${1:+bbb}", ""),
    ("${1:-bbb}", "bbb"),
    ("$999aaa", "aaa"),
    ("${001:-bbb}aaa", "bbbaaa"),
    ("$@", ""),
    ("$@@@", "@@"),
    ("${@:-bbb}aaa", "bbbaaa"),
    ("$*", ""),
    ("${#}", ""),
    ("${#:-bbb}", "bbb"),
    ("$?", ""),
    ("$-", ""),
    ("$$", ""),
    ("${$:-bbb}", "bbb"),
    ("$!", ""),
    ("$0", ""),
    ("${0:+bbb}", ""),
    ("$NULL", ""),
    ("${NULL-set}", ""),
    ("${NULL:-empty}", "empty"),
]


@pytest.mark.parametrize(("word", "expected"), ENV_VAR_TEST)
def test_env_var_table(word: str, expected: object) -> None:
    if expected is ERROR:
        with pytest.raises(BuildError):
            expand(word, ENV)
    else:
        assert expand(word, ENV) == expected


# (word, env, expected) from lex_test.go TestProcessWithMatches.
MODIFIERS = [
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
    ("${FOO:-}", {}, ""),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
    ("${FOO?aaa}", {"FOO": "xxx"}, "xxx"),
    ("${BAR?bbb}", {"BAR": ""}, ""),
    ("${BAZ?ccc}", {}, ERROR),
    ("${FOO:?aaa}", {"FOO": "xxx"}, "xxx"),
    ("${BAR:?bbb}", {"BAR": ""}, ERROR),
    ("${BAZ:?}", {}, ERROR),
    ("${FOO=aaa}", {"FOO": "xxx"}, ERROR),
    ("${FOO=:aaa}", {"FOO": "xxx"}, ERROR),
    ("${FOO=}", {}, ERROR),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
    ("${FOO%y}", {"FOO": "xxyy"}, "xxy"),
    ("${FOO%%y*}", {"FOO": "xxyy"}, "xx"),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO%.*}", {"FOO": "archive.tar.gz"}, "archive.tar"),
    ("${FOO%%.*}", {"FOO": "archive.tar.gz"}, "archive"),
    ("${FOO#\\x}", {"FOO": "xy"}, ERROR),
    (
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
        "/foo.*/*.txt - /foo..*.txt",
    ),
    (
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
        "/tmp/bar.txt - /bar.txt",
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"},
        "/foo/b/c.txt - /foo/c.txt",
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT}",
        {"FOO": "http://google.de", "NEEDLE": "http://", "REPLACEMENT": "https://"},
        "https://google.de",
    ),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy"),
    ("${FOO//ww}", {"FOO": "xxyy"}, ERROR),
    ("${FOO//}", {"FOO": "xxyy"}, ERROR),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO///}", {}, ""),
    (
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
        {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
        "something-v1.2.3.linux-arm-v7.tar.gz",
    ),
    (
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
        {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm64", "TARGETVARIANT": ""},
        "something-v1.2.3.linux-arm64.tar.gz",
    ),
]


@pytest.mark.parametrize(("word", "env", "expected"), MODIFIERS)
def test_modifiers_and_patterns(word: str, env: dict[str, str], expected: object) -> None:
    if expected is ERROR:
        with pytest.raises(BuildError):
            expand(word, env)
    else:
        assert expand(word, env) == expected


def test_mandatory_variable_messages_name_the_variable_and_word() -> None:
    with pytest.raises(BuildError) as info:
        expand("${VAR:?message here$ARG}", {"VAR": "", "ARG": "x"})
    assert str(info.value) == 'failed to process "${VAR:?message here$ARG}": VAR: message herex'
    with pytest.raises(BuildError, match="VAR: is not allowed to be unset"):
        expand("${VAR?}", {})
    with pytest.raises(BuildError, match="VAR: is not allowed to be empty"):
        expand("${VAR:?}", {"VAR": ""})
    assert expand("${VAR?message here$ARG}", {"VAR": "", "ARG": "x"}) == ""


WORDS_ENV = {"hi": "hi", "space": "abc  def", "leading": "  ab c", "trailing": "ab c   "}

# (text, words) from wordsTest: unquoted expansions split, quoted ones do not.
WORDS_TEST = [
    ("hello", ["hello"]),
    ("hello${hi}bye", ["hellohibye"]),
    ("hello${space}bye", ["helloabc", "defbye"]),
    ('hello"${space}"bye', ["helloabc  defbye"]),
    ('hello "${space}"bye', ["hello", "abc  defbye"]),
    ("hello${leading}def", ["hello", "ab", "cdef"]),
    ('hello"${leading}" def', ["hello  ab c", "def"]),
    ('hello"${leading}"', ["hello  ab c"]),
    ("hello${leading}", ["hello", "ab", "c"]),
    ("hello${trailing}", ["helloab", "c"]),
    ("hello${trailing}d", ["helloab", "c", "d"]),
    ('hello"${trailing}"d', ["helloab c   d"]),
    ('hel"lo${trailing}"', ["helloab c   "]),
    ('hello" there  "', ["hello there  "]),
    ("hello there     ", ["hello", "there"]),
    ("hello\\ there", ["hello there"]),
    ('hello\\" there', ['hello"', "there"]),
    ('hello"\\\\there"', ["hello\\there"]),
    ('hello"\\there"', ["hello\\there"]),
    ("hello'\\\\there'", ["hello\\\\there"]),
    ("hello'\\there'", ["hello\\there"]),
    ("hello'$there'", ["hello$there"]),
    ('"" a', ["a"]),
]


@pytest.mark.parametrize(("text", "words"), WORDS_TEST)
def test_word_splitting(text: str, words: list[str]) -> None:
    assert expand_words(text, WORDS_ENV) == words


def test_word_splitting_refuses_an_open_quote() -> None:
    with pytest.raises(BuildError, match="matching double-quote"):
        expand_words('hello" there', WORDS_ENV)


def test_expand_keeps_the_spaces_that_word_splitting_removes() -> None:
    assert expand("a${space}b", WORDS_ENV) == "aabc  defb"


def test_backtick_escape() -> None:
    assert expand("he`$PWD", ENV, escape="`") == "he$PWD"
    assert expand("c:\\windows", ENV, escape="`") == "c:\\windows"
    assert expand('"a`"b"', ENV, escape="`") == 'a"b'


def test_plain_words_pass_through_untouched() -> None:
    assert expand("/usr/local/bin", {}) == "/usr/local/bin"
    assert expand_words("  8080/tcp  9090 ", {}) == ["8080/tcp", "9090"]


def test_matched_and_unmatched_variables_are_reported() -> None:
    result = ShellLex().process("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc} $FOO", {"FOO": "xxx", "BAR": ""})
    assert result.value == "xxx  ccc xxx"
    assert result.matched == {"FOO", "BAR"}
    assert result.unmatched == {"BAZ"}


def test_skip_unset_leaves_unknown_references_as_written() -> None:
    lex = ShellLex(skip_unset=True)
    assert (
        lex.process("$A ${B} ${C:-x} ${D/a/b} $KNOWN", {"KNOWN": "k"}).value
        == "$A ${B} ${C:-x} ${D/a/b} k"
    )


def test_skip_quotes_keeps_quotes_literal_for_heredoc_bodies() -> None:
    lex = ShellLex(skip_quotes=True)
    assert lex.process("say \"$X\" and '$X'", {"X": "hi"}).value == "say \"hi\" and 'hi'"


def test_heredoc_bodies_expand_variables_but_keep_quotes() -> None:
    body = "<?xml version=\"1.0\"?>\nname='$NAME' cost=\\$5 ${MISSING:-none}\n"
    assert expand_heredoc(body, {"NAME": "ketch"}) == (
        "<?xml version=\"1.0\"?>\nname='ketch' cost=$5 none\n"
    )
    assert expand_heredoc("plain text\n", {}) == "plain text\n"


def test_split_shell_words_unquotes_without_expanding() -> None:
    assert split_shell_words("a 'b c' \"$HOME\" d\\ e") == ["a", "b c", "$HOME", "d e"]


def test_same_instruction_sees_the_old_value() -> None:
    # ENV abc=bye def=$abc: each value is expanded against the environment before the
    # instruction, so def gets the old abc.
    before = {"abc": "hello"}
    assert [expand(v, before) for v in ("bye", "$abc")] == ["bye", "hello"]


def test_expanding_instructions_match_the_reference() -> None:
    assert {
        "ADD",
        "COPY",
        "ENV",
        "EXPOSE",
        "FROM",
        "LABEL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
        "ONBUILD",
        "ARG",
    } == EXPANDING_INSTRUCTIONS
    assert not {"RUN", "CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK"} & EXPANDING_INSTRUCTIONS


@pytest.mark.parametrize(("word", "spelled"), [
    ("${FOO:#x}", ":#"), ("${FOO:##x*}", ":#"), ("${FOO:%x}", ":%"), ("${FOO:%%*x}", ":%"),
    ("${UNSET:#x}", ":#"),
])
def test_pattern_trims_have_no_colon_form(word: str, spelled: str) -> None:
    with pytest.raises(BuildError) as info:
        expand(word, {"FOO": "xyx"})
    assert str(info.value) == (f'failed to process "{word}": unsupported modifier ({spelled})'
                               " in substitution")


def test_pattern_trims_without_colon_still_trim() -> None:
    assert expand("${FOO#x} ${FOO%x} ${FOO##*y} ${FOO%%y*}", {"FOO": "xyx"}) == "yx xy x x"

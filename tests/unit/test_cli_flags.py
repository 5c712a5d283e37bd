"""ketch's flag parser follows docker's (cobra/pflag) grammar."""

from __future__ import annotations

import pytest

from ketch.cli.flags import REMAINDER, Parser, UsageError
from ketch.errors import InvalidArgument


def run_parser() -> Parser:
    p = Parser(prog="ketch run", short_help=False)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=REMAINDER)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("--sig-proxy", action="store_true", default=True)
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--name")
    p.add_argument("-h", "--hostname")
    p.add_argument("--pids-limit", type=int)
    return p


def test_shorthand_clusters_and_attached_values() -> None:
    ns = run_parser().parse_args(["-itd", "-p3000:80", "-dp", "81:81", "-e=A=1", "img"])
    assert (ns.interactive, ns.tty, ns.detach) == (True, True, True)
    assert ns.publish == ["3000:80", "81:81"]
    assert ns.env == ["A=1"]
    assert ns.image == "img" and ns.command == []


def test_long_flags_with_and_without_equals() -> None:
    ns = run_parser().parse_args(["--name=web", "--env", "B=2", "--pids-limit", "-1", "img"])
    assert ns.name == "web" and ns.env == ["B=2"] and ns.pids_limit == -1


def test_bool_flags_take_go_booleans_only_after_equals() -> None:
    ns = run_parser().parse_args(["--rm=false", "--sig-proxy=false", "-d=true", "img"])
    assert (ns.rm, ns.sig_proxy, ns.detach) == (False, False, True)
    # a bare bool flag never takes the next argument: "false" here is the image
    ns = run_parser().parse_args(["--rm", "false"])
    assert ns.rm is True and ns.image == "false"


def test_everything_after_the_image_is_the_command() -> None:
    ns = run_parser().parse_args(["--rm", "img", "ls", "-l", "--help", "--rm"])
    assert ns.image == "img" and ns.command == ["ls", "-l", "--help", "--rm"]
    assert ns.help is False


def test_value_flags_take_values_that_start_with_a_dash() -> None:
    ns = run_parser().parse_args(["-e", "-X", "--name", "--odd", "img"])
    assert ns.env == ["-X"] and ns.name == "--odd"


def test_double_dash_ends_the_flags() -> None:
    p = Parser(prog="ketch rm")
    p.add_argument("containers", nargs="+")
    p.add_argument("-f", "--force", action="store_true")
    ns = p.parse_args(["a", "-f", "--", "-b"])
    assert ns.containers == ["a", "-b"] and ns.force is True


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus", "img"], "unknown flag: --bogus"),
    (["-x", "img"], "unknown shorthand flag: 'x' in -x"),
    (["-dx", "img"], "unknown shorthand flag: 'x' in -dx"),
    (["img", "--name"], None),  # after the image: part of the command, not an error
    (["--name"], "flag needs an argument: --name"),
    (["-p"], "flag needs an argument: 'p' in -p"),
    (["--pids-limit", "ten", "img"],
     'invalid argument "ten" for "--pids-limit" flag: strconv.ParseInt: parsing "ten":'
     " invalid syntax"),
    (["--rm=maybe", "img"],
     'invalid argument "maybe" for "--rm" flag: strconv.ParseBool: parsing "maybe":'
     " invalid syntax"),
])
def test_flag_errors_are_docker_s(argv: list[str], message: str | None) -> None:
    if message is None:
        assert run_parser().parse_args(argv).command == ["--name"]
        return
    with pytest.raises(UsageError) as e:
        run_parser().parse_args(argv)
    assert str(e.value) == message


def test_argument_counts_get_docker_s_messages() -> None:
    p = Parser(prog="ketch logs")
    p.add_argument("container")
    # the docker CLI 28's words ("docker: 'docker logs' requires 1 argument")
    with pytest.raises(InvalidArgument, match="^ketch: 'ketch logs' requires 1 argument$"):
        p.parse_args([])
    with pytest.raises(InvalidArgument, match="^ketch: 'ketch logs' requires 1 argument$"):
        p.parse_args(["a", "b"])
    # --help needs no arguments
    assert p.parse_args(["--help"]).help is True


def test_optional_value_flag_is_nooptdefval() -> None:
    p = Parser(prog="ketch x")
    p.add_argument("args", nargs="*")
    p.add_argument("--opt", nargs="?", const="bare", default="unset")
    assert p.parse_args(["--opt", "word"]).opt == "bare"
    assert p.parse_args(["--opt=v"]).opt == "v"
    assert p.parse_args([]).opt == "unset"


def test_append_flags_replace_their_default_and_int_flags_take_go_bases() -> None:
    p = Parser(prog="ketch x")
    p.add_argument("--tag", action="append", default=["latest"])
    p.add_argument("-n", type=int, default=-1)
    assert p.parse_args([]).tag == ["latest"]
    assert p.parse_args(["--tag", "a", "--tag=b"]).tag == ["a", "b"]
    assert p.parse_args(["-n", "0x10"]).n == 16
    assert p.parse_args(["-n=010"]).n == 8


def test_cli_takes_go_bool_flags_and_reports_unknown_ones_in_one_line(ketch) -> None:
    bad = ketch("ps", "--all=false", "--bogus", check=False)
    assert bad.returncode == 125
    assert bad.stderr == "ketch ps: unknown flag: --bogus (see 'ketch ps --help')\n"
    ok = ketch("ps", "--all=false", "-q", check=False)
    assert ok.returncode == 0 and ok.stdout == "", ok.stderr

"""Dockerfile input Docker gets wrong or refuses: NUL bytes, duplicate stage names,
`${v:#p}` forms, and bytes that are not UTF-8."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.build.conftest import Builder


@pytest.mark.parametrize(("dockerfile", "message"), [
    (b"FROM busybox\nENV A=x\0y\nRUN true\n",
     "Dockerfile parse error on line 2: ENV names and values cannot contain a NUL byte"),
    (b"FROM busybox\nLABEL a=\"b\0\"\n",
     "Dockerfile parse error on line 2: LABEL names and values cannot contain a NUL byte"),
    (b"ARG V=\0\nFROM busybox\n",
     "Dockerfile parse error on line 1: ARG names and values cannot contain a NUL byte"),
    (b"FROM busybox AS one\nRUN true\nFROM busybox AS ONE\nRUN true\n",
     'Dockerfile parse error on line 3: duplicate stage name "one", stage names should be'
     " unique"),
])
def test_refused_at_parse_time_before_any_step(kb: Builder, dockerfile: bytes,
                                               message: str) -> None:
    ctx = kb.context({"Dockerfile": dockerfile})
    r = kb.build(ctx, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [message]
    assert "Step 1/" not in r.stdout  # nothing ran
    assert kb("images", "-q", "-a").stdout.split() == [kb.image_id("busybox")[7:19]]


@pytest.mark.parametrize(("expr", "spelled"), [
    ("${V:#a}", ":#"), ("${V:##a*}", ":#"), ("${V:%c}", ":%"), ("${V:%%*c}", ":%"),
])
def test_colon_pattern_modifiers_are_errors_not_trims(kb: Builder, expr: str,
                                                      spelled: str) -> None:
    ctx = kb.context({"Dockerfile": f"FROM busybox\nARG V=abc\nENV W={expr}\n"})
    r = kb.build(ctx, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].endswith(
        f"unsupported modifier ({spelled}) in substitution")
    assert "Traceback" not in r.stderr


def test_bytes_that_are_not_utf8_reach_run_unchanged_and_json_gets_u_fffd(
        kb: Builder) -> None:
    dockerfile = (b"FROM busybox\n"
                  b"ENV V=caf\xe9\n"
                  b"LABEL l=caf\xe9\n"
                  b"RUN printf 'caf\xe9' > /out\n"
                  b"RUN cat > /here <<EOF\n"
                  b"x\xff\xfey\n"
                  b"EOF\n")
    ctx = kb.context({"Dockerfile": dockerfile})
    kb.build(ctx, "-q", "-t", "latin1")  # the step lines echo the raw bytes
    hexed = kb.run("latin1", "od", "-An", "-tx1", "/out", "/here").split()
    assert hexed == ["63", "61", "66", "e9", "78", "ff", "fe", "79", "0a"]
    config = json.loads(kb.inspect("latin1", "{{json .Config}}"))
    assert "V=caf\ufffd" in config["Env"]
    assert config["Labels"] == {"l": "caf\ufffd"}
    history = kb("history", "--no-trunc", "--format", "{{.CreatedBy}}", "latin1").stdout
    assert "printf 'caf\ufffd' > /out" in history
    # the stored image config is valid UTF-8 JSON with no lone surrogate escapes
    image_id = kb.image_id("latin1").split(":", 1)[1]
    blob = (Path(kb.root) / "blobs" / "sha256" / image_id).read_bytes()
    text = blob.decode("utf-8")
    assert "\\udc" not in text.lower()
    assert json.loads(text)["config"]["Labels"] == {"l": "caf\ufffd"}

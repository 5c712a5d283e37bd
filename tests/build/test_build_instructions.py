"""Every Dockerfile instruction, multi-stage builds, ARG scoping and ONBUILD."""

from __future__ import annotations

import json
import re

from tests.build.conftest import Builder


def config(kb: Builder, image: str) -> dict:
    return json.loads(kb.inspect(image, "{{json .Config}}"))


def test_metadata_instructions_set_the_config_and_add_no_layer(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": """\
FROM busybox
ENV A=1 B="two words"
ENV C=$A-${B}
LABEL org.example.a="x y" b=$A
MAINTAINER Jane <jane@example.com>
EXPOSE 80 8000-8001/udp
USER 33:33
WORKDIR /srv
WORKDIR data
VOLUME ["/cache", "/logs"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD wget -q -O- localhost || exit 1
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
ENTRYPOINT ["/bin/echo"]
CMD ["hello"]
"""})
    kb.build(ctx, "-t", "meta")
    c = config(kb, "meta")
    # a base without PATH (busybox imported here) gets the default one, as docker build
    # writes it into the image
    assert c["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "A=1", "B=two words", "C=1-two words"]
    assert c["Labels"] == {"org.example.a": "x y", "b": "1"}
    assert kb.inspect("meta", "{{.Author}}") == "Jane <jane@example.com>"
    assert c["ExposedPorts"] == {"80/tcp": {}, "8000/udp": {}, "8001/udp": {}}
    assert c["User"] == "33:33"
    assert c["WorkingDir"] == "/srv/data"
    assert c["Volumes"] == {"/cache": {}, "/logs": {}}
    assert c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- localhost || exit 1"],
                                "Interval": 5_000_000_000, "Timeout": 2_000_000_000,
                                "Retries": 4}
    assert c["Shell"] == ["/bin/sh", "-ec"]
    assert c["OnBuild"] == ["RUN echo child"]
    assert c["Entrypoint"] == ["/bin/echo"] and c["Cmd"] == ["hello"]
    base_layers = kb.inspect("busybox", "{{json .RootFS.Layers}}")
    assert kb.inspect("meta", "{{json .RootFS.Layers}}") == base_layers
    rows = kb("history", "--no-trunc", "--format", "{{.CreatedBy}}", "meta").stdout
    assert "/bin/sh -c #(nop)  ENV A=1 B=two words\n" in rows
    assert "/bin/sh -c #(nop)  STOPSIGNAL SIGINT\n" in rows
    assert '/bin/sh -ec #(nop)  ENTRYPOINT ["/bin/echo"]\n' in rows
    assert "/bin/sh -c #(nop)  VOLUME [/cache /logs]\n" in rows


def test_entrypoint_clears_an_inherited_cmd_but_keeps_one_set_before(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": 'FROM busybox\nENTRYPOINT ["/bin/echo"]\n'})
    kb.build(ctx, "-t", "ep")
    assert config(kb, "ep").get("Cmd") is None  # busybox's CMD ["sh"] is dropped
    ctx2 = kb.context({"Dockerfile": 'FROM busybox\nCMD ["x"]\nENTRYPOINT ["/bin/echo"]\n'},
                      "ctx2")
    kb.build(ctx2, "-t", "ep2")
    assert kb.run("ep2") == "x\n"


def test_run_shell_and_exec_forms_and_shell_instruction(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": """\
FROM busybox
RUN echo "shell $HOME" > /shell.txt
RUN ["sh", "-c", "echo exec $0 > /exec.txt", "zero"]
RUN ["echo", "$HOME"]
SHELL ["/bin/sh", "-c", "set -e; echo via-shell; eval \\"$1\\"", "sh"]
RUN echo from-custom-shell > /custom.txt
"""})
    out = kb.build(ctx, "-t", "runs").stdout
    assert "$HOME\n" in out  # exec form: no variable expansion
    assert "via-shell\n" in out
    assert kb.run("runs", "cat", "/shell.txt", "/exec.txt", "/custom.txt") == \
        "shell /root\nexec zero\nfrom-custom-shell\n"


def test_run_layers_record_deletions_and_drop_runtime_mount_points(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": """\
FROM busybox
RUN mkdir -p /d/sub /o && echo 1 > /d/sub/f && echo k > /keep && echo old > /o/old
RUN rm -rf /d/sub /keep /o && mkdir /o && echo new > /o/new
"""})
    kb.build(ctx, "-t", "del")
    assert kb.run("del", "sh", "-c", "ls -A /d; test -e /keep || echo gone; ls /o") == \
        "gone\nnew\n"  # a deleted file, and a directory replaced (opaque) in one layer
    from ketch.engine import Engine

    with Engine(kb.root, kb.root / "run") as engine:
        rec = engine.images.resolve("del")
        chains = engine.images.chain_ids(rec)
        first_run = engine.layers.path(chains[1])
        second_run = engine.layers.path(chains[2])
        # /etc/hosts, /etc/hostname and /etc/resolv.conf are the runtime's mount points,
        # not the image's: they never reach a layer
        assert sorted(p.name for p in first_run.iterdir()) == ["d", "keep", "o"]
        assert sorted(p.name for p in second_run.iterdir()) == ["d", "keep", "o"]
        assert (second_run / "keep").is_char_device()  # a whiteout
        import tarfile

        blob = engine.images.get_manifest(rec).layers[2].digest
        with engine.content.open(blob) as f, tarfile.open(fileobj=f, mode="r:gz") as tf:
            names = tf.getnames()
        assert {".wh.keep", "d/.wh.sub", "o/.wh..wh..opq", "o/new"} <= set(names)


def test_arg_scoping_build_args_and_first_use_invalidation(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": """\
ARG BASE=busybox
ARG GLOBAL=g1
FROM $BASE
RUN echo "before:[$GLOBAL]" > /before.txt
ARG GLOBAL
ARG LOCAL=l1
ARG UNSET
ENV FROM_ENV=$LOCAL
RUN echo "$GLOBAL $LOCAL $FROM_ENV [$UNSET]" > /args.txt
"""})
    out = kb.build(ctx, "-t", "args", "--build-arg", "LOCAL=l2", "--build-arg",
                   "NOPE=1").stdout
    assert "[Warning] One or more build-args [NOPE] were not consumed" in out
    assert kb.run("args", "cat", "/before.txt", "/args.txt") == "before:[]\ng1 l2 l2 []\n"
    rows = kb("history", "--no-trunc", "--format", "{{.CreatedBy}}", "args").stdout
    assert '|2 GLOBAL=g1 LOCAL=l2 /bin/sh -c echo "$GLOBAL $LOCAL $FROM_ENV [$UNSET]"' \
        in rows
    # a changed value misses the cache where the arg is first used, not before
    out = kb.build(ctx, "-t", "args", "--build-arg", "LOCAL=l2", "--build-arg",
                   "GLOBAL=g2").stdout
    lines = out.splitlines()
    # the ARGs before FROM are steps, as the classic builder counts and prints them
    assert lines[:3] == ["Step 1/9 : ARG BASE=busybox", "Step 2/9 : ARG GLOBAL=g1",
                         "Step 3/9 : FROM $BASE"]
    step4 = lines.index("Step 4/9 : RUN echo \"before:[$GLOBAL]\" > /before.txt")
    assert lines[step4 + 1] == " ---> Using cache"
    assert "Running in" in out
    assert kb.run("args", "cat", "/args.txt") == "g2 l2 l2 []\n"


def test_build_arg_without_value_comes_from_the_environment(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nARG TOKEN\nRUN echo $TOKEN > /t\n"})
    kb.cli("build", "--build-arg", "TOKEN", "-t", "envarg", str(ctx),
           env={"TOKEN": "from-env"})
    assert kb.run("envarg", "cat", "/t") == "from-env\n"


def test_multistage_target_and_copy_from(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": """\
FROM busybox AS base
RUN echo base > /base.txt

FROM busybox AS broken
RUN echo never-built && false

FROM base AS builder
RUN mkdir /out && echo artifact > /out/a.txt && ln -s a.txt /out/link

FROM busybox
COPY --from=builder /out/ /dist/
COPY --from=0 /base.txt /dist/
COPY --from=busybox /etc/passwd /dist/passwd
"""})
    out = kb.build(ctx, "-t", "multi").stdout
    assert "never-built" not in out  # stages the target does not need are skipped
    assert re.search(r"^Step 1/8 : FROM busybox AS base$", out, re.M)
    listing = kb.run("multi", "sh", "-c", "cat /dist/a.txt /dist/base.txt; readlink "
                     "/dist/link; head -1 /dist/passwd; test -e /base.txt || echo no-base")
    assert listing == "artifact\nbase\na.txt\nroot:x:0:0:root:/root:/bin/sh\nno-base\n"
    out = kb.build(ctx, "--target", "builder", "-t", "stage").stdout
    assert "Step 4/4" in out and "never-built" not in out
    assert kb.run("stage", "cat", "/base.txt", "/out/a.txt") == "base\nartifact\n"
    bad = kb.build(ctx, "--target", "nosuch", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == \
        "failed to reach build target nosuch in Dockerfile"


def test_onbuild_triggers_run_in_the_child_build(kb: Builder) -> None:
    parent = kb.context({"Dockerfile": "FROM busybox\nONBUILD COPY hello.txt /hello.txt\n"
                         "ONBUILD RUN cat /hello.txt > /seen.txt\n"}, "parent")
    kb.build(parent, "-t", "onbuild-base")
    child = kb.context({"Dockerfile": "FROM onbuild-base\nRUN cat /seen.txt\n",
                        "hello.txt": "hi from the child context\n"}, "child")
    out = kb.build(child, "-t", "onbuild-child").stdout
    assert "# Executing 2 build triggers" in out
    assert out.count("hi from the child context") == 1  # the child's own RUN
    assert kb.run("onbuild-child", "cat", "/hello.txt", "/seen.txt") == \
        "hi from the child context\n" * 2
    assert config(kb, "onbuild-child").get("OnBuild") in (None, [])


def test_from_scratch_and_heredocs(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": """\
FROM busybox AS tools
ARG WHO=world
RUN <<EOF
echo "hello $WHO" > /greeting
EOF
RUN cat <<EOT > /two.txt && cat /two.txt
line one
line two
EOT
COPY <<EOF /from-heredoc.txt
who=${WHO}
EOF
COPY <<'EOF' /literal.txt
who=${WHO}
EOF

FROM scratch
COPY --from=tools /greeting /two.txt /from-heredoc.txt /literal.txt /
COPY --from=tools /bin/busybox /bin/busybox
CMD ["/bin/busybox", "cat", "/greeting", "/two.txt", "/from-heredoc.txt", "/literal.txt"]
"""})
    out = kb.build(ctx, "-t", "heredocs").stdout
    assert "line one\nline two\n" in out
    assert kb.run("heredocs") == "hello world\nline one\nline two\nwho=world\nwho=${WHO}\n"
    assert kb.inspect("heredocs", "{{len .RootFS.Layers}}") == "2"
    # as docker build: FROM scratch gets the default PATH in its config, and an image
    # built on an imported base does not inherit the base's "Imported from -" comment
    assert kb.inspect("heredocs", "{{.Config.Env}}") == (
        "[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin]")
    assert kb.inspect("busybox", "{{.Comment}}") == "Imported from -"
    kb.build(kb.context({"Dockerfile": "FROM busybox\nENV X=1\n"}), "-t", "child-of-import")
    assert kb.inspect("child-of-import", "{{.Comment}}|{{.Author}}") == "|"


def test_heredoc_with_shebang_runs_its_interpreter(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nRUN <<EOF\n#!/bin/busybox sh\n"
                      "echo shebang > /sb.txt\nEOF\n"})
    kb.build(ctx, "-t", "sb")
    assert kb.run("sb", "cat", "/sb.txt") == "shebang\n"

"""`ketch kube ...`: play, down and generate Kubernetes YAML, with Podman's flags and
output."""

from __future__ import annotations

import sys

from ketch.cli.base import Registry, engine, out
from ketch.cli.flags import Namespace, Parser
from ketch.errors import InvalidArgument, os_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.kube.play import DownReport

registry = Registry()


def _progress(line: str) -> None:
    sys.stderr.write(line + "\n")


def _warn(line: str) -> None:
    sys.stderr.write(f"WARNING: {line}\n")


@registry.command("play", "[OPTIONS] KUBEFILE|-", "Play a pod or other workloads based on"
                  " Kubernetes YAML", error_exit=125)
def _play(p: Parser) -> None:
    p.add_argument("file", metavar="KUBEFILE")
    p.add_argument("--build", action="store_true", default="auto",
                   help="Build images even if they are found in the local storage"
                   " (--build=false never builds)")
    p.add_argument("--configmap", action="append", default=[], metavar="strings",
                   help="YAML file of ConfigMaps the pods use (may be repeated)")
    p.add_argument("--down", action="store_true",
                   help="Stop and remove the pods the YAML describes instead")
    p.add_argument("--network", metavar="string", help="Connect the pods to this network")
    p.add_argument("--replace", action="store_true",
                   help="Remove existing pods of the same names before playing")
    p.add_argument("--start", action="store_true", default=True,
                   help="Start the pods after creating them (default true)")


@_play.handler
def play(ns: Namespace) -> None:
    if ns.down:
        _print_down(engine().kube_down(ns.file))
        return
    build = None if ns.build == "auto" else bool(ns.build)
    report = engine().kube_play(ns.file, replace=ns.replace, network=ns.network,
                                build=build, start=ns.start, configmaps=ns.configmap,
                                progress=_progress)
    for w in report.warnings:
        _warn(w)
    for pod in report.pods:
        out("Pod:")
        out(pod.id)
        out("Containers:" if len(pod.containers) > 1 else "Container:")
        for cid in pod.containers:
            out(cid)
        out("")
    if report.volumes:
        out("Volumes:")
        for v in report.volumes:
            out(v)


def _print_down(report: DownReport) -> None:
    for title, items in (("Pods stopped:", report.stopped), ("Pods removed:", report.removed),
                         ("Volumes removed:", report.volumes)):
        if title.startswith("Volumes") and not items:
            continue  # as Podman: the volume list only when there is one
        out(title)
        for i in items:
            out(i)


@registry.command("down", "[OPTIONS] KUBEFILE|-", "Remove pods based on Kubernetes YAML",
                  error_exit=125)
def _down(p: Parser) -> None:
    p.add_argument("file", metavar="KUBEFILE")
    p.add_argument("--force", action="store_true",
                   help="Remove the PersistentVolumeClaims' volumes too")


@_down.handler
def down(ns: Namespace) -> None:
    _print_down(engine().kube_down(ns.file, force=ns.force))


@registry.command("generate", "[OPTIONS] POD|CONTAINER...", "Generate Kubernetes YAML"
                  " based on containers or pods", error_exit=125)
def _generate(p: Parser) -> None:
    p.add_argument("names", nargs="+", metavar="POD|CONTAINER")
    p.add_argument("-f", "--filename", metavar="string", help="Write output to the file")
    p.add_argument("-s", "--service", action="store_true",
                   help="Generate a NodePort Service for the pods' published ports")
    p.add_argument("-t", "--type", default="pod", metavar="string",
                   help='Kind of object to generate: pod or deployment (default "pod")')


@_generate.handler
def generate(ns: Namespace) -> None:
    text = engine().kube_generate(ns.names, kind=ns.type, service=ns.service)
    if ns.filename:
        try:
            with open(ns.filename, "w") as f:
                f.write(text)
        except OSError as e:
            raise InvalidArgument(f'cannot write to "{ns.filename}":'
                                  f" {os_words(e)}") from None
        return
    sys.stdout.write(text)

"""iptables rules for bridge networks and published ports, applied in batches.

Layout (prefix P, "KETCH" by default), modelled on Docker's libnetwork chains:

    filter FORWARD     -> P-FORWARD  (inserted first: a Docker daemon sets the FORWARD
                                      policy to DROP, so ketch's traffic needs explicit
                                      accepts ahead of Docker's rules)
    P-FORWARD          -> P-ISOLATION-1 first (drops traffic between ketch networks and
                          into/out of --internal ones), then per network: accept what
                          leaves the bridge, replies coming back, and DNATed
                          (published-port) traffic coming in
    filter INPUT       -> P-INPUT    (per network: the DNS service, and a guard against
                                      containers reaching the host's 127.0.0.1 services
                                      through route_localnet)
    nat PREROUTING/OUTPUT, dst-type LOCAL -> P   (one DNAT rule per published port;
                          OUTPUT covers connections from the host itself, 127.0.0.1
                          included)
    nat POSTROUTING    -> P-POSTROUTING (per network: MASQUERADE for outbound traffic,
                          for loopback-sourced traffic to published ports, and for
                          hairpin traffic from a container to a port published by a
                          neighbour)

On a network with IPv6 (--ipv6), ip6tables gets the same filter layout for the
bridge's IPv6 subnet (FORWARD, ISOLATION-1/2: networks isolated from each other, and
--internal ones from everything) and the MASQUERADE of outbound traffic; published
ports reach IPv6 addresses through the userland proxy (proxy.py), so there is no IPv6
DNAT chain, and no INPUT chain (the DNS service listens on the IPv4 gateway only).

Chains and per-network rules stay across runs; a container with published ports adds
and removes only its DNAT rules, in one `iptables-restore --noflush` transaction each
way. Rules are written in the canonical form `iptables-save` prints, so presence checks
are plain string comparisons.
"""

from __future__ import annotations

from ketch.errors import KetchError
from ketch.network.models import PortBinding
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ketch.runtime.spawn import Child


class FirewallError(KetchError):
    pass


@value(frozen=True)
class Rule:
    table: str
    chain: str
    spec: str
    insert: bool = False  # insert at the top of the chain instead of appending
    family: int = 4  # 6: an ip6tables rule

    def add_line(self) -> str:
        return f"-I {self.chain} 1 {self.spec}" if self.insert else f"-A {self.chain} {self.spec}"

    def delete_line(self) -> str:
        return f"-D {self.chain} {self.spec}"

    def saved_line(self) -> str:
        return f"-A {self.chain} {self.spec}"

    def encode(self) -> list[str | bool | int]:
        head: list[str | bool | int] = [self.table, self.chain, self.spec, self.insert]
        return head + [6] if self.family == 6 else head

    @classmethod
    def decode(cls, data: Sequence[object]) -> Rule:
        family = 6 if len(data) > 4 and data[4] == 6 else 4
        return cls(str(data[0]), str(data[1]), str(data[2]), bool(data[3]), family)


@value
class Ruleset:
    """What `iptables-save` reported: chain names and rule lines per table."""

    chains: dict[str, set[str]]
    rules: dict[str, list[str]]

    def has_rule(self, rule: Rule) -> bool:
        return rule.saved_line() in self.rules.get(rule.table, ())

    def has_chain(self, table: str, chain: str) -> bool:
        return chain in self.chains.get(table, ())


def _restore_text(chains: Iterable[tuple[str, str]], lines: Iterable[tuple[str, str]]) -> str:
    by_table: dict[str, list[str]] = {}
    for table, chain in chains:
        by_table.setdefault(table, []).append(f":{chain} - [0:0]")
    for table, line in lines:
        by_table.setdefault(table, []).append(line)
    out = []
    for table, body in by_table.items():
        out.append(f"*{table}")
        out.extend(body)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


class Pending:
    """The iptables-restore (and ip6tables-restore) processes of one `Firewall.start`."""

    def __init__(self, procs: list[tuple[int, Child, str]]) -> None:
        self.procs = procs  # (address family, process, the text it was given)


FAMILIES = (4, 6)
TOOLS = {4: "iptables", 6: "ip6tables"}


def _by_family(rules: Sequence[Rule]) -> dict[int, list[Rule]]:
    out: dict[int, list[Rule]] = {}
    for r in rules:
        out.setdefault(r.family, []).append(r)
    return out


class Firewall:
    def __init__(self, prefix: str = "KETCH") -> None:
        self.prefix = prefix
        self.dnat_chain = prefix
        self.postrouting_chain = f"{prefix}-POSTROUTING"
        self.forward_chain = f"{prefix}-FORWARD"
        self.isolation1 = f"{prefix}-ISOLATION-1"
        self.isolation2 = f"{prefix}-ISOLATION-2"
        self.input_chain = f"{prefix}-INPUT"
        self._restore_bin: dict[int, str] = {}

    # -- rule sets -----------------------------------------------------------------------
    def base_chains(self, family: int = 4) -> list[tuple[str, str]]:
        if family == 6:
            return [("nat", self.postrouting_chain), ("filter", self.forward_chain),
                    ("filter", self.isolation1), ("filter", self.isolation2)]
        return [("nat", self.dnat_chain), ("nat", self.postrouting_chain),
                ("filter", self.forward_chain), ("filter", self.isolation1),
                ("filter", self.isolation2), ("filter", self.input_chain)]

    def base_rules(self, family: int = 4) -> list[Rule]:
        local = "-m addrtype --dst-type LOCAL"
        if family == 6:
            return [
                Rule("nat", "POSTROUTING", f"-j {self.postrouting_chain}", True, 6),
                Rule("filter", "FORWARD", f"-j {self.forward_chain}", True, 6),
                Rule("filter", self.forward_chain, f"-j {self.isolation1}", True, 6),
            ]
        return [
            Rule("nat", "PREROUTING", f"{local} -j {self.dnat_chain}"),
            Rule("nat", "OUTPUT", f"{local} -j {self.dnat_chain}"),
            Rule("nat", "POSTROUTING", f"-j {self.postrouting_chain}", insert=True),
            Rule("filter", "FORWARD", f"-j {self.forward_chain}", insert=True),
            Rule("filter", self.forward_chain, f"-j {self.isolation1}", insert=True),
            Rule("filter", "INPUT", f"-j {self.input_chain}", insert=True),
        ]

    def network_rules(self, bridge: str, subnet: str, gateway: str, internal: bool,
                      dns: bool, *, icc: bool = True, masquerade: bool = True) -> list[Rule]:
        """`icc` False: containers of the bridge cannot reach each other (Docker's
        enable_icc=false); `masquerade` False: traffic leaves with the containers' own
        addresses (enable_ip_masquerade=false)."""
        br = bridge
        rules: list[Rule] = []
        if not icc:
            # before the ACCEPTs below; seen only with bridge-nf-call-iptables on
            rules.append(Rule("filter", self.forward_chain, f"-i {br} -o {br} -j DROP"))
        if internal:
            rules += [
                Rule("filter", self.isolation1, f"-i {br} ! -o {br} -j DROP"),
                Rule("filter", self.isolation1, f"! -i {br} -o {br} -j DROP"),
            ]
            if icc:
                rules.append(Rule("filter", self.forward_chain, f"-i {br} -o {br} -j ACCEPT"))
        else:
            rules += [
                Rule("filter", self.isolation1, f"-i {br} ! -o {br} -j {self.isolation2}"),
                Rule("filter", self.isolation2, f"-o {br} -j DROP"),
                Rule("filter", self.forward_chain,
                     f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
                Rule("filter", self.forward_chain, f"-o {br} -m conntrack --ctstate DNAT -j ACCEPT"),
                Rule("filter", self.forward_chain, f"-i {br} -j ACCEPT"),
                Rule("nat", self.postrouting_chain,
                     f"-s {subnet} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE"),
            ]
            if masquerade:
                rules.append(Rule("nat", self.postrouting_chain,
                                  f"-s {subnet} ! -o {br} -j MASQUERADE"))
        rules += [
            # published ports on 127.0.0.1 reach the container with a loopback source
            # (route_localnet); it must leave the bridge with the gateway's address
            Rule("nat", self.postrouting_chain, f"-s 127.0.0.0/8 -o {br} -j MASQUERADE"),
            # route_localnet would otherwise let a container address the host's
            # loopback-only services (the kube-proxy CVE-2020-8558 lesson)
            Rule("filter", self.input_chain,
                 f"-d 127.0.0.0/8 -i {br} -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP"),
        ]
        if dns:
            for proto in ("udp", "tcp"):
                rules.append(Rule("filter", self.input_chain,
                                  f"-d {gateway}/32 -i {br} -p {proto} -m {proto} --dport 53 -j ACCEPT"))
        return rules

    def network_rules6(self, bridge: str, subnet6: str, internal: bool, *, icc: bool = True,
                       masquerade: bool = True) -> list[Rule]:
        """The IPv6 counterpart of `network_rules` for the bridge's IPv6 subnet: the same
        isolation, forwarding and masquerading, nothing for loopback or DNS."""
        br = bridge
        rules: list[Rule] = []
        if not icc:
            rules.append(Rule("filter", self.forward_chain, f"-i {br} -o {br} -j DROP",
                              family=6))
        if internal:
            rules += [
                Rule("filter", self.isolation1, f"-i {br} ! -o {br} -j DROP", family=6),
                Rule("filter", self.isolation1, f"! -i {br} -o {br} -j DROP", family=6),
            ]
            if icc:
                rules.append(Rule("filter", self.forward_chain, f"-i {br} -o {br} -j ACCEPT",
                                  family=6))
            return rules
        rules += [
            Rule("filter", self.isolation1, f"-i {br} ! -o {br} -j {self.isolation2}",
                 family=6),
            Rule("filter", self.isolation2, f"-o {br} -j DROP", family=6),
            Rule("filter", self.forward_chain,
                 f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", family=6),
            Rule("filter", self.forward_chain, f"-i {br} -j ACCEPT", family=6),
        ]
        if masquerade:
            rules.append(Rule("nat", self.postrouting_chain,
                              f"-s {subnet6} ! -o {br} -j MASQUERADE", family=6))
        return rules

    def port_rules(self, bindings: Iterable[PortBinding], container_ip: str) -> list[Rule]:
        rules = []
        for b in bindings:
            if b.family != 4:
                continue  # IPv6 host addresses go through the userland proxy
            dest = f"-d {b.host_ip}/32 " if b.host_ip else ""
            rules.append(Rule(
                "nat", self.dnat_chain,
                f"{dest}-p {b.protocol} -m {b.protocol} --dport {b.host_port} "
                f"-j DNAT --to-destination {container_ip}:{b.container_port}"))
        return rules

    # -- applying ------------------------------------------------------------------------
    def _restore_cmd(self, family: int = 4) -> list[str]:
        if family not in self._restore_bin:
            from ketch.runtime import which  # (shutil's import is ~5 ms)

            tool = f"{TOOLS[family]}-restore"
            found = which(tool)
            if found is None:
                raise FirewallError(f"{tool} is not installed (Debian: apt-get install iptables)")
            self._restore_bin[family] = found
        return [self._restore_bin[family], "--noflush", "-w"]

    def start(self, add: Sequence[Rule] = (), delete: Sequence[Rule] = (),
              chains: Sequence[tuple[str, str]] = ()) -> Pending | None:
        """Start one iptables-restore transaction per address family (`chains` are
        IPv4 ones); `finish` waits for them. Splitting the two lets the caller overlap
        the kernel's commit with other work."""
        if not add and not delete and not chains:
            return None
        procs = []
        try:
            for family in FAMILIES:
                lines = [(r.table, r.delete_line()) for r in delete if r.family == family]
                lines += [(r.table, r.add_line()) for r in add if r.family == family]
                wanted = chains if family == 4 else ()
                if lines or wanted:
                    procs.append(self._start_lines(lines, wanted, family))
        except BaseException:
            self.finish(Pending(procs))
            raise
        return Pending(procs)

    @staticmethod
    def finish(pending: Pending | None) -> None:
        if pending is None:
            return
        failed = []
        for family, proc, text in pending.procs:
            code, _out, err = proc.communicate()
            if code != 0:
                failed.append(f"{TOOLS[family]}-restore failed:"
                              f" {err.decode(errors='replace').strip()}\n{text}")
        if failed:
            raise FirewallError("\n".join(failed))

    def apply(self, add: Sequence[Rule] = (), delete: Sequence[Rule] = (),
              chains: Sequence[tuple[str, str]] = ()) -> None:
        self.finish(self.start(add, delete, chains))

    def save(self, family: int = 4) -> Ruleset:
        import shutil

        tool = f"{TOOLS[family]}-save"
        found = shutil.which(tool)
        if found is None:
            raise FirewallError(f"{tool} is not installed (Debian: apt-get install iptables)")
        import subprocess  # (here: a sandbox's teardown without rules loads none of it)

        out = subprocess.run([found], capture_output=True, text=True)
        if out.returncode != 0:
            raise FirewallError(f"{tool} failed: {out.stderr.strip()}")
        chains: dict[str, set[str]] = {}
        rules: dict[str, list[str]] = {}
        table = ""
        for line in out.stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
                chains.setdefault(table, set())
                rules.setdefault(table, [])
            elif line.startswith(":"):
                chains[table].add(line[1:].split(" ", 1)[0])
            elif line.startswith("-A "):
                rules[table].append(line)
        return Ruleset(chains, rules)

    def ensure(self, rules: Sequence[Rule]) -> None:
        """Create the base chains and add whichever of `rules` (base rules first) are
        missing. Idempotent; costs one iptables-save and at most one restore (and as
        much again for ip6tables when there are IPv6 rules)."""
        grouped = _by_family(rules)
        for family in FAMILIES:
            if family != 4 and family not in grouped:
                continue
            current = self.save(family)
            chains = [(t, c) for t, c in self.base_chains(family)
                      if not current.has_chain(t, c)]
            wanted = [r for r in [*self.base_rules(family), *grouped.get(family, ())]
                      if not current.has_rule(r)]
            missing = list(dict.fromkeys(wanted))
            if missing or chains:
                self.finish(Pending([self._start_lines(
                    [(r.table, r.add_line()) for r in missing], chains, family)]))

    def delete(self, rules: Sequence[Rule]) -> None:
        """Delete rules; those already gone (a reboot, a manual flush) are skipped."""
        if not rules:
            return
        try:
            self.apply(delete=rules)
            return
        except FirewallError:
            pass
        present = []
        for family, group in _by_family(rules).items():
            current = self.save(family)
            present += [r for r in dict.fromkeys(group) if current.has_rule(r)]
        self.apply(delete=present)

    def uninstall(self) -> None:
        """Remove every chain of this prefix and every rule jumping to one of them, in
        iptables and (where installed) ip6tables."""
        self._uninstall(4)
        try:
            self._uninstall(6)
        except FirewallError:
            pass  # no ip6tables here: then no IPv6 network had its rules installed either

    def _uninstall(self, family: int) -> None:
        current = self.save(family)
        ours = {c for _t, c in self.base_chains(family)}
        lines: list[tuple[str, str]] = []
        for table, table_rules in current.rules.items():
            for line in table_rules:
                parts = line.split()
                chain = parts[1]
                target = parts[parts.index("-j") + 1] if "-j" in parts else ""
                if chain not in ours and target in ours:
                    lines.append((table, "-D " + line[3:]))
        for table, chain in self.base_chains(family):
            if current.has_chain(table, chain):
                lines.append((table, f"-F {chain}"))
        for table, chain in self.base_chains(family):
            if current.has_chain(table, chain):
                lines.append((table, f"-X {chain}"))
        if lines:
            self.finish(Pending([self._start_lines(lines, (), family)]))

    def _start_lines(self, lines: list[tuple[str, str]],
                     chains: Sequence[tuple[str, str]] = (),
                     family: int = 4) -> tuple[int, Child, str]:
        """One iptables-restore, its input written (a few rules fit the pipe at once):
        it commits while the caller goes on. Through ketch.runtime.spawn, not
        subprocess, whose import alone is ~2.5 ms of each `run -p`."""
        from ketch.runtime.spawn import Child

        text = _restore_text(chains, lines)
        try:
            proc = Child(self._restore_cmd(family), input=text.encode(), stdout=False)
        except OSError as e:
            raise FirewallError(f"{TOOLS[family]}-restore: {e.strerror or e}") from None
        return family, proc, text

"""A minimal rtnetlink client: just the link, address and route requests ketch needs.

Why not `ip`: each `ip` launch costs 3-5 ms and a container needs about eight
operations. Why not pyroute2: importing it costs more than all of these requests
together. A netlink socket belongs to the network namespace that was current when it was
created, so one socket opened inside a container's namespace configures that namespace
from anywhere (see netns.py).

Message layouts are from the kernel's uapi headers (linux/netlink.h, linux/rtnetlink.h,
linux/if_link.h, linux/veth.h).
"""

from __future__ import annotations

import _socket  # not `socket`: its constants become enums at import (ms of `run`)
import errno
import os
import struct

# ipaddress on first use: a member joining its pod's namespace needs none
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

NETLINK_ROUTE = 0

NLMSG_ERROR = 2
NLMSG_DONE = 3

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5

IFF_UP = 0x1
NLA_F_NESTED = 0x8000

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NLA = struct.Struct("=HH")


def nla(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def nla_str(kind: int, text: str) -> bytes:
    return nla(kind, text.encode() + b"\0")


def nla_u32(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=I", value))


def nested(kind: int, *attrs: bytes) -> bytes:
    return nla(kind | NLA_F_NESTED, b"".join(attrs))


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    while offset + _NLA.size <= len(data):
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size:
            break
        attrs[kind & ~NLA_F_NESTED] = data[offset + _NLA.size: offset + length]
        offset += (length + 3) & ~3
    return attrs


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


class NetlinkError(OSError):
    pass


class Netlink:
    """One NETLINK_ROUTE socket; requests are synchronous and acknowledged."""

    def __init__(self, sock: _socket.socket | None = None) -> None:
        if sock is None:
            sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                 NETLINK_ROUTE)
            sock.bind((0, 0))
        self.sock = sock
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------
    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self._seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type,
                                flags | NLM_F_REQUEST, self._seq, 0)
        self.sock.send(header + body)
        return self._seq

    def _messages(self, seq: int) -> Iterator[tuple[int, int, bytes]]:
        """Yield (type, flags, payload) of the replies to `seq` until it is complete."""
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, msg_type, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                payload = data[offset + _NLMSGHDR.size: offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue  # a late reply to an earlier request that was abandoned
                if msg_type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return
                if msg_type == NLMSG_DONE:
                    return
                yield msg_type, flags, payload
                if not flags & NLM_F_MULTI:
                    return

    def request(self, msg_type: int, flags: int, body: bytes) -> None:
        for _ in self._messages(self._send(msg_type, flags | NLM_F_ACK, body)):
            pass

    def dump(self, msg_type: int, body: bytes) -> list[bytes]:
        return [p for _t, _f, p in self._messages(self._send(msg_type, NLM_F_DUMP, body))]

    # -- links -------------------------------------------------------------------------
    def link_index(self, name: str) -> int | None:
        body = _IFINFOMSG.pack(_socket.AF_UNSPEC, 0, 0, 0, 0) + nla_str(IFLA_IFNAME, name)
        try:
            seq = self._send(RTM_GETLINK, 0, body)
            for _t, _f, payload in self._messages(seq):
                return int(_IFINFOMSG.unpack_from(payload)[2])
        except NetlinkError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return None

    def links(self) -> list[tuple[int, str, str]]:
        """(index, name, kind) of every link in this namespace."""
        out = []
        for payload in self.dump(RTM_GETLINK, _IFINFOMSG.pack(_socket.AF_UNSPEC, 0, 0, 0, 0)):
            index = _IFINFOMSG.unpack_from(payload)[2]
            attrs = parse_attrs(payload, _IFINFOMSG.size)
            name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
            kind = ""
            if IFLA_LINKINFO in attrs:
                info = parse_attrs(attrs[IFLA_LINKINFO])
                kind = info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode()
            out.append((index, name, kind))
        return out

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, _IFINFOMSG.pack(_socket.AF_UNSPEC, 0, index,
                                                     IFF_UP, IFF_UP))

    def create_bridge(self, name: str, mac: str, mtu: int) -> int:
        body = (_IFINFOMSG.pack(_socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
                + nla_str(IFLA_IFNAME, name) + nla_u32(IFLA_MTU, mtu)
                # a fixed MAC: otherwise the bridge takes the lowest MAC of its ports and
                # changes it as containers come and go, which confuses ARP caches
                + nla(IFLA_ADDRESS, mac_bytes(mac))
                + nested(IFLA_LINKINFO, nla_str(IFLA_INFO_KIND, "bridge")))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)
        index = self.link_index(name)
        if index is None:
            raise NetlinkError(errno.ENODEV, f"bridge {name} vanished after creation")
        return index

    def create_veth(self, host_name: str, peer_name: str, peer_netns_fd: int,
                    peer_mac: str, master_index: int, mtu: int) -> None:
        """Create a veth pair: `host_name` up and enslaved to the bridge here, the peer
        created directly inside the container's namespace (no move step)."""
        peer = (_IFINFOMSG.pack(_socket.AF_UNSPEC, 0, 0, 0, 0)
                + nla_str(IFLA_IFNAME, peer_name) + nla_u32(IFLA_MTU, mtu)
                + nla(IFLA_ADDRESS, mac_bytes(peer_mac))
                + nla_u32(IFLA_NET_NS_FD, peer_netns_fd))
        body = (_IFINFOMSG.pack(_socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
                + nla_str(IFLA_IFNAME, host_name) + nla_u32(IFLA_MTU, mtu)
                + nla_u32(IFLA_MASTER, master_index)
                + nested(IFLA_LINKINFO, nla_str(IFLA_INFO_KIND, "veth"),
                         nested(IFLA_INFO_DATA, nla(VETH_INFO_PEER, peer))))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def delete_link(self, name: str) -> bool:
        """Delete a link by name; False when it does not exist."""
        body = _IFINFOMSG.pack(_socket.AF_UNSPEC, 0, 0, 0, 0) + nla_str(IFLA_IFNAME, name)
        try:
            self.request(RTM_DELLINK, 0, body)
        except NetlinkError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # -- addresses and routes ----------------------------------------------------------
    def add_address(self, index: int, cidr: str) -> None:
        import ipaddress

        iface = ipaddress.ip_interface(cidr)
        family = _socket.AF_INET if iface.version == 4 else _socket.AF_INET6
        packed = iface.ip.packed
        # IPv6: IFA_F_NODAD (0x02), usable at once instead of "tentative" for a second
        flags = 0x02 if iface.version == 6 else 0
        scope = 253 if iface.version == 6 and iface.ip.is_link_local else RT_SCOPE_UNIVERSE
        body = (_IFADDRMSG.pack(family, iface.network.prefixlen, flags, scope, index)
                + nla(IFA_LOCAL, packed) + nla(IFA_ADDRESS, packed))
        if iface.version == 4 and iface.network.prefixlen < 31:
            body += nla(IFA_BROADCAST, iface.network.broadcast_address.packed)
        try:
            self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise

    def addresses(self, index: int) -> list[str]:
        import ipaddress

        out = []
        for payload in self.dump(RTM_GETADDR, _IFADDRMSG.pack(_socket.AF_INET, 0, 0, 0, 0)):
            family, prefixlen, _fl, _scope, ifindex = _IFADDRMSG.unpack_from(payload)
            if ifindex != index:
                continue
            attrs = parse_attrs(payload, _IFADDRMSG.size)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw:
                out.append(f"{ipaddress.ip_address(raw)}/{prefixlen}")
        return out

    def add_default_route(self, gateway: str, oif: int) -> None:
        import ipaddress

        gw = ipaddress.ip_address(gateway)
        family = _socket.AF_INET if gw.version == 4 else _socket.AF_INET6
        body = (_RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                            RTN_UNICAST, 0)
                + nla(RTA_GATEWAY, gw.packed) + nla_u32(RTA_OIF, oif))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)


# -- conntrack (NETLINK_NETFILTER, linux/netfilter/nfnetlink_conntrack.h) ---------------

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
_NFGENMSG = struct.Struct("=BBH")


def delete_conntrack(protocol: int, reply_src: str, reply_port: int) -> int:
    """Delete the connection-tracking entries whose reply comes from
    `reply_src:reply_port` (a container's published port). Without this, a UDP client
    that keeps sending keeps its old DNAT entry alive and never reaches the next
    container published on the same host port. Returns how many were deleted."""
    import ipaddress

    want_ip = ipaddress.ip_address(reply_src).packed
    want_port = struct.pack("!H", reply_port)
    msg_type = NFNL_SUBSYS_CTNETLINK << 8
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                          NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
        nl = Netlink(sock)
        body = _NFGENMSG.pack(_socket.AF_INET, 0, 0)
        victims = []
        for payload in nl.dump(msg_type | IPCTNL_MSG_CT_GET, body):
            attrs = parse_attrs(payload, _NFGENMSG.size)
            reply = parse_attrs(attrs.get(CTA_TUPLE_REPLY, b""))
            ip = parse_attrs(reply.get(CTA_TUPLE_IP, b""))
            proto = parse_attrs(reply.get(CTA_TUPLE_PROTO, b""))
            if (ip.get(CTA_IP_V4_SRC) == want_ip
                    and proto.get(CTA_PROTO_NUM, b"\0")[:1] == bytes([protocol])
                    and proto.get(CTA_PROTO_SRC_PORT) == want_port
                    and CTA_TUPLE_ORIG in attrs):
                victims.append(nested(CTA_TUPLE_ORIG, attrs[CTA_TUPLE_ORIG]))
        deleted = 0
        for orig in victims:
            try:
                nl.request(msg_type | IPCTNL_MSG_CT_DELETE, 0, body + orig)
                deleted += 1
            except NetlinkError as e:
                if e.errno != errno.ENOENT:  # expired meanwhile
                    raise
        return deleted
    finally:
        sock.close()

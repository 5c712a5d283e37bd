"""Generated container names, `adjective_surname` as Docker makes them.

The surnames are people who shaped computing and science; the lists are ours.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import random
    from collections.abc import Container

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def valid_name(name: str) -> bool:
    """Docker's container name rule, `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`."""
    name = name[1:] if name.startswith("/") else name
    return (len(name) >= 2 and name[0].isascii() and name[0].isalnum()
            and all(c in _NAME_CHARS for c in name))

ADJECTIVES = (
    "agile", "amazing", "bold", "brave", "bright", "busy", "calm", "clever", "cool",
    "crisp", "curious", "daring", "dazzling", "eager", "elastic", "elegant", "epic",
    "fervent", "festive", "focused", "friendly", "gallant", "gentle", "gifted", "happy",
    "hardy", "humble", "jolly", "keen", "kind", "laughing", "lively", "loving", "lucid",
    "magical", "merry", "mighty", "modest", "nifty", "noble", "patient", "peaceful",
    "plucky", "polite", "proud", "quick", "quiet", "radiant", "relaxed", "serene", "sharp",
    "shiny", "silly", "sleepy", "smart", "snappy", "steady", "stoic", "sunny", "swift",
    "tender", "thirsty", "tidy", "upbeat", "vibrant", "vigilant", "warm", "wise", "witty",
    "youthful", "zealous", "zen",
)

SURNAMES = (
    "babbage", "backus", "bardeen", "bell", "berners_lee", "boole", "cerf", "chandrasekhar",
    "codd", "conway", "curie", "dijkstra", "einstein", "engelbart", "euler", "faraday",
    "fermi", "feynman", "franklin", "galois", "gauss", "goldberg", "goodall", "hamilton",
    "hawking", "hertz", "hopper", "hypatia", "johnson", "kahn", "kay", "kepler", "knuth",
    "lamarr", "lamport", "liskov", "lovelace", "maxwell", "mccarthy", "meitner", "mendel",
    "minsky", "newton", "noether", "pascal", "pasteur", "perlman", "planck", "ramanujan",
    "ritchie", "sammet", "shannon", "shockley", "sutherland", "tesla", "thompson", "torvalds",
    "turing", "volta", "wilkes", "wing", "wozniak", "yalow", "yonath",
)


class _Urandom:
    """The three calls `generate` makes, from os.urandom: `random` (with bisect and
    hashlib's sha512 under it) is not imported to pick one name."""

    @staticmethod
    def _below(n: int) -> int:
        return int.from_bytes(os.urandom(8)) % n  # bias below 2**-50: irrelevant here

    def choice(self, seq: tuple[str, ...]) -> str:
        return seq[self._below(len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + self._below(b - a + 1)

    def getrandbits(self, k: int) -> int:
        return int.from_bytes(os.urandom((k + 7) // 8)) >> (-k % 8)


def generate(taken: Container[str], rng: random.Random | None = None) -> str:
    r = rng or _Urandom()
    for attempt in range(20):
        name = f"{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}"
        if attempt >= 10:
            name += str(r.randint(0, 99))
        if name not in taken:
            return name
    return f"{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}_{r.getrandbits(32):08x}"

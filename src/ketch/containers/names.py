"""Generated container names, `adjective_surname` as Docker makes them.

The surnames are people who shaped computing and science; the lists are ours.
"""

from __future__ import annotations

import random
from collections.abc import Container

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


def generate(taken: Container[str], rng: random.Random | None = None) -> str:
    r = rng or random.Random()
    for attempt in range(20):
        name = f"{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}"
        if attempt >= 10:
            name += str(r.randint(0, 99))
        if name not in taken:
            return name
    return f"{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}_{r.getrandbits(32):08x}"

"""Mutations of artifact bytes for robustness tests: bit flips, truncations, spliced headers.

Used by tests/test_fuzz.py (a few hundred fixed-seed cases) and bench/fuzz.py (longer runs).
"""

from __future__ import annotations

import random
import struct

MUTATIONS = ("bitflip", "truncate", "splice", "zero_block", "duplicate_block")


def mutate(data: bytes, rng: random.Random, donor: bytes = b"") -> tuple[str, bytes]:
    kind = rng.choice(MUTATIONS)
    buf = bytearray(data)
    if kind == "bitflip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        buf = buf[: rng.randrange(0, len(buf))]
    elif kind == "splice":  # another file's header (or random bytes) over this one's start
        n = rng.randint(4, 256)
        head = donor[:n] if donor else bytes(rng.randrange(256) for _ in range(n))
        buf[: len(head)] = head
    elif kind == "zero_block":
        i = rng.randrange(len(buf))
        n = rng.randint(1, 512)
        buf[i : i + n] = bytes(len(buf[i : i + n]))
    else:  # duplicate_block: repeat a slice in place (offsets beyond it now point elsewhere)
        i = rng.randrange(len(buf))
        buf[i:i] = buf[i : i + rng.randint(1, 256)]
    return kind, bytes(buf)


def xnnpack_payload(data: bytes) -> tuple[int, int] | None:
    """(offset, size) of the XNNPACK delegate's flatbuffer inside a .pte, from its 'XH00' header
    (magic, u16 header size, u32 flatbuffer offset, u32 flatbuffer size, ...), or None."""
    h = data.find(b"XH00")
    if h < 0 or h + 14 > len(data):
        return None
    offset, size = struct.unpack_from("<II", data, h + 6)
    start = h + offset
    if not 0 < size <= len(data) - start:
        return None
    return start, size


def mutate_delegate_payload(data: bytes, rng: random.Random, flips: int = 4, span: int = 512) -> bytes:
    """Bit flips in the first `span` bytes of the XNNPACK delegate's flatbuffer: the part of a .pte
    that ExecuTorch hands to native code after the program itself passed verification."""
    found = xnnpack_payload(data)
    if found is None:
        raise ValueError("no XNNPACK delegate payload in this .pte")
    start, size = found
    buf = bytearray(data)
    for _ in range(flips):
        i = start + rng.randrange(min(size, span))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)

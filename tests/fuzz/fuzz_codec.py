"""Atheris target: ``rpcframework.codec.decode`` in every encoding must return or raise CodecError.

Run directly (``python tests/fuzz/fuzz_codec.py -max_total_time=60``) or through ``test_fuzz_codec.py``. The
first input byte picks the encoding; the rest is the payload. Whatever decodes is re-encoded in the same encoding,
which must also succeed or raise CodecError. Any other exception is a finding and crashes the run.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from rpcframework.codec import CodecLimits, Encoding, decode, encode
    from rpcframework.errors import CodecError

ENCODINGS = (None, Encoding.JSON, Encoding.DENCODE, Encoding.TYPED)
# Small limits so that the limit paths are reachable from short inputs, and the default limits too.
LIMITS = (CodecLimits(), CodecLimits(max_depth=5, max_items=20, max_bytes=4096))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, payload = data[0], data[1:]
    encoding = ENCODINGS[selector % len(ENCODINGS)]
    limits = LIMITS[(selector // len(ENCODINGS)) % len(LIMITS)]
    try:
        value, used = decode(payload, encoding, limits)
    except CodecError:
        return
    try:
        encode(value, used, limits)
    except CodecError:
        return


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

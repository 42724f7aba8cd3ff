"""Every DIRAC 9.1.22 codec vector, both directions, DEncode and JSON.

Encoding must give DIRAC's bytes exactly; decoding DIRAC's bytes must give what DIRAC decodes (compared by
``repr``, which tells tuples from lists, datetimes from dates and NaN from anything); where DIRAC refuses to
encode, we raise CodecError. Detection (``encoding=None``) must pick the right codec for every vector too.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from rpcframework.codec import Encoding, decode, encode
from rpcframework.errors import CodecError

pytestmark = pytest.mark.timeout(60)

_NAMES = {"datetime": datetime, "nan": float("nan"), "inf": float("inf")}
_CODECS = [(Encoding.DENCODE, "dencode"), (Encoding.JSON, "json")]


def _evaluate(text: str) -> Any:
    return eval(text, dict(_NAMES))  # the vectors' own repr() text, from our data directory


def _wire(vector: dict[str, Any], key: str) -> bytes:
    text: str = vector[key]
    return text.encode("latin-1") if key == "dencode" else text.encode("utf-8")


@pytest.mark.parametrize(("encoding", "key"), _CODECS, ids=["dencode", "json"])
def test_encode_matches_dirac(vector: dict[str, Any], encoding: Encoding, key: str) -> None:
    value = _evaluate(vector["python"])
    if key in vector:
        assert encode(value, encoding) == _wire(vector, key)
    else:
        assert f"{key}_error" in vector
        with pytest.raises(CodecError):
            encode(value, encoding)


@pytest.mark.parametrize(("encoding", "key"), _CODECS, ids=["dencode", "json"])
def test_decode_matches_dirac(vector: dict[str, Any], encoding: Encoding, key: str) -> None:
    if key not in vector:
        pytest.skip(f"DIRAC cannot encode this value as {key}")
    value, used = decode(_wire(vector, key), encoding)
    assert used is encoding
    assert repr(value) == vector[f"{key}_decoded"]


@pytest.mark.parametrize(("encoding", "key"), _CODECS, ids=["dencode", "json"])
def test_detection_picks_the_right_codec(vector: dict[str, Any], encoding: Encoding, key: str) -> None:
    if key not in vector:
        pytest.skip(f"DIRAC cannot encode this value as {key}")
    value, used = decode(_wire(vector, key))
    assert used is encoding
    assert repr(value) == vector[f"{key}_decoded"]


@pytest.mark.parametrize(("encoding", "key"), _CODECS, ids=["dencode", "json"])
def test_reencoding_dirac_output_is_stable(vector: dict[str, Any], encoding: Encoding, key: str) -> None:
    """What we decode from DIRAC encodes back to DIRAC's bytes, except where DIRAC's decoding is lossy."""
    if key not in vector:
        pytest.skip(f"DIRAC cannot encode this value as {key}")
    value, _ = decode(_wire(vector, key), encoding)
    if vector["name"] == "datetime with us" and key == "json":
        value = value.replace(microsecond=0)
    assert encode(value, encoding) == _wire(vector, key)


def test_all_37_vectors_are_present(vector: dict[str, Any]) -> None:
    assert "python" in vector
    assert "dencode" in vector or "dencode_error" in vector
    assert "json" in vector or "json_error" in vector

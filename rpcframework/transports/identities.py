"""Peer identities from the chain OpenSSL verified, cached by the chain the peer sent; shared by both TLS back ends.

The identity of a peer (its DN, proxy and limited status, DIRAC group, expiry) is read **only** from the chain that
OpenSSL built and verified, never from the certificates as the peer sent them: a peer can put anything in what it
sends (another principal's public certificate between its proxy and its own certificate), and OpenSSL ignores what it
does not need to build a path. The back ends give the verified chain in two ways:

- pyOpenSSL hands it over after a full handshake (``get_verified_chain``);
- otherwise (M2Crypto, or a resumed session) the back end runs OpenSSL's verifier once more over what the
  peer sent, with the context's own store and flags, and takes the chain that verification built.

Building an identity (the verification, DN formatting, the chain walk) costs about as much Python CPU as the rest of
a new connection, and the same client presents the same proxy on connection after connection, so identities are
cached. The key is the chain as sent: a full handshake under a context has just verified exactly that chain, and a
resumed one reuses a session only a full handshake under the same context could make, so the identity OpenSSL would
build for that key under that context is always the same. An entry made under another context (before a credential,
CA or CRL reload, or a session cache renewal) is never used and holds that context only weakly.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from cryptography import x509

from rpcframework.security.x509 import PeerIdentity
from rpcframework.transports.certs import peer_identity

__all__ = ["IdentityCache"]

ContextT = TypeVar("ContextT")


class IdentityCache(Generic[ContextT]):
    """Peer identities by (context, chain as sent), bounded (LRU); ``size`` 0 turns caching off."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, tuple[weakref.ref[ContextT], PeerIdentity]] = OrderedDict()
        self._lock = threading.Lock()

    def identity(
        self,
        ctx: ContextT,
        sent: Hashable,
        address: tuple[str, int],
        verified: Callable[[], Sequence[x509.Certificate]],
    ) -> PeerIdentity:
        """The identity for the chain ``sent`` (any hashable form of it) verified under ``ctx``.

        ``verified`` gives the chain OpenSSL verified, leaf first; it is called only when nothing is cached.
        """
        with self._lock:
            found = self._entries.get(sent)
            if found is not None and found[0]() is ctx:
                self._entries.move_to_end(sent)
                return dataclasses.replace(found[1], address=address)
        identity = peer_identity(verified(), address)  # raises for a chain we cannot read: nothing cached
        if self._size > 0:
            with self._lock:
                self._entries[sent] = (weakref.ref(ctx), identity)
                self._entries.move_to_end(sent)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        return identity

    def __len__(self) -> int:
        return len(self._entries)

"""rpcframework.security: X.509 inspection (grid DNs, proxies), credential lookup and a development CA.

The submodules are the API (``rpcframework.security.x509``, ``.devca``, ``.locations``); the names most callers need
are re-exported here.
"""

from __future__ import annotations

from rpcframework.security.x509 import PeerIdentity, format_dn, identity_from_chain, load_pem_chain

__all__ = ["PeerIdentity", "format_dn", "identity_from_chain", "load_pem_chain"]

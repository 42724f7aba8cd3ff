"""Who may change our private key files: a key or proxy file that other users can write is refused.

Anyone who can write a private key file (a proxy file holds one too) can replace it with their own key and
certificate, and our process then acts as whoever they chose. Globus refuses a key file that is not private to its
owner, and DIRAC's tools refuse a proxy others can change, so we refuse a key or proxy file writable by its group or
by others (``chmod 600 FILE`` fixes it). A key readable by others is not refused (containers and shared service
accounts often have group- or world-readable secrets), but logged as a warning: anyone on the machine can copy it.
Checked every time a key is loaded: by each TLS back end when it builds a context, and by the client's pre-flight
check of its credential.
"""

from __future__ import annotations

import logging
import os
import stat

from rpcframework.errors import CredentialsError

__all__ = ["check_key_file_mode"]

logger = logging.getLogger(__name__)


def check_key_file_mode(path: str | os.PathLike[str]) -> None:
    """Refuse a private key (or proxy) file that users other than its owner can write; warn when others can read
    it. A file that cannot be stat'ed is left to the caller's read, which reports it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        return
    permissions = stat.S_IMODE(mode)
    if permissions & (stat.S_IWGRP | stat.S_IWOTH):
        who = "every user" if permissions & stat.S_IWOTH else "its group"
        raise CredentialsError(
            f"{os.fspath(path)} holds a private key and is writable by {who} (mode {permissions:04o}): whoever can "
            f"write it can replace the key and act as you, so it is refused (as DIRAC and Globus do); run "
            f"`chmod 600 {os.fspath(path)}`"
        )
    if permissions & stat.S_IROTH:
        logger.warning(
            "%s holds a private key and is readable by every user (mode %04o): anyone on this machine can copy it;"
            " run `chmod 600 %s`",
            os.fspath(path),
            permissions,
            os.fspath(path),
        )

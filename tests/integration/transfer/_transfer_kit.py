"""Shared pieces for the end-to-end file-transfer tests: a store handler and a registry admitting the dev user."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from rpcframework import S_ERROR, S_OK, RequestHandler
from rpcframework.transfer import FileHelper, compression_for

REGISTRY = {
    "Users": {"dev-user": {"DN": "/DC=org/DC=rpcframework/OU=Users/CN=dev-user"}},
    "Groups": {"users": {"Users": "dev-user", "Properties": "NormalUser"}},
    "DefaultGroup": "users",
}
MAX_SIZE = 40 * 1024 * 1024


def safe_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"bad file id {name!r}")
    return name


class StoreHandler(RequestHandler):
    """Stores uploads in ``store`` (set per test); bulks are extracted into ``store/<bulk name>``."""

    store: ClassVar[Path] = Path("/nonexistent")
    auth_transfer_fromClient: ClassVar[list[str]] = ["authenticated"]
    auth_transfer_toClient: ClassVar[list[str]] = ["authenticated"]
    auth_transfer_bulkFromClient: ClassVar[list[str]] = ["authenticated"]
    auth_transfer_bulkToClient: ClassVar[list[str]] = ["authenticated"]
    auth_transfer_listBulk: ClassVar[list[str]] = ["authenticated"]

    def transfer_fromClient(self, fileId: str, token: str, fileSize: int, helper: FileHelper) -> Any:
        return helper.networkToFile(self.store / safe_name(fileId), max_size=MAX_SIZE)

    def transfer_toClient(self, fileId: str, token: str, helper: FileHelper) -> Any:
        path = self.store / safe_name(fileId)
        if not path.is_file():
            return helper.sendError(f"No such file {fileId}")
        return helper.fileToNetwork(path)

    def transfer_bulkFromClient(self, bulkId: str, token: str, bulkSize: int, helper: FileHelper) -> Any:
        target = self.store / safe_name(bulkId)
        target.mkdir(exist_ok=True)
        return helper.networkToBulk(target, compression_for(bulkId), max_size=MAX_SIZE)

    def transfer_bulkToClient(self, bulkId: str, token: str, helper: FileHelper) -> Any:
        source = self.store / safe_name(bulkId)
        if not source.is_dir():
            return helper.sendError(f"No such bulk {bulkId}")
        return helper.bulkToNetwork(sorted(source.iterdir()), compression_for(bulkId))

    def transfer_listBulk(self, bulkId: str, token: str, helper: FileHelper) -> Any:
        source = self.store / safe_name(bulkId)
        if not source.is_dir():
            return S_ERROR(f"No such bulk {bulkId}")
        return S_OK(sorted(p.name for p in source.iterdir()))


class UploadOnlyHandler(RequestHandler):
    store: ClassVar[Path] = Path("/nonexistent")
    limit: ClassVar[int] = 1024
    auth_transfer_fromClient: ClassVar[list[str]] = ["all"]

    def transfer_fromClient(self, fileId: str, token: str, fileSize: int, helper: FileHelper) -> Any:
        return helper.networkToFile(self.store / safe_name(fileId), max_size=self.limit)

"""The embedded default keeps the ledger (argon2 hashes, raw callbacks), the broker's message
files and the console's secret in its data directory: only the user recpipe runs as may
read them. Every recpipe process starts with umask 077; the data directory is made 0700, or
narrowed to it when an earlier version made it wider."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def private_process() -> None:
    """Files and folders this process makes are its user's alone (mkstemp's already are)."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """`path` made 0700, or narrowed to 0700 if it is ours (never a shared, sticky folder
    such as /tmp)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = path.stat()
    if found.st_uid == os.getuid() and not found.st_mode & stat.S_ISVTX:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> None:
    """Narrow an existing file of ours to 0600 (one an earlier version made 0644)."""
    try:
        found = path.stat()
        if found.st_uid == os.getuid() and found.st_mode & 0o077:
            path.chmod(0o600)
    except FileNotFoundError:
        pass


def kept_secret(data_dir: Path, name: str) -> str | None:
    """A random secret kept in the data directory as `name` (mode 0600), made on first use
    by whichever process asks first; None when the one kept there is too short (not ours,
    or cut short)."""
    path = private_dir(data_dir) / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48))
    kept = path.read_text(encoding="ascii").strip()
    return kept if len(kept) >= 32 else None

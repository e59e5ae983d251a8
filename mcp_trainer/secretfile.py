"""Secrets kept in files only their owner may read: the HTTP token, the key that signs saved models.

A secret file is created on first use (random, mode 0600, never through a link) and refused afterwards
when anyone else could have read or replaced it: a link, not a regular file, another user's file, a
mode that lets others read or write it. A secret that could have been read or replaced is no secret.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

__all__ = ["SecretFileError", "ensure_secret", "load_or_create_secret"]

log = logging.getLogger(__name__)
_MIN_CHARS = 16


class SecretFileError(Exception):
    """A secret file cannot be used; the message says why and how to fix it."""


def load_or_create_secret(path: Path, what: str) -> str:
    """The secret in `path`, created (random, mode 0600) when the file does not exist. `what` names it
    in messages ("token", "model signing key").

    Raises SecretFileError for a file that is a link, not a regular file, readable or writable by others,
    owned by another user, or holding fewer than 16 characters."""
    return ensure_secret(path, what)[0]


def ensure_secret(path: Path, what: str) -> tuple[str, bool]:
    """`load_or_create_secret`, saying whether this call created the file (True) or read it (False).

    The secret is written whole to a temporary file, then linked into place (link fails if the name
    exists): two processes starting at once never see the file empty, and exactly one secret wins."""
    if path.exists() or path.is_symlink():
        return _read(path, what), False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process created it first: use theirs
            return _read(path, what), False
    finally:
        tmp.unlink(missing_ok=True)
    log.info("generated a %s in %s", what, path)
    return _read(path, what), True


def _read(path: Path, what: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise SecretFileError(
            f"The {what} file {path} cannot be opened: {exc.strerror} (is it a link?)."
        ) from None
    with os.fdopen(fd, encoding="utf-8") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(f"The {what} file {path} is not a regular file.")
        if info.st_uid != os.getuid():
            raise SecretFileError(f"The {what} file {path} belongs to another user; use a file of your own.")
        if info.st_mode & 0o077:
            raise SecretFileError(
                f"The {what} file {path} can be read or written by others (mode {info.st_mode & 0o777:o}); "
                f"run: chmod 600 {path}"
            )
        secret = f.read(4096).strip()
    if len(secret) < _MIN_CHARS:
        raise SecretFileError(f"The {what} file {path} holds no {what} of at least {_MIN_CHARS} characters.")
    return secret

"""Pages of listings: the page size bound and the opaque cursors of the task listing."""

from __future__ import annotations

import base64
import binascii

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.ids import check_task_id

__all__ = ["MAX_PAGE", "Place", "check_limit", "decode_cursor", "encode_cursor"]

MAX_PAGE = 200
_ARCHIVED = "archived:"
Place = tuple[bool, int, str]  # in the archive (after every live task), created_ns, task_id


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE} (got {limit}).")


def encode_cursor(created_ns: int, task_id: str, *, archived: bool = False) -> str:
    """The cursor of the page after a task: its place in the listing's order (live tasks newest first,
    then archived ones newest first), opaque to callers."""
    raw = f"{_ARCHIVED if archived else ''}{created_ns}:{task_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Place:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        archived = raw.startswith(_ARCHIVED)
        ns, task_id = raw.removeprefix(_ARCHIVED).split(":", 1)
        return archived, int(ns), check_task_id(task_id)
    except (ValueError, binascii.Error, UnicodeDecodeError, InvalidInputError):
        raise InvalidInputError(
            "cursor is not one this server issued.",
            "Pass next_cursor from the previous page unchanged, or omit it.",
        ) from None

"""Pages of listings: the page size bound and the opaque cursors of the task listing."""

from __future__ import annotations

import base64
import binascii

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.ids import check_task_id
from mcp_trainer.records import TaskRecord

__all__ = ["MAX_PAGE", "check_limit", "decode_cursor", "encode_cursor"]

MAX_PAGE = 200


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE} (got {limit}).")


def encode_cursor(r: TaskRecord) -> str:
    """The cursor of the page after `r`: its place in newest-first order, opaque to callers."""
    return base64.urlsafe_b64encode(f"{r.created_ns}:{r.task_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ns, task_id = raw.split(":", 1)
        return int(ns), check_task_id(task_id)
    except (ValueError, binascii.Error, UnicodeDecodeError, InvalidInputError):
        raise InvalidInputError(
            "cursor is not one this server issued.",
            "Pass next_cursor from the previous page unchanged, or omit it.",
        ) from None

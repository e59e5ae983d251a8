"""The dashboard's one page, assembled from its assets: the same HTML for the web and for the MCP App.

The page is a single HTML document with its style sheet and scripts inline, so that an MCP host, which
renders a `ui://` resource from its text alone, gets everything it needs, and the web page needs no second
request. The two renderings differ only in `data-transport` on the root element, which picks the script's
adapter (the JSON API over HTTP, or the tools through the host bridge). The web page's Content-Security-
Policy allows exactly these inline blocks, by hash, and nothing from elsewhere.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Literal

__all__ = ["Page", "Transport", "page"]

Transport = Literal["http", "mcp-app"]
_PLACES = ("css", "transports", "dashboard")  # {{name}} in index.html, filled from the asset files
_FILES = {"css": "dashboard.css", "transports": "transports.js", "dashboard": "dashboard.js"}


@dataclass(frozen=True)
class Page:
    html: str
    csp: str  # the Content-Security-Policy the web page is served with


def _asset(name: str) -> str:
    return (resources.files(__package__) / "assets" / name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.cache
def page(transport: Transport) -> Page:
    """The page for `transport`, and the policy that lets its inline style and scripts run, nothing else."""
    parts = {name: _asset(_FILES[name]) for name in _PLACES}
    for name, text in parts.items():
        if "</script" in text.lower() or "</style" in text.lower():  # would end its inline block early
            raise ValueError(f"dashboard asset {_FILES[name]} closes its own inline block")
    html = _asset("index.html").replace("{{transport}}", transport)
    for name, text in parts.items():
        html = html.replace("{{" + name + "}}", text)
    scripts = " ".join(_hash(parts[name]) for name in ("transports", "dashboard"))
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src {_hash(parts['css'])}",
            "img-src data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return Page(html=html, csp=csp)

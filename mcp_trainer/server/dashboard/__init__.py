"""The live dashboard, one page two ways in: a web page served beside /mcp (`web.py`) and an MCP App
(`app.py`); `page.py` assembles the page from `assets/` (HTML, CSS and two scripts: no build step, no CDN)."""

from mcp_trainer.server.dashboard.app import DASHBOARD_URI
from mcp_trainer.server.dashboard.web import DashboardWeb

__all__ = ["DASHBOARD_URI", "DashboardWeb"]

"""The MCP face: tools that validate, call the TrainingService, and shape results. No training logic.

`app` builds the server; one module per group of tools (`task_tools`, `model_tools`, `finetune_tools`,
`catalog_tools`); `arguments` and `schema` make every tool's parameters from one definition and refuse
bad arguments in words an agent can act on. `resources` (the trainer:// resources), `resource_handlers`,
`completion` and `subscriptions` let a client read and watch what the tools report.
"""

from mcp_trainer.server.app import ServerConfig, build_server
from mcp_trainer.server.task_tools import MAX_WAIT_S

__all__ = ["MAX_WAIT_S", "ServerConfig", "build_server"]

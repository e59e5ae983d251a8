"""The Python API (`TrainingService`), the same core the MCP server uses."""

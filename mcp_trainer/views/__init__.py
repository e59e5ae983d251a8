"""What the Python API and the MCP tools return: compact views of tasks, the queue and saved models."""

"""The queue engine: task files (store), who executes (owner), what runs next (scheduler), how a task
runs and stops (executor, local, worker), and the lifecycle's rules (outcome). It never imports `mcp`,
and it imports the trainers only inside worker processes."""

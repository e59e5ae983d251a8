"""The user's own script as a task: a child process of the worker, watched, reported on, ended for real."""

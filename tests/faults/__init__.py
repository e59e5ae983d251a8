"""The fault-injection suite: see conftest.py."""

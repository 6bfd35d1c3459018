"""System tests: a real mosquitto, a running kiosk or the real daemon, subprocesses.

Everything here is marked ``system`` by ``tests/conftest.py``."""

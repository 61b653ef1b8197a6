"""The fixtures of tests/pseudonymiser, defined in ``oprf_harness`` (a module with a name of
its own: test modules import its helpers, and ``conftest`` is a name every folder has)."""

from oprf_harness import clock, oprf_network, services

__all__ = ["clock", "oprf_network", "services"]

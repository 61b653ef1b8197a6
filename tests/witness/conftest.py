"""The fixtures of tests/witness, defined in ``witness_harness`` (a module with a name of
its own: test modules import its helpers, and ``conftest`` is a name every folder has)."""

from witness_harness import rig

__all__ = ["rig"]

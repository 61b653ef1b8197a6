"""The fixtures of tests/clients, defined in ``client_harness`` (a module with a name of
its own: test modules import its helpers, and ``conftest`` is a name every folder has)."""

from client_harness import hub, template_dir

__all__ = ["hub", "template_dir"]

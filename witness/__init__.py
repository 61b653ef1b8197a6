"""The always-on witness: ``schakel witness serve``, C2SP tlog-witness's add-checkpoint.

* :mod:`witness.config`: one frozen configuration, from ``SCHAKEL_WITNESS_*`` and options.
* :mod:`witness.store`: the latest checkpoint per log and the evidence kept, in SQLite or
  PostgreSQL; a checkpoint only ever advances (compare-and-set, and a trigger).
* :mod:`witness.core`: the use-case: verify, check consistency, cosign, keep, or refuse
  with the status the specification gives; evidence when the log forked.
* :mod:`witness.app`: the aiohttp adapter (routes, problems, health, metrics).
* :mod:`witness.cli`: ``schakel witness init | import | serve``.

``witness`` imports ``protocol`` and ``keys``, never ``hub`` or ``clients``.
"""

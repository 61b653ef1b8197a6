"""A pseudonymisation service: one share of the network's split OPRF key.

Two of these run, by two different parties (never the hub's operator). Each answers an
organisation's batch of blinded identifiers with its share applied and a DLEQ proof,
after checking the organisation's certificate, signature, freshness and limits; it
never sees an identifier, and it counts (never records) what each organisation asks.

::

    config.py    ServiceConfig and Limits, from the environment (SCHAKEL_PSEUDONYMISER_*)
    errors.py    the problems it answers with (RFC 9457)
    store.py     the one module that talks to the database (nonces, counters, audit, CRL)
    service.py   the use-cases: evaluate a request, accept a CRL
    web.py       the aiohttp application: routes, middlewares, metrics, serving
    logs.py      structured logs that can not carry elements, identifiers or keys
    cli.py       ``schakel pseudonymiser``

It imports :mod:`protocol` and :mod:`keys`, never :mod:`hub` or :mod:`clients`
(``tests/test_architecture.py``). Wire formats: ``docs/protocol.md``, "Pseudonymisation
services".
"""

"""The ``schakel`` command: one program for every role.

This package only assembles the command groups that live with their owners
(``keys``/``clients`` for the network authority and the organisations, ``hub``
for the operator) and the local demo network, so that ``hub`` and ``clients``
never import each other.
"""

"""Schakel's pure core: wire objects, canonical encoding, cryptography, proofs.

Nothing in this package touches the network, a database, a file, the
environment, the clock or the random source by itself: time and randomness
are arguments, so every function can be tested with fixed vectors.
"""

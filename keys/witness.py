"""An always-on witness's keys: its witness key, the pinned root, its witness certificate.

One directory (mode 0700)::

    signing.key               the Ed25519 witness key, encrypted (kind ed25519); it signs
                              cosignatures and its own request, nothing else
    request.json              the witness request (protocol.witness) for the authority
    root.pem                  the pinned network root, imported once; never replaced
    certificate.json          the witness certificate, once issued
    state.json                network, organisation, witness name, pinned root and
                              certificate fingerprints; authenticated like the others

The authority certifies the request with ``schakel authority certify-witness``.

An organisation's client is a witness too: its witness directory is ``witness/`` inside
the organisation's key directory (:meth:`WitnessKeys.create_beside`), under the same
passphrase and KDF costs, pinned to the organisation's root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from keys.errors import KeyStoreError
from keys.keyfile import KdfParams, Rng, read_bounded, write_public_file
from keys.organisation import PartyKeys
from protocol.encoding import canonical_json, loads_strict
from protocol.types import NetworkId, OrgId
from protocol.witness import (
    MAX_WITNESS_BYTES,
    WitnessCertificate,
    WitnessRequest,
    create_witness_request,
    verify_witness_certificate,
    witness_name,
)

ORG_WITNESS_DIR = "witness"


def read_witness_json(path: Path) -> object:
    """A small JSON file of a witness (request, certificate), read strictly."""
    return loads_strict(read_bounded(path, MAX_WITNESS_BYTES), max_bytes=MAX_WITNESS_BYTES)


class WitnessKeys(PartyKeys):
    """An always-on witness's key directory."""

    STATE_FORMAT: ClassVar[str] = "schakel-witness"
    __slots__ = ()

    @classmethod
    def create(
        cls,
        directory: Path | str,
        network: NetworkId,
        org: OrgId,
        passphrase: bytes,
        params: KdfParams,
        *,
        name: str | None = None,
        rng: Rng = os.urandom,
        allow_weak: bool = False,
    ) -> WitnessKeys:
        """Generate the witness key and its request; ``name`` defaults to the org's."""
        chosen = witness_name(network, org) if name is None else name
        extra = {"name": chosen, "witness_cert": None}
        return cls._create(
            directory, network, org, passphrase, params, rng=rng, allow_weak=allow_weak, extra=extra
        )

    @classmethod
    def create_beside(cls, party: PartyKeys, *, now: int, rng: Rng = os.urandom) -> WitnessKeys:
        """The witness directory of an organisation, in ``<its keys>/witness``, its root
        pinned; the organisation's passphrase and KDF costs (accepted when it was made)."""
        keys = cls.create(
            party.directory / ORG_WITNESS_DIR, party.network, party.org, party._passphrase,
            party._params, rng=rng, allow_weak=True,
        )  # fmt: skip
        keys.pin_root(party.root.der, now=now)
        return keys

    @classmethod
    def open_beside(cls, party: PartyKeys) -> WitnessKeys | None:
        """The organisation's witness directory, or None when it has none."""
        directory = party.directory / ORG_WITNESS_DIR
        if not (directory / "signing.key").exists():
            return None
        keys = cls.open(directory, party._passphrase)
        if (keys.network, keys.org) != (party.network, party.org):
            raise KeyStoreError(f"{directory} is the witness of another organisation")
        return keys

    @property
    def certified(self) -> bool:
        """Whether a witness certificate was imported."""
        return self._state["witness_cert"] is not None

    def _write_request(self) -> None:
        request = create_witness_request(self.signing_key, self.network, self.org, self.name)
        write_public_file(self._dir / "request.json", canonical_json(request.to_wire()) + b"\n")

    @property
    def name(self) -> str:
        """The key name of this witness's cosignature lines."""
        return str(self._state["name"])

    @property
    def request(self) -> WitnessRequest:
        return WitnessRequest.from_wire(read_witness_json(self._dir / "request.json"))

    def import_witness_certificate(self, data: bytes, *, now: int) -> WitnessCertificate:
        """Store the witness certificate after checking the pinned root signed it for us."""
        cert = WitnessCertificate.from_wire(loads_strict(data, max_bytes=MAX_WITNESS_BYTES))
        verify_witness_certificate(cert, self._root_at(now), now=now, crl=None)
        request = self.request
        if cert.key != request.key:
            raise KeyStoreError("the witness certificate is for another key than this directory's")
        if (cert.org, cert.name, cert.network) != (self.org, self.name, self.network):
            raise KeyStoreError(
                f"the witness certificate is for {cert.name!r} of {cert.org!r}, "
                f"not {self.name!r} of {self.org!r}"
            )
        write_public_file(self._dir / "certificate.json", canonical_json(cert.to_wire()) + b"\n")
        self._update(witness_cert=cert.fingerprint)
        return cert

    @property
    def witness_certificate(self) -> WitnessCertificate:
        """The imported certificate; ``KeyStoreError`` when none was imported yet."""
        if self._state["witness_cert"] is None:
            raise KeyStoreError("no witness certificate yet: import the one the authority issued")
        path = self._dir / "certificate.json"
        cert = WitnessCertificate.from_wire(read_witness_json(path))
        if cert.fingerprint != self._state["witness_cert"]:
            raise KeyStoreError(f"{path} is not the witness certificate that was imported")
        return cert

"""A pseudonymisation service's keys: its OPRF key share, key request and key statement.

One directory (mode 0700) per key share::

    share.key         the key share k_i, a 32-byte ristretto255 scalar, encrypted (kind oprf-key)
    request.json      the key request for the authority (public key and proof of possession)
    root.pem          the pinned network root, once imported; never replaced
    statement.json    the authority's key statement for this share, once imported
    state.json        network, service, share, pinned root and statement fingerprints;
                      authenticated with a key derived from the share

The share is generated here and never leaves the directory: the authority certifies its
public key from the request (``schakel authority oprf-certify``), without a dealer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keys.authority import PEM_CERTIFICATE
from keys.errors import KeyFileError, KeyStoreError
from keys.keyfile import (
    KIND_OPRF_KEY,
    KdfParams,
    Rng,
    make_private_dir,
    read_bounded,
    read_key_file,
    read_state,
    state_mac_key,
    write_key_file,
    write_public_file,
    write_state,
)
from protocol import oprf
from protocol import ristretto as group
from protocol.certificate import MAX_CERT_BYTES, RootCertificate, load_root, pem_decode, pem_encode
from protocol.encoding import canonical_json, fingerprint, loads_strict
from protocol.errors import ProtocolError
from protocol.oprfkeys import (
    OprfKeyRequest,
    OprfKeyStatement,
    make_key_request,
    verify_key_statement,
)
from protocol.ristretto import Element, Scalar
from protocol.types import NetworkId, ServiceName

STATE_FORMAT = "schakel-pseudonymiser"
MAX_JSON_FILE_BYTES = 16 * 1024


def _der(data: bytes) -> bytes:
    return pem_decode(data, PEM_CERTIFICATE) if data.lstrip().startswith(b"-----BEGIN") else data


class ServiceKeys:
    """An opened key directory of one pseudonymisation service."""

    __slots__ = ("_dir", "_key", "_mac_key", "_state")

    def __init__(self, directory: Path, key: Scalar, state: dict[str, Any]) -> None:
        self._dir = directory
        self._key = key
        self._mac_key = state_mac_key(key)
        self._state = state

    def __repr__(self) -> str:
        return f"ServiceKeys(directory={str(self._dir)!r}, service={self.service!r})"

    @classmethod
    def create(
        cls,
        directory: Path | str,
        network: NetworkId,
        service: ServiceName,
        share: int,
        passphrase: bytes,
        params: KdfParams,
        *,
        rng: Rng = os.urandom,
        allow_weak: bool = False,
    ) -> ServiceKeys:
        """Generate a key share and its key request in a new, empty directory."""
        if params.weak and not allow_weak:
            raise KeyFileError("refusing KDF parameters below production strength")
        key = oprf.random_scalar(rng(group.UNIFORM_BYTES))
        request = make_key_request(key, network, service, share, r=oprf.random_scalar(rng(64)))
        path = make_private_dir(directory, must_be_empty=True)
        write_key_file(
            path / "share.key", KIND_OPRF_KEY, key, passphrase, params, allow_weak=True, rng=rng
        )
        write_public_file(path / "request.json", canonical_json(request.to_wire()) + b"\n")
        state = {
            "format": STATE_FORMAT,
            "v": 1,
            "network": request.network,
            "service": request.service,
            "share": request.share,
            "root": None,
            "statement": None,
        }
        keys = cls(path, key, state)
        keys._save()
        return keys

    @classmethod
    def open(cls, directory: Path | str, passphrase: bytes) -> ServiceKeys:
        path = Path(directory)
        if not (path / "share.key").exists():
            raise KeyStoreError(f"{path} is not a pseudonymisation service's key directory")
        key = group.decode_scalar(read_key_file(path / "share.key", passphrase, kind=KIND_OPRF_KEY))
        state = read_state(path / "state.json", state_mac_key(key), format=STATE_FORMAT)
        return cls(path, key, state)

    # -- what it holds ---------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def network(self) -> NetworkId:
        return NetworkId(self._state["network"])

    @property
    def service(self) -> ServiceName:
        return ServiceName(self._state["service"])

    @property
    def share(self) -> int:
        return int(self._state["share"])

    @property
    def key(self) -> Scalar:
        """The key share itself: keep it in this process's memory only."""
        return self._key

    @property
    def public_key(self) -> Element:
        return oprf.public_key(self._key)

    @property
    def request(self) -> OprfKeyRequest:
        return OprfKeyRequest.from_wire(self._read_json("request.json"))

    @property
    def root(self) -> RootCertificate:
        if self._state["root"] is None:
            raise KeyStoreError("no network root is pinned yet: import the key statement first")
        der = _der(read_bounded(self._dir / "root.pem", 2 * MAX_CERT_BYTES))
        if fingerprint(der) != self._state["root"]:
            raise KeyStoreError(f"{self._dir / 'root.pem'} is not the root that was pinned")
        return load_root(der, now=int(self._state["root_pinned_at"]))

    @property
    def statement(self) -> OprfKeyStatement | None:
        """The imported key statement (checked when it was imported), or None."""
        if self._state["statement"] is None:
            return None
        data = self._read_json("statement.json")
        if fingerprint(canonical_json(data)) != self._state["statement"]:
            raise KeyStoreError(f"{self._dir / 'statement.json'} is not the one imported")
        return OprfKeyStatement.from_wire(data)

    # -- importing the authority's answer -----------------------------------------------------

    def import_statement(
        self, statement: OprfKeyStatement, root_pem_or_der: bytes, *, now: int
    ) -> None:
        """Pin the root (the first time) and keep ``statement`` if it certifies this share."""
        root = load_root(_der(root_pem_or_der), now=now)
        pinned = self._state["root"]
        if pinned is not None and pinned != root.fingerprint:
            raise KeyStoreError(f"refusing to replace the pinned network root {pinned}")
        verify_key_statement(statement, root, now=now)
        mine = (self.network, self.service, self.share, self.public_key)
        theirs = (statement.network, statement.service, statement.share, statement.public_key)
        if mine != theirs:
            raise KeyStoreError("the statement certifies another network, service, share or key")
        wire = canonical_json(statement.to_wire())
        if pinned is None:
            write_public_file(self._dir / "root.pem", pem_encode(root.der, PEM_CERTIFICATE))
        write_public_file(self._dir / "statement.json", wire + b"\n")
        self._state = {
            **self._state,
            "root": root.fingerprint,
            "root_pinned_at": self._state.get("root_pinned_at") or now,
            "statement": fingerprint(wire),
        }
        self._save()

    # -- helpers -------------------------------------------------------------------------

    def _read_json(self, name: str) -> Any:
        try:
            return loads_strict(read_bounded(self._dir / name, MAX_JSON_FILE_BYTES))
        except ProtocolError as exc:
            raise KeyStoreError(f"{self._dir / name} is malformed: {exc}") from exc

    def _save(self) -> None:
        write_state(self._dir / "state.json", self._state, self._mac_key)

"""What a saga action sees: its parameters, earlier outputs, and the Nexus services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from impl.datastore import Datastore
    from impl.nexus.nexus import Nexus


class SagaContext:
    """Parameters, recorded outputs (reused on replay) and services for one saga."""

    def __init__(self, saga_id: str, saga_name: str, params: dict[str, Any], outputs: dict[str, Any], nexus: Nexus) -> None:
        self.saga_id = saga_id
        self.saga_name = saga_name
        self.params = params
        self.outputs = outputs
        self.nexus = nexus

    @property
    def datastore(self) -> Datastore:
        return self.nexus.datastore

    def lookup(self, name: str) -> Any:
        """The recorded output of an earlier node (KeyError if it never succeeded)."""
        return self.outputs[name]

    def new_id(self) -> str:
        return self.nexus.ids.new()

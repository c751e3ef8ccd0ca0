"""UUID generation, optionally seeded so that step-by-step runs are reproducible."""

from __future__ import annotations

import random
import threading
import uuid


class IdSource:
    """Hands out UUID strings; with a seed the sequence is deterministic."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed) if seed is not None else None
        self._lock = threading.Lock()

    def new(self) -> str:
        if self._rng is None:
            return str(uuid.uuid4())
        with self._lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

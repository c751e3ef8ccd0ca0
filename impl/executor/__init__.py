"""A durable saga executor with Steno's semantics (SPEC "Saga semantics", §5 crash cases)."""

"""Nexus background tasks (SPEC §4.7–§4.9), each runnable on demand or periodically."""

"""Simulated sled-agents, their VMMs (Propolis) and the switch (SPEC §2.1, §2.5, §4.1)."""

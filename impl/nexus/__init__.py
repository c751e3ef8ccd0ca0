"""A Nexus replica: external API, internal report path, background tasks, saga executor."""

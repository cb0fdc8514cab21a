"""The sans-I/O core: ``Engine.receive(Inbound, now) -> effects``, ``due(now)``,
``next_deadline()``, and its parts (transactions, faults, gate and limits, the journal as
an observer of events). No asyncio, sockets or YAML here."""

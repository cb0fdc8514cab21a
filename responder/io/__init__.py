"""The edge: sockets and processes that drive the core (UDP batches, workers). Transports
make no decisions: they hand what arrives to the engine and carry out its effects."""

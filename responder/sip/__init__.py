"""The SIP protocol as data and pure functions: codes, errors, URIs, the frozen request,
the parser, the response builder, digest authentication and the seeded derivations
(To tags, nonces, draws). Imports nothing above it."""

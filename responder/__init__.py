"""sip-responder: a stateless SIP user-agent server for tests and labs."""

__version__ = "0.1.0"

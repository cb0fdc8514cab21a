"""pytest fixtures for sip-responder (entry point ``pytest11``). Filled in below."""

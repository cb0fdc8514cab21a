"""Running it: the command line, the server (bind, announce, signals, reload), logs,
metrics and the HTTP side."""

"""The rule language: the model (every validation, once), one-line rules, the YAML loader
(FILE:LINE:COL errors) and the matcher. Imports only :mod:`responder.sip`."""

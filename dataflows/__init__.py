"""Wiring only: Bytewax dataflows built from a spec, sources and sinks."""

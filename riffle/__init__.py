"""Riffle: streaming-first analytics on Bytewax.

The importable parts live in the top-level packages named after their job
(``config``, ``operators``, ``sources``, ``sinks``, ``dataflows``, ``api``);
this package holds the command line and the local stack that wires them.
"""

__version__ = "0.1.0"

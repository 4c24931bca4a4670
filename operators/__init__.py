"""The stream logic as plain Python over plain data: no I/O, no Bytewax."""

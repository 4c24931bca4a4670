"""Online models on window values: anomaly detectors and forecasters.

Every model sees one final window value at a time, in order, and keeps a
compact picklable state: Bytewax deep-copies it at every snapshot.
"""

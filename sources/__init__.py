"""Inputs of the flow: Kafka, and the demo event generator."""

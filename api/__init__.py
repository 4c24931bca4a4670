"""The HTTP surface: metric definitions, series queries, health and Prometheus metrics."""

"""The raw archive: every valid event as hourly Parquet on Cloud Storage or a local directory."""

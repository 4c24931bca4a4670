"""Settings from the environment and the pipeline spec loaded from YAML."""

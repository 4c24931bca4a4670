"""Where window results land and how they are read back: one module per store."""

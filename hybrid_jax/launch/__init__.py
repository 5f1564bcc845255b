"""Launch helpers (multi-process on one machine); cluster scripts live in the top-level `launch/`."""

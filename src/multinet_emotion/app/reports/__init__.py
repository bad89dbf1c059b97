"""Reports: the read-only dashboard and report routes and their typed answers."""

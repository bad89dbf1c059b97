"""Classes: the instructor's classes and their join codes."""

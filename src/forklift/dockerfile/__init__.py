"""dockerfile package."""

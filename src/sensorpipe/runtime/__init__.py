"""runtime component."""

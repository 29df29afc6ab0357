"""consumer component."""

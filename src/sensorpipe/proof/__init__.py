"""Proof tools: the demo scenarios and the audit."""

"""Primitives every layer and engine may use: paths, secrets, durable file writes, processes."""

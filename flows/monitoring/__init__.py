"""Production monitoring engines: drift of logged traffic against a model's training data."""

"""The service kind's adapter: desired routing, the bentoml serve supervisor, observation of live routing."""

"""Training of model candidates: spec → job → subprocess → BentoML store + releases."""

"""BentoML services of specd: the A/B router service and its build files.

Modules here are import-light unless their name says otherwise (`ab_service`, `single_model` import
bentoml): the daemon's adapter uses `routing` to write routing files without importing BentoML.
"""

"""Typed spec models (pydantic, `extra="forbid"`): the only shape specs reach the rest of the code in."""

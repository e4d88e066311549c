"""Adapters: the only code that talks to live systems. One per resource kind: observe + apply."""

"""specd: a GitOps control plane for the data architecture of ML systems.

The `daemon` package is the control plane: spec models, compose, graph, plan, apply, git source,
the reconcile loop, metrics and the CLI. Heavy engines (torch, bentoml, prefect) are imported only by
adapters and flows at apply time, never by `validate` or `plan`.
"""

__version__ = "0.1.0"

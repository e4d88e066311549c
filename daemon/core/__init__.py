"""The pure core: compose, graph, plan, executor and the status vocabulary. No engine imports (see CONTRACTS.md)."""

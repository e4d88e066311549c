"""The runtime: the reconcile cycle, the daemon loop, the git source and watcher, metrics and the Prefect bootstrap."""

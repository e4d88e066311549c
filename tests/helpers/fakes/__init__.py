"""Fakes at our own adapter boundary and for services that cannot run here (Grafana's HTTP API)."""

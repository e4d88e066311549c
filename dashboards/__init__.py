"""Grafana dashboards and Prometheus configuration generated from the specs, and their publishing.

`derive` (pure data, light) turns table/model/service specs into dashboard specs; `render` builds Grafana
JSON with the typed grafana-foundation-sdk; `prometheus` writes the scrape config and alert rules;
`files` (embedded default, provisioning files) and `grafana_api` (a real Grafana) publish them.
"""

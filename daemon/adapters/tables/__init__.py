"""The table kind's adapter: observe Delta tables, build them in worker processes, record build metrics."""

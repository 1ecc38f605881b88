"""sloexporter: SLOs for Kubernetes platforms."""

__version__ = "0.1.0"

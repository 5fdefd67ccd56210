"""reconciler: move customers between resellers, the GitOps way."""

__version__ = "0.1.0"

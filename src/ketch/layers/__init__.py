"""Unpacked layers by chain ID: the read-only lower dirs that container roots stack."""

from ketch.layers.store import LayerStore

__all__ = ["LayerStore"]

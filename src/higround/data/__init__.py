"""Annotation readers, feature stores and batching."""

"""The custom resources as pydantic models (spec + status), condition helpers, well-known keys, CRD generation.

Imports nothing of kopf, the kubernetes client or the layers above.
"""

"""The API client a trainer reports through."""

from __future__ import annotations


def api_client():
    """In a pod: its ServiceAccount; elsewhere (tests, local runs): the kubeconfig."""
    from kubernetes import client, config  # imported here: a trainer that never reports needs no client

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()

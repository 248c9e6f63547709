"""The Kubernetes API as cardpool uses it: retried on transient errors, idempotent where it can be
(409 on create and 404 on delete are success)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from cardpool.api.keys import GROUP, VERSION

from .budget import RequestBudget, budget_from_env, is_write, record, retry_after_seconds, verb_and_resource

log = logging.getLogger("cardpool.kube")
REQUEST_TIMEOUT = 10.0
T = TypeVar("T")


class Fenced(Exception):
    """This replica no longer holds the lease: it must not write."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (0, 429, 500, 502, 503, 504)
    # urllib3's connection errors (MaxRetryError, ProtocolError, ...) are not OSErrors
    return isinstance(exc, ConnectionError | TimeoutError | OSError | urllib3.exceptions.HTTPError)


retried = retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(5),
                wait=wait_exponential(multiplier=0.2, max=5), reraise=True)


class Kube:
    """Typed API groups over one ApiClient."""

    def __init__(self, api: client.ApiClient | None = None, connections: int = 32,
                 budget: RequestBudget | None = None, user_agent: str | None = None):
        if api is None:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
            # parallel pod creation would otherwise queue on the default pool (5 per core) and reconnect
            configuration.connection_pool_maxsize = connections
            api = client.ApiClient(configuration)
        if user_agent:  # the API server's audit log then says which replica wrote
            api.user_agent = user_agent
        self.api = api
        self.fence: Callable[[], bool] = lambda: True
        """Asked right before each write is sent (after any wait for the budget): False raises Fenced. The
        operator sets it to "this replica still holds the lease", so a replica that stalled past its lease
        (paused, starved, partitioned) and wakes up sends nothing more."""
        self.budget = budget or budget_from_env()
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)

    @retried
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One request within the client's budget (QPS and burst); a 429 pauses every request of this client
        for the server's Retry-After, then this one is retried. Each try is counted by verb, resource and code."""
        try:
            return self.attempt(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 429:
                self.budget.back_off(retry_after_seconds(exc))
            raise

    def attempt(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One try within the budget, counted, not retried (for answers the caller reads itself, such as an
        eviction's 429 from a PodDisruptionBudget)."""
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)  # a hung call must not outlive leadership
        verb, resource = verb_and_resource(getattr(fn, "__name__", "call"), args)
        self.budget.acquire()
        if is_write(verb) and not self.fence():
            record(verb, resource, "fenced")
            raise Fenced(f"not leading: {verb} {resource} not sent")
        try:
            result = fn(*args, **kwargs)
        except ApiException as exc:
            record(verb, resource, str(exc.status))
            raise
        except Exception:
            record(verb, resource, "error")
            raise
        record(verb, resource, "2xx")
        return result

    def create(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Create; False when it already exists."""
        try:
            self.call(fn, *args, **kwargs)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def delete(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Delete; False when it was already gone."""
        try:
            self.call(fn, *args, **kwargs)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def patch_job_status(self, namespace: str, name: str, status: dict, resource_version: str = "") -> str:
        """Returns the resourceVersion the write produced. With `resource_version`, the write succeeds only if
        the object is still at that version (409 otherwise): a decision made on a stale view is refused."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        updated = self.call(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace,
                            "trainingjobs", name, body)
        return updated["metadata"]["resourceVersion"]

    def patch_pool_status(self, name: str, status: dict, plural: str = "cardpools") -> str:
        """A cluster-scoped object's status (a CardPool's, or a TenantQueue's with `plural` tenantqueues).
        Returns the resourceVersion the write produced."""
        updated = self.call(self.custom.patch_cluster_custom_object_status, GROUP, VERSION, plural, name,
                            {"status": status})
        return updated["metadata"]["resourceVersion"]

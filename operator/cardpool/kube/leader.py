"""Leader election on a coordination.k8s.io Lease: one replica acts, the others wait and take over when the
lease is not renewed. (kopf's peering freezes peers of equal priority, so cardpool does not rely on it.)"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import UTC, datetime, timedelta

from kubernetes.client.exceptions import ApiException

from .client import REQUEST_TIMEOUT, Kube

log = logging.getLogger("cardpool.leader")
_DEADLINE = {"_request_timeout": REQUEST_TIMEOUT}
"""A lease request on a connection that went silent must not hang the elector (it would never lead again)."""


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str = "cardpool-operator", identity: str | None = None,
                 lease_seconds: int = 15, renew_every: float = 2.0):
        self.kube, self.namespace, self.name = kube, namespace, name
        self.identity = identity or f"{socket.gethostname()}-{threading.get_native_id()}"
        self.lease_seconds, self.renew_every = lease_seconds, renew_every
        self._leading_until: datetime | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cardpool-leader", daemon=True)

    @property
    def leading(self) -> bool:
        # leadership lapses on its own if renewals stop, before another replica may take the lease
        return self._leading_until is not None and _now() < self._leading_until

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.leading:  # hand over at once instead of letting the lease expire
            try:
                lease = self.kube.coordination.read_namespaced_lease(self.name, self.namespace, **_DEADLINE)
                lease.spec.holder_identity = None
                self.kube.coordination.replace_namespaced_lease(self.name, self.namespace, lease, **_DEADLINE)
            except ApiException as exc:
                log.warning("could not release lease: %s", exc.reason)
        self._leading_until = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._try()
            except Exception as exc:  # keep electing; a failed round only means not leading for now
                log.warning("leader election round failed: %s", exc)
            self._stop.wait(self.renew_every)

    def _try(self) -> None:
        now = _now()
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        try:
            lease = self.kube.coordination.read_namespaced_lease(self.name, self.namespace, **_DEADLINE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**spec, "acquireTime": spec["renewTime"], "leaseTransitions": 0}}
            try:
                self.kube.coordination.create_namespaced_lease(self.namespace, body, **_DEADLINE)
                self._became(now)
            except ApiException as create_exc:
                if create_exc.status != 409:
                    raise
            return
        holder = lease.spec.holder_identity
        renewed = lease.spec.renew_time
        expired = renewed is None or renewed + timedelta(seconds=lease.spec.lease_duration_seconds or 15) < now
        if holder not in (self.identity, None, "") and not expired:
            if self._leading_until:
                log.warning("lost leadership to %s", holder)
            self._leading_until = None
            return
        lease.spec.holder_identity = self.identity
        lease.spec.lease_duration_seconds = self.lease_seconds
        lease.spec.renew_time = now
        if holder != self.identity:
            lease.spec.acquire_time = now
            lease.spec.lease_transitions = (lease.spec.lease_transitions or 0) + 1
        try:  # resourceVersion in the body makes a concurrent takeover fail with 409
            self.kube.coordination.replace_namespaced_lease(self.name, self.namespace, lease, **_DEADLINE)
            self._became(now)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._leading_until = None

    def _became(self, renewed: datetime) -> None:
        if not self.leading:
            log.info("%s is the leader (lease %s/%s)", self.identity, self.namespace, self.name)
        # act only for part of the lease, so a replica that stalls stops before its lease can pass on
        self._leading_until = renewed + timedelta(seconds=self.lease_seconds * 2 / 3)


"""A self-signed CA and the certificates of the local cluster, made with the openssl command.

Kept across restarts (a kubeconfig handed out stays valid); made again only when a file is missing.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import openssl

# Client identities: the file stem, the certificate subject. RBAC's bootstrap roles bind the system:* users.
CLIENTS = {
    "admin": "/O=system:masters/CN=cardpool-admin",
    "controller-manager": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
    "kwok": "/O=system:masters/CN=kwok",
}
SERVER_SANS = (
    "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
    "DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1"
)
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            _run(["req", "-x509", *EC_KEY, "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "3650",
                  "-subj", "/CN=cardpool-local-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self._leaf("apiserver", "/CN=kube-apiserver", f"subjectAltName={SERVER_SANS}\nextendedKeyUsage=serverAuth")
        for name, subject in CLIENTS.items():
            self._leaf(name, subject, "extendedKeyUsage=clientAuth")
        if not self.sa_key.exists():
            _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", self.sa_key])
        if not self.sa_pub.exists():
            _run(["pkey", "-in", self.sa_key, "-pubout", "-out", self.sa_pub])

    def _leaf(self, name: str, subject: str, extensions: str) -> None:
        if self.cert(name).exists() and self.key(name).exists():
            return
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        ext.write_text(extensions + "\n")
        _run(["req", "-new", *EC_KEY, "-keyout", self.key(name), "-out", csr, "-subj", subject])
        _run(["x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
              "-days", "3650", "-extfile", ext, "-out", self.cert(name)])
        csr.unlink()
        ext.unlink()

    def kubeconfig(self, client: str, server: str) -> str:
        """A kubeconfig for `client` with the certificates embedded, usable from any folder."""

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        return yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cardpool-local", "cluster": {
                "server": server, "certificate-authority-data": b64(self.ca_cert)}}],
            "users": [{"name": client, "user": {
                "client-certificate-data": b64(self.cert(client)),
                "client-key-data": b64(self.key(client))}}],
            "contexts": [{"name": "cardpool-local", "context": {"cluster": "cardpool-local", "user": client}}],
            "current-context": "cardpool-local",
        }, sort_keys=False)


def _run(args: list[object]) -> None:
    result = subprocess.run([openssl(), *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args[:2]))} failed: {result.stderr.strip()}")

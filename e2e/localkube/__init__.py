"""localkube: a real Kubernetes control plane on 127.0.0.1 with KWOK-simulated accelerator nodes.

Used by the e2e tests and by `make up`. It starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok built from the pinned Go modules under e2e/{k8s,etcd,kwok}.
"""

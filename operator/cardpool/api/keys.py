"""API group, versions, kinds and the label/annotation/taint keys cardpool owns."""

GROUP = "cardpool.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

CARDPOOL_PLURAL = "cardpools"
TRAININGJOB_PLURAL = "trainingjobs"
CHECKPOINT_PLURAL = "checkpoints"

"""API group, versions, kinds and the label/annotation/taint keys cardpool owns."""

GROUP = "cardpool.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

CARDPOOL_PLURAL = "cardpools"
TRAININGJOB_PLURAL = "trainingjobs"
CHECKPOINT_PLURAL = "checkpoints"
TENANTQUEUE_PLURAL = "tenantqueues"

# Labels on everything cardpool creates for a job (pods, Service, ConfigMaps).
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "cardpool"
LABEL_JOB = "cardpool.io/job"
LABEL_ATTEMPT = "cardpool.io/attempt"
LABEL_RANK = "cardpool.io/rank"
LABEL_GROUP = "cardpool.io/group"
LABEL_MODEL = "cardpool.io/accelerator"
LABEL_POOL = "cardpool.io/pool"

# Node drains: cardpool's own NoSchedule taint (its value is the fault reason) and the drain record, a JSON
# annotation that is the drain's memory (why, since when, whether cardpool cordoned, healthy since when).
TAINT_DRAIN = "cardpool.io/drain"
ANNOTATION_DRAIN = "cardpool.io/drain"
# A person's request to drain a node (`cardpool drain NODE`): its value is the reason. The operator drains
# the node like a faulty one (its jobs restart elsewhere with a graceful stop) and returns it as soon as the
# request is removed (`cardpool undrain NODE`), without probation.
ANNOTATION_DRAIN_REQUEST = "cardpool.io/drain-request"
# Progress reports of rank 0, a JSON annotation on its own pod: {"step": .., "totalSteps": .., "time": ..}.
ANNOTATION_PROGRESS = "cardpool.io/progress"

# Ports and files of the env contract.
COORDINATOR_PORT = 29500
CONFIG_MOUNT = "/etc/cardpool"

"""kopf wiring only: each handler observes, asks the core for a plan, applies it and writes status once.

Run with `kopf run --standalone --all-namespaces -m cardpool.handlers` (what `make operator` does).
"""

import logging

import kopf

from cardpool import __version__
from cardpool.api.keys import CARDPOOL_PLURAL, CHECKPOINT_PLURAL, GROUP, TRAININGJOB_PLURAL, VERSION

WATCHED = (CARDPOOL_PLURAL, TRAININGJOB_PLURAL, CHECKPOINT_PLURAL)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: logging.Logger, **_: object) -> None:
    # kopf's own bookkeeping goes under cardpool.io annotations, never into a user's spec.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    logger.info("cardpool %s watching %s in group %s/%s", __version__, ", ".join(WATCHED), GROUP, VERSION)


def _observed(resource: str):
    @kopf.on.event(GROUP, VERSION, resource)
    def observed(type: str | None, name: str, namespace: str | None, body: kopf.Body,
                 logger: logging.Logger, **_: object) -> None:
        # Reconciliation arrives with the later issues; for now the operator shows what it sees.
        where = f"{namespace}/{name}" if namespace else name
        logger.info("observed %s %s %s (generation %s)", type or "LIST", resource, where,
                    body.get("metadata", {}).get("generation"))

    return observed


for _resource in WATCHED:
    _observed(_resource)

"""The schema of a TrainingJob's pod template: core/v1's PodTemplateSpec (podschema), with the rules that core
validation applies on pod create but its OpenAPI does not say, and the rules cardpool needs of the template.

Everything here refuses at admission what would otherwise be refused only when the operator creates the pods.
The schema is built when a JSON schema is asked for (crdgen, tests), never when the operator imports the models.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import GetJsonSchemaHandler
from pydantic_core import CoreSchema

from . import podschema
from .base import DNS_LABEL, LABEL_KEY, LABEL_KEY_MAX, LABEL_VALUE, rule
from .keys import CONFIG_MOUNT

# The volume through which kube/builders.py mounts the job's ConfigMap (hostfile, rank table) at CONFIG_MOUNT.
OPERATOR_VOLUME = "cardpool"
T = "spec.workers.template.spec"
# A quantity that is not negative: core refuses negative requests and limits.
RESOURCE_QUANTITY = podschema.QUANTITY_PATTERN.replace(r"^(\+|-)?", r"^\+?", 1)
CONTAINER_LISTS = ("containers", "initContainers")
# The API server refuses a CRD whose CEL rules could cost too much on the largest object it might hold, so every
# list and string a rule walks needs a bound. These are far above any real pod's (core/v1 sets none).
BOUNDS = {"spec.containers": 64, "spec.initContainers": 64, "spec.volumes": 256, "spec.tolerations": 256,
          "spec.containers[].volumeMounts": 256}
PATH_MAX = 4096


def at(schema: dict, path: str) -> dict:
    """The node of `schema` at a dotted field path; `[]` steps into list items, `{}` into map values."""
    node = schema
    for step in path.split("."):
        name = step.removesuffix("[]").removesuffix("{}")
        if name:
            node = node["properties"][name]
        if step.endswith("[]"):
            node = node["items"]
        elif step.endswith("{}"):
            node = node["additionalProperties"]
    return node


def _rules(node: dict, *rules: dict) -> None:
    node.setdefault("x-kubernetes-validations", []).extend(rules)


def core_checks(schema: dict) -> None:
    """Rules of core/v1 pod validation that its OpenAPI leaves out, as far as a CRD schema can state them."""
    for kind in CONTAINER_LISTS:
        at(schema, f"spec.{kind}[].name").update(pattern=DNS_LABEL, maxLength=63)
        at(schema, f"spec.{kind}[].image").update(pattern=r"^\S+$")
        for port in ("containerPort", "hostPort"):
            at(schema, f"spec.{kind}[].ports[].{port}").update(minimum=1, maximum=65535)
        for bound in ("limits", "requests"):
            at(schema, f"spec.{kind}[].resources.{bound}{{}}")["pattern"] = RESOURCE_QUANTITY
    # an image may be left out of a template for a controller to fill in; no one fills it in for pods
    _rules(at(schema, "spec.initContainers[]"), rule(
        "has(self.image)", f"{T}.initContainers[].image must be set: no one fills it in", field_path=".image"))
    at(schema, "spec.volumes[].name").update(pattern=DNS_LABEL, maxLength=63)
    at(schema, "metadata.labels{}").update(pattern=LABEL_VALUE, maxLength=63)
    at(schema, "spec.tolerations[].key").update(pattern=LABEL_KEY, maxLength=LABEL_KEY_MAX)
    at(schema, "spec.tolerations[].value").update(pattern=LABEL_VALUE, maxLength=63)
    _rules(at(schema, "spec.tolerations[]"), *toleration_rules(f"{T}.tolerations[]"))
    _rules(at(schema, "spec"), rule(
        "!has(self.ephemeralContainers)",
        f"{T}.ephemeralContainers must not be set: a pod cannot be created with ephemeral containers",
        field_path=".ephemeralContainers"))


def toleration_rules(path: str) -> list[dict]:
    """What core/v1 requires of a toleration (shared with CardPool's node group tolerations)."""
    return [
        rule("!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
             f"{path}.value must be empty when operator is Exists", field_path=".value"),
        rule("(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
             f"{path}.operator must be Exists when key is empty (an empty key tolerates every taint)",
             field_path=".operator"),
    ]


def cardpool_rules(schema: dict) -> None:
    """What cardpool needs of the template: it picks the nodes, restarts gangs, and adds its own volume."""
    schema["description"] = (
        "Pod template of every worker (a core/v1 PodTemplateSpec). cardpool adds node affinity, tolerations, "
        "labels, env, the accelerator resources, hostname and subdomain, and a volume named "
        f"{OPERATOR_VOLUME} mounted at {CONFIG_MOUNT} in the trainer; the rest is used as given.")
    schema["required"] = ["spec"]
    at(schema, "metadata")["description"] = ("Labels and annotations for the worker pods (the only metadata a "
                                             "template may carry).")
    spec = at(schema, "spec")
    spec["description"] = "A core/v1 PodSpec."
    spec["required"] = ["containers"]
    containers = at(schema, "spec.containers")
    containers["minItems"] = 1
    containers["description"] = ("Containers; the first is the trainer. Every container needs an image; the "
                                 "trainer's may be left out when spec.workers.overrides gives one for every "
                                 "accelerator.")
    at(schema, "spec.containers[].image")["description"] = (
        "Container image. Every container needs one; the trainer's (the first) may come from "
        "spec.workers.overrides[].image instead.")
    at(schema, "spec.initContainers[].image")["description"] = "Container image; required."
    at(schema, "spec.nodeName")["description"] = "Must stay unset: cardpool chooses nodes."
    at(schema, "spec.restartPolicy")["description"] = "Unset or Never: cardpool restarts gangs."
    at(schema, "spec.terminationGracePeriodSeconds").update(
        minimum=0, description="At least spec.checkpoint.gracefulSaveSeconds when set.")
    _rules(spec,
           rule("!has(self.nodeName)", f"{T}.nodeName must not be set: cardpool chooses the nodes"),
           rule("!has(self.restartPolicy) || self.restartPolicy == 'Never'",
                f"{T}.restartPolicy must be Never or unset: cardpool restarts the whole gang"),
           rule("size(self.containers) == 0 || self.containers.all(c, c.name == self.containers[0].name || "
                "has(c.image))",
                f"{T}.containers[].image must be set for every container but the trainer (the first)",
                field_path=".containers"),
           rule("!has(self.initContainers) || !self.initContainers.exists(i, self.containers.exists(c, "
                "c.name == i.name))",
                f"{T}.initContainers[].name must differ from every container's name", field_path=".initContainers"))
    _rules(at(schema, "spec.volumes[]"), rule(
        f"self.name != '{OPERATOR_VOLUME}'",
        f"{T}.volumes[].name must not be {OPERATOR_VOLUME}: cardpool adds a volume of that name", field_path=".name"))
    # the trainer only: the other containers do not get cardpool's mount. Below it counts too: the mount point
    # would have to be made inside a read-only ConfigMap volume.
    _rules(containers, rule(
        f"size(self) == 0 || !has(self[0].volumeMounts) || self[0].volumeMounts.all(m, m.mountPath != "
        f"'{CONFIG_MOUNT}' && !m.mountPath.startsWith('{CONFIG_MOUNT}/'))",
        f"{T}.containers[0].volumeMounts[].mountPath (the trainer's) must not be {CONFIG_MOUNT} or below it: "
        "cardpool mounts the job's hostfile and rank table there"))
    for path, most in BOUNDS.items():
        at(schema, path)["maxItems"] = most
    at(schema, "spec.containers[].volumeMounts[].mountPath")["maxLength"] = PATH_MAX


def template_schema() -> dict:
    schema = podschema.pod_template_schema()
    core_checks(schema)
    cardpool_rules(schema)
    return schema


class _Schema:
    """Pydantic metadata: the template is a plain dict to the models; its JSON schema is the one above."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return template_schema()


PodTemplate = Annotated[dict[str, Any], _Schema]

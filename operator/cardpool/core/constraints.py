"""The scheduling constraints of a job's pod template, and which nodes satisfy them: the answer kube-scheduler's
NodeAffinity filter gives (k8s.io/component-helpers scheduling/corev1/nodeaffinity, labels.Requirement).

- spec.nodeSelector: every key present on the node with exactly that value;
- spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: the terms are
  ORed, the expressions of a term ANDed (matchExpressions over labels; matchFields over metadata.name, the only
  node field); a term with neither selects no node, and so does a term the scheduler cannot parse (Gt/Lt
  with a value that is not an integer, an unknown operator, a key or value that is not a label);
- both ANDed. Preferred terms only rank nodes the scheduler may already use: they narrow nothing;
- spec.tolerations: the TaintToleration filter. A worker pod carries the template's tolerations and its node
  group's (kube.builders), so a node's NoSchedule/NoExecute taint that its group does not tolerate (`blocking`)
  must be tolerated by the template. Node-state taints (node.kubernetes.io/..., cardpool's drain) are left to
  core.health and the scheduler: they come and go with the node's state, and are no one's intent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cardpool.api.keys import TAINT_DRAIN

__all__ = ["ANY", "Constraint", "Requirement", "Taint", "Term", "Toleration", "blocking", "from_template",
           "tolerations"]

SELECTOR = "spec.workers.template.spec.nodeSelector"
TOLERATIONS = "spec.workers.template.spec.tolerations"
AFFINITY = "spec.workers.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
NAME_FIELD = "metadata.name"

_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_INT64 = re.compile(r"[+-]?[0-9]+")  # Go's strconv.ParseInt(s, 10, 64): a sign, digits, nothing else
_INT64_RANGE = range(-(1 << 63), 1 << 63)
_LABEL_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
_FIELD_OPS = ("In", "NotIn")
_FILTERED_EFFECTS = ("NoSchedule", "NoExecute")  # PreferNoSchedule only ranks nodes
_NODE_STATE_TAINTS = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", TAINT_DRAIN)


def _int64(text: str) -> int | None:
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if value in _INT64_RANGE else None


def _label_key_error(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in prefix or (key.count("/") == 1 and not prefix):
        return f"key {key!r} is not a label key"
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"key {key!r} has a prefix that is not a DNS subdomain"
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return f"key {key!r} is not a label key"
    return None


def _label_value_error(value: str) -> str | None:
    if len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
        return f"value {value!r} is not a label value"
    return None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One matchExpressions or matchFields entry, as the scheduler parsed it."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        op = self.operator
        if op == "In":
            return value is not None and value in self.values
        if op == "NotIn":
            return value is None or value not in self.values
        if op == "Exists":
            return value is not None
        if op == "DoesNotExist":
            return value is None
        # Gt, Lt: the term's parse already refused a requirement value that is not an integer
        have = _int64(value) if value is not None else None
        if have is None:
            return False
        want = int(self.values[0])
        return have > want if op == "Gt" else have < want

    def field_matches(self, name: str) -> bool:
        """Over the node's fields, {metadata.name: name}: an unknown field reads as ""."""
        value = name if self.key == NAME_FIELD else ""
        return (value == self.values[0]) == (self.operator == "In")

    def __str__(self) -> str:
        if self.operator in ("Exists", "DoesNotExist"):
            return f"{self.key} {self.operator}"
        if self.operator in ("Gt", "Lt") and len(self.values) == 1:
            return f"{self.key} {self.operator} {self.values[0]}"
        return f"{self.key} {self.operator} [{', '.join(self.values)}]"


def _label_error(req: Requirement) -> str | None:
    """Why labels.NewRequirement refuses it (the term then selects no node), or None."""
    op, n = req.operator, len(req.values)
    if op not in _LABEL_OPS:
        return f"operator {op!r} is not one of {', '.join(_LABEL_OPS)}"
    if (error := _label_key_error(req.key)) is not None:
        return error
    if op in ("In", "NotIn") and n == 0:
        return f"{op} needs values"
    if op in ("Exists", "DoesNotExist") and n:
        return f"{op} takes no values"
    if op in ("Gt", "Lt"):
        if n != 1:
            return f"{op} needs exactly one value"
        if _int64(req.values[0]) is None:
            return f"{op} value {req.values[0]!r} is not an integer"
    return next((e for v in req.values if (e := _label_value_error(v)) is not None), None)


def _field_error(req: Requirement) -> str | None:
    if req.operator not in _FIELD_OPS:
        return f"matchFields operator {req.operator!r} is not In or NotIn"
    if len(req.values) != 1:
        return f"matchFields {req.operator} needs exactly one value"
    return None


@dataclass(frozen=True, slots=True)
class Term:
    """One nodeSelectorTerm: its expressions ANDed."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()
    error: str | None = None
    """Why the scheduler cannot parse the term: it then selects no node."""

    def admits(self, name: str, labels: Mapping[str, str]) -> bool:
        if self.error is not None or not (self.labels or self.fields):
            return False
        return all(r.matches(labels) for r in self.labels) and all(r.field_matches(name) for r in self.fields)

    def __str__(self) -> str:
        parts = [str(r) for r in self.labels] + [str(r) for r in self.fields]
        text = " and ".join(parts) if parts else "an empty term"
        return f"({text}: {self.error})" if self.error else f"({text})"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        """core/v1 Toleration.ToleratesTaint: an empty effect or key matches any; Equal (or unset) compares the
        value; an operator the API does not know tolerates nothing."""
        if (self.effect and self.effect != taint.effect) or (self.key and self.key != taint.key):
            return False
        if self.operator == "Exists":
            return True
        return self.operator in ("Equal", "") and self.value == taint.value


def tolerations(raw: Any) -> tuple[Toleration, ...]:
    """Tolerations in their wire form (a pod's spec.tolerations, a node group's); what is not one is skipped."""
    if not isinstance(raw, list):
        return ()
    return tuple(Toleration(str(t.get("key") or ""), str(t.get("operator") or ""), str(t.get("value") or ""),
                            str(t.get("effect") or ""))
                 for t in raw if isinstance(t, Mapping))


def blocking(taints: Iterable[Taint], tolerated: tuple[Toleration, ...]) -> tuple[Taint, ...]:
    """The taints that keep a pod with the `tolerated` tolerations off the node (the scheduler's filter),
    node-state taints aside (see the module's doc)."""
    return tuple(sorted((t for t in taints if t.effect in _FILTERED_EFFECTS
                         and not t.key.startswith(_NODE_STATE_TAINTS)
                         and not any(tol.tolerates(t) for tol in tolerated)),
                        key=lambda t: (t.key, t.value, t.effect)))


@dataclass(frozen=True, slots=True)
class Constraint:
    """What a pod template requires of a node. Hashable, so a pass evaluates each distinct one once."""

    selector: tuple[tuple[str, str], ...] = ()
    """spec.nodeSelector, sorted by key."""
    terms: tuple[Term, ...] | None = None
    """The required node affinity's terms (ORed); None when the template has none."""
    tolerations: tuple[Toleration, ...] = ()
    """spec.tolerations."""

    @property
    def narrows(self) -> bool:
        """Whether it selects on labels (tolerations narrow only where nodes carry taints)."""
        return bool(self.selector) or self.terms is not None

    def selects(self, name: str, labels: Mapping[str, str]) -> bool:
        """Whether kube-scheduler's NodeAffinity filter lets the template's pods onto the node."""
        for key, value in self.selector:
            if labels.get(key) != value:
                return False
        return self.terms is None or any(t.admits(name, labels) for t in self.terms)

    def untolerated(self, taints: Iterable[Taint]) -> tuple[Taint, ...]:
        """Of a node's blocking taints (its group's tolerations already applied), those the template does not
        tolerate either."""
        return tuple(t for t in taints if not any(tol.tolerates(t) for tol in self.tolerations))

    def admits(self, name: str, labels: Mapping[str, str], taints: Iterable[Taint] = ()) -> bool:
        """Whether the scheduler's NodeAffinity and TaintToleration filters let the template's pods onto the
        node; `taints`: those its node group's tolerations leave (`blocking`)."""
        return self.selects(name, labels) and not self.untolerated(taints)

    def eligible(self, nodes: Iterable[tuple[str, Mapping[str, str], tuple[Taint, ...]]]) -> frozenset[str]:
        """The names of the (name, labels, blocking taints) nodes it admits."""
        return frozenset(name for name, labels, taints in nodes if self.admits(name, labels, taints))

    def __str__(self) -> str:
        parts = []
        if self.selector:
            parts.append(f"{SELECTOR} {{{', '.join(f'{k}: {v}' for k, v in self.selector)}}}")
        if self.terms is not None:
            terms = " or ".join(str(t) for t in self.terms) if self.terms else "(no terms)"
            parts.append(f"{AFFINITY} {terms}")
        text = " and ".join(parts) or "nothing"
        return text if len(text) <= 600 else text[:599] + "…"


ANY = Constraint()


def _strings(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values) if isinstance(values, list) else ()


def _requirements(items: Any, check: Callable[[Requirement], str | None]
                  ) -> tuple[tuple[Requirement, ...], str | None]:
    if items is None:
        return (), None
    if not isinstance(items, list):
        return (), "not a list"
    out, error = [], None
    for raw in items:
        item = raw if isinstance(raw, Mapping) else {}
        req = Requirement(str(item.get("key", "")), str(item.get("operator", "")), _strings(item.get("values")))
        out.append(req)
        error = error or check(req)
    return tuple(out), error


def _term(raw: Any) -> Term:
    raw = raw if isinstance(raw, Mapping) else {}
    labels, label_error = _requirements(raw.get("matchExpressions"), _label_error)
    fields, field_error = _requirements(raw.get("matchFields"), _field_error)
    return Term(labels, fields, label_error or field_error)


def from_template(template: Mapping[str, Any]) -> Constraint:
    """The constraint of a pod template (a core/v1 PodTemplateSpec as a dict); ANY when it has none.
    A part that is not a map where one belongs (the API server refuses such a pod) narrows nothing; terms
    that are not a list, and a term that cannot be read, select no node."""
    spec = template.get("spec") if isinstance(template, Mapping) else None
    if not isinstance(spec, Mapping):
        return ANY
    raw_selector = spec.get("nodeSelector")
    selector: tuple[tuple[str, str], ...] = ()
    if isinstance(raw_selector, Mapping):
        selector = tuple(sorted((str(k), str(v)) for k, v in raw_selector.items()))
    affinity = spec.get("affinity")
    node_affinity = affinity.get("nodeAffinity") if isinstance(affinity, Mapping) else None
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") \
        if isinstance(node_affinity, Mapping) else None
    terms: tuple[Term, ...] | None = None
    if isinstance(required, Mapping):
        raw_terms = required.get("nodeSelectorTerms")
        terms = tuple(_term(t) for t in raw_terms) if isinstance(raw_terms, list) else ()
    tolerated = tolerations(spec.get("tolerations"))
    if not selector and terms is None and not tolerated:
        return ANY
    return Constraint(selector, terms, tolerated)

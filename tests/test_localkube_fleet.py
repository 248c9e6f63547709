"""The fleet file turns into Node objects with the right capacity, labels and topology."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from localkube.cluster import KWOK_NODE_LABEL
from localkube.config import FLEETS
from localkube.fleet import GROUP_LABEL, RACK_LABEL, SPINE_LABEL, Fleet


def test_small_fleet_is_about_thirty_nodes_of_seven_models() -> None:
    fleet = Fleet.load(FLEETS / "small.yaml")
    assert 25 <= fleet.node_count <= 35
    models = {g.model for g in fleet.groups}
    assert {"H800", "A100", "Ascend910B", "MLU590", "K100", "P800", "C500"} <= models
    assert fleet.cards()["huawei.com/Ascend910"] == 48


def test_large_fleet_has_at_least_500_nodes() -> None:
    fleet = Fleet.load(FLEETS / "large.yaml")
    assert fleet.node_count >= 500
    assert len(fleet.node_objects()) == fleet.node_count


def test_node_objects_carry_capacity_allocatable_and_vendor_labels() -> None:
    fleet = Fleet.load(FLEETS / "small.yaml")
    nodes = {n["metadata"]["name"]: n for n in fleet.node_objects()}
    ascend = nodes["ascend910b-000"]
    assert ascend["status"]["capacity"]["huawei.com/Ascend910"] == "8"
    assert ascend["status"]["allocatable"] == ascend["status"]["capacity"]
    assert ascend["status"]["allocatable"] is not ascend["status"]["capacity"]
    assert ascend["metadata"]["labels"]["accelerator"] == "huawei-Ascend910"
    assert ascend["metadata"]["labels"][GROUP_LABEL] == "ascend910b"
    assert ascend["metadata"]["labels"][KWOK_NODE_LABEL[0]] == KWOK_NODE_LABEL[1]
    assert "nvidia.com/gpu" not in ascend["status"]["capacity"]


def test_racks_hold_one_group_and_spines_collect_racks() -> None:
    fleet = Fleet.load(FLEETS / "small.yaml")
    per_rack = Counter()
    groups_in_rack: dict[str, set[str]] = {}
    spine_of_rack: dict[str, str] = {}
    for node in fleet.node_objects():
        labels = node["metadata"]["labels"]
        rack = labels[RACK_LABEL]
        per_rack[rack] += 1
        groups_in_rack.setdefault(rack, set()).add(labels[GROUP_LABEL])
        assert spine_of_rack.setdefault(rack, labels[SPINE_LABEL]) == labels[SPINE_LABEL]
    assert max(per_rack.values()) <= fleet.defaults.nodes_per_rack
    assert all(len(g) == 1 for g in groups_in_rack.values())
    racks_per_spine = Counter(spine_of_rack.values())
    assert max(racks_per_spine.values()) <= fleet.defaults.racks_per_spine


def test_node_names_are_unique_and_stable() -> None:
    fleet = Fleet.load(FLEETS / "large.yaml")
    names = [n["metadata"]["name"] for n in fleet.node_objects()]
    assert len(names) == len(set(names))
    assert names == [n["metadata"]["name"] for n in fleet.node_objects()]


@pytest.mark.parametrize(("groups", "message"), [
    ([{"name": "a", "vendor": "v", "model": "m", "resource": "x/y", "cardsPerNode": 8, "nodes": 1}] * 2,
     "group names must be unique"),
    ([{"name": "a", "vendor": "v", "model": "m", "resource": "x/y", "cardsPerNode": 0, "nodes": 1}],
     "cardsPerNode"),
    ([{"name": "A_B", "vendor": "v", "model": "m", "resource": "x/y", "cardsPerNode": 8, "nodes": 1}],
     "name"),
    ([{"name": "a", "vendor": "v", "model": "m", "resource": "x/y", "cardsPerNode": 8, "nodes": 1, "oops": 1}],
     "oops"),
])
def test_bad_fleet_files_are_rejected_naming_the_field(groups: list[dict], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Fleet.model_validate({"name": "bad", "groups": groups})

"""The pool and fleet files of `cardpool simulate`: what is accepted, the nodes a fleet makes, and every refusal
naming the file, the field and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cardpool.sim.inputs import InputError, load_fleet, load_pool

from ..examples import EXAMPLES

ROOT = EXAMPLES.parents[1]
POOL_FILE = EXAMPLES / "pool-mixed-vendor.yaml"
POOL = yaml.safe_load(POOL_FILE.read_text())


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump_all(
        content if isinstance(content, list) else [content]))
    return path


def edited(edit) -> dict:
    pool = yaml.safe_load(POOL_FILE.read_text())
    edit(pool["spec"])
    return pool


def test_the_example_pool_is_read_with_its_name_and_groups() -> None:
    name, spec = load_pool(POOL_FILE)
    assert name == "mixed"
    assert [g.name for g in spec.node_groups] == ["h800", "a100", "ascend910b", "mlu590", "dcu-k100", "xpu-p800",
                                                  "metax-c500"]


def test_a_pool_among_other_documents_is_found(tmp_path: Path) -> None:
    other = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    assert load_pool(write(tmp_path, "all.yaml", [other, POOL]))[0] == "mixed"


def _set(path: str, value: object):
    def edit(spec: dict) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return edit


BAD_POOLS = [
    ("cards per node above the limit", edited(_set("nodeGroups.0.accelerator.cardsPerNode", 65)),
     "pool.yaml: spec.nodeGroups[0].accelerator.cardsPerNode: Input should be less than or equal to 64 (got 65)"),
    ("an unknown vendor", edited(_set("nodeGroups.1.accelerator.vendor", "acme")),
     "spec.nodeGroups[1].accelerator.vendor: Input should be"),
    ("an unknown field", edited(_set("health.probation", 5)),
     "spec.health.probation: Extra inputs are not permitted"),
    ("a group without its accelerator's resource", edited(lambda s: s["nodeGroups"][2]["accelerator"].pop("resource")),
     "spec.nodeGroups[2].accelerator.resource: Field required"),
    ("a group name twice (the CRD's list-map key)", edited(_set("nodeGroups.1.name", "h800")),
     "spec.nodeGroups[1].name: group names must be unique, 'h800' is repeated"),
    ("an interconnect domain that does not divide the node (a CEL rule)",
     edited(_set("nodeGroups.0.accelerator.interconnect.domainSize", 3)),
     "spec.nodeGroups[0].accelerator.interconnect.domainSize: must divide cardsPerNode or be a multiple of it"),
    ("more concurrent migrations than the hour's budget (a CEL rule)",
     edited(_set("defragmentation.maxConcurrentMigrations", 7)),
     "spec.defragmentation.maxConcurrentMigrations: must not exceed maxMigrationsPerHour (got 7 > 6)"),
    ("another kind", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
     "pool.yaml: no CardPool in the file (kinds found: ConfigMap)"),
    ("two pools", [POOL, {**POOL, "metadata": {"name": "other"}}], "pool.yaml: 2 CardPools in the file (mixed, other)"),
    ("not YAML", "spec: [\n  a: b", "pool.yaml: not valid YAML at line 2"),
    ("a wrong apiVersion", {**POOL, "apiVersion": "cardpool.io/v2"},
     "apiVersion: Input should be 'cardpool.io/v1alpha1'"),
]


@pytest.mark.parametrize(("content", "message"), [(c, m) for _, c, m in BAD_POOLS], ids=[n for n, _, _ in BAD_POOLS])
def test_a_bad_pool_is_refused_naming_the_field_and_rule(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(InputError) as refused:
        load_pool(write(tmp_path, "pool.yaml", content))
    assert message in str(refused.value)
    assert str(refused.value).startswith(str(tmp_path / "pool.yaml"))


def test_a_missing_pool_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.yaml: cannot read it: No such file or directory"):
        load_pool(tmp_path / "nope.yaml")


# -- the fleet ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    return load_pool(POOL_FILE)[1]


def test_a_fleet_makes_its_groups_nodes_in_racks_and_spines(tmp_path: Path, pool) -> None:
    path = write(tmp_path, "fleet.yaml", {"defaults": {"nodesPerRack": 2, "racksPerSpine": 2},
                                          "groups": [{"name": "h800", "nodes": 5}, {"name": "mlu590", "nodes": 3,
                                                                                      "nodesPerRack": 3}]})
    fleet = load_fleet(path, pool)
    assert fleet.counts == {"h800": 5, "mlu590": 3}
    assert fleet.cards == 64
    names = [n.name for n, _ in fleet.nodes]
    assert names == ["h800-0000", "h800-0001", "h800-0002", "h800-0003", "h800-0004", "mlu590-0000", "mlu590-0001",
                     "mlu590-0002"]
    h800 = [n for n, _ in fleet.nodes if n.name.startswith("h800")]
    # the pool's selector, and a label per topology key of the group: racks of 2, spines of 2 racks
    assert all(n.labels["nvidia.com/gpu.product"] == "NVIDIA-H800" for n in h800)
    assert [n.labels["topology.cardpool.io/rack"] for n in h800] == ["h800-r0", "h800-r0", "h800-r1", "h800-r1",
                                                                     "h800-r2"]
    assert [n.labels["topology.cardpool.io/spine"] for n in h800] == ["h800-s0"] * 4 + ["h800-s1"]
    assert [rack for _, rack in fleet.nodes][-3:] == ["mlu590-r0"] * 3  # its own rack size
    assert all(n.capacity == n.allocatable == {"nvidia.com/gpu": 8} and n.conditions == {"Ready": "True"}
               for n in h800)


def test_the_e2e_kits_fleet_files_are_read_as_they_are(pool) -> None:
    fleet = load_fleet(ROOT / "e2e" / "fleets" / "small.yaml", pool)
    assert fleet.cards == 240 and len(fleet.nodes) == 30
    assert fleet.counts["h800"] == 6 and fleet.counts["metax-c500"] == 3


BAD_FLEETS = [
    ("a group the pool lacks", {"groups": [{"name": "h900", "nodes": 2}]},
     "groups[0].name: the pool has no nodeGroup 'h900' (its groups: h800, a100"),
    ("a negative count", {"groups": [{"name": "h800", "nodes": -1}]},
     "groups[0].nodes: Input should be greater than or equal to 0 (got -1)"),
    ("no count", {"groups": [{"name": "h800"}]}, "groups[0].nodes: Field required"),
    ("a group twice", {"groups": [{"name": "h800", "nodes": 1}, {"name": "h800", "nodes": 2}]},
     "groups[1].name: 'h800' is listed twice"),
    ("no nodes at all", {"groups": [{"name": "h800", "nodes": 0}]}, "no nodes at all"),
    ("no groups", {"groups": []}, "groups: List should have at least 1 item"),
    ("an unknown field", {"groups": [{"name": "h800", "nodes": 1, "racks": 2}]},
     "groups[0].racks: Extra inputs are not permitted"),
    ("cards per node other than the pool's", {"groups": [{"name": "h800", "nodes": 1, "cardsPerNode": 4}]},
     "groups[0].cardsPerNode: 4 here, but the pool's group h800 has 8"),
    ("another model", {"groups": [{"name": "a100", "nodes": 1, "model": "H100"}]},
     "groups[0].model: 'H100' here, but the pool's group a100 has 'A100'"),
    ("labels the pool's selector does not match", {"groups": [{"name": "h800", "nodes": 1, "labels": {"x": "y"}}]},
     "groups[0].labels: the pool's group h800 selects nodes by {'nvidia.com/gpu.product': 'NVIDIA-H800'}"),
    ("a rack of no nodes", {"defaults": {"nodesPerRack": 0}, "groups": [{"name": "h800", "nodes": 1}]},
     "defaults.nodesPerRack: Input should be greater than or equal to 1 (got 0)"),
    ("a list instead of a mapping", [{"name": "h800", "nodes": 1}], "expected a mapping with groups:"),
]


@pytest.mark.parametrize(("content", "message"), [(c, m) for _, c, m in BAD_FLEETS], ids=[n for n, _, _ in BAD_FLEETS])
def test_a_bad_fleet_is_refused_naming_the_field_and_rule(tmp_path: Path, pool, content: object, message: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(InputError) as refused:
        load_fleet(path, pool)
    assert message in str(refused.value)
    assert str(refused.value).startswith(str(path))


def test_every_problem_of_a_fleet_is_listed(tmp_path: Path, pool) -> None:
    path = write(tmp_path, "fleet.yaml", {"groups": [{"name": "h900", "nodes": 1},
                                                     {"name": "h800", "nodes": 1, "cardsPerNode": 2}]})
    with pytest.raises(InputError) as refused:
        load_fleet(path, pool)
    assert str(refused.value).startswith(f"{path}: 2 problems:\n  groups[0].name:")
    assert "\n  groups[1].cardsPerNode:" in str(refused.value)

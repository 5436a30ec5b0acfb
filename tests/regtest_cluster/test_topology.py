"""Topology validation: pure logic, no nodes."""

import pytest

from regtest_cluster.topology import TOPOLOGY_DIR, TopologyError, load, parse


def _base(**over):
    data = {"name": "t", "nodes": [{"name": "a", "funding_sats": 1_000_000}, {"name": "b"}],
            "channels": [{"from": "a", "to": "b", "capacity_sats": 100_000}]}
    data.update(over)
    return data


@pytest.mark.parametrize("name", sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml")))
def test_load_shipped_topologies_are_valid(name):
    topo = load(name)
    assert topo.nodes and topo.name == name


def test_load_hub_has_two_buyers_two_sellers_each_with_a_hub_channel():
    topo = load("hub")
    roles = sorted(n.role for n in topo.nodes)
    assert roles == ["buyer", "buyer", "hub", "seller", "seller"]
    for n in topo.nodes:
        if n.role != "hub":
            assert any({c.from_, c.to} == {n.name, "hub"} for c in topo.channels)


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d["channels"][0].update(to="zed"), "channels[0].to", "unknown node 'zed'"),
    (lambda d: d["channels"][0].update(capacity_sats=10), "channels[0].capacity_sats", "greater than or equal"),
    (lambda d: d["channels"][0].update(push_sats=100_000), "channels[0]", "push_sats"),
    (lambda d: d["channels"][0].update(to="a"), "channels[0]", "both 'a'"),
    (lambda d: d["nodes"][0].update(funding_sats=1000), "nodes[0].funding_sats", "needing 200000 sats"),
    (lambda d: d["nodes"][1].update(name="a"), "nodes[1].name", "duplicate node name"),
    (lambda d: d["nodes"][1].update(name="Bad Name"), "nodes[1].name", "lower-case"),
    (lambda d: d["nodes"][1].update(role="wizard"), "nodes[1].role", "hub"),
    (lambda d: d["nodes"][1].update(colour="red"), "nodes[1].colour", "unknown field"),
    (lambda d: d.update(base_port=80), "base_port", "greater than or equal"),
    (lambda d: d.pop("nodes"), "nodes", "Field required"),
])
def test_parse_bad_field_names_the_field_in_one_line(mutate, field, words):
    data = _base()
    mutate(data)
    with pytest.raises(TopologyError) as err:
        parse(data, "t.yaml")
    message = str(err.value)
    assert message.startswith(f"t.yaml: {field}:"), message
    assert words in message
    assert "\n" not in message


def test_load_missing_file_lists_shipped_topologies(tmp_path):
    with pytest.raises(TopologyError, match=r"no such topology file \(shipped: .*hub"):
        load(tmp_path / "nope.yaml")


def test_load_invalid_yaml_names_the_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nnodes: [\n  - {name: a\n")
    with pytest.raises(TopologyError, match=r"bad.yaml: line \d+: not valid YAML"):
        load(f)


def test_parse_top_level_list_is_rejected():
    with pytest.raises(TopologyError, match="top level must be a mapping"):
        parse([1, 2], "x.yaml")

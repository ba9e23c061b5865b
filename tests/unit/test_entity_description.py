"""Entity descriptions: every field path listed is one an import mapping accepts, and every
field of the definition is listed."""

from __future__ import annotations

from domain.entities import EntityRegistry, default_schemas_dir
from domain.entity_description import entity_description, entity_list
from domain.import_mapping import resolve_target

REGISTRY = EntityRegistry.load(default_schemas_dir())


def test_every_listed_path_is_a_mapping_target():
    for name in REGISTRY.names():
        definition = REGISTRY.get(name)
        for described in entity_description(definition)["fields"]:
            target = resolve_target(definition, described["path"])
            assert target.path == described["path"]
            assert target.spec.kind.value == described["type"]


def test_customers_are_described_as_the_rules_say():
    described = entity_description(REGISTRY.get("customers"))
    fields = {f["path"]: f for f in described["fields"]}
    assert described["key"] == "externalId"
    assert fields["externalId"]["required"] and not fields["email"]["required"]
    assert "addresses.0.city" in fields and not fields["addresses.0.city"]["required"]
    assert {"firstName", "lastName", "importantDates.0.date"} <= set(fields)
    top_level = {f.name for f in REGISTRY.get("customers").fields}
    assert {path.split(".")[0] for path in fields} == top_level
    assert entity_list(REGISTRY) == {
        "entities": [{"name": n, "key": REGISTRY.get(n).key_field} for n in REGISTRY.names()]
    }

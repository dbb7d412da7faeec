"""The toy world's hierarchy as a concept set (configs/concepts/toyworld.yaml), generated from world.yaml.

    python -m jobs.toyworld.concept_set            # rewrite configs/concepts/toyworld.yaml
    python -m jobs.toyworld.concept_set --check    # exit 1 if the shipped file is stale

world.yaml stays the one source of truth; tests/unit/test_concepts.py fails when the two disagree.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from jobs.toyworld.prompts import SINGLE_TEMPLATES
from jobs.toyworld.world import ATTRIBUTE_KINDS, World, load_world
from erasecore.concepts import SHIPPED

TARGET = SHIPPED / "toyworld.yaml"
HEADER = ("# The toy world's concept set, generated from jobs/toyworld/world.yaml by\n"
          "#   python -m jobs.toyworld.concept_set\n# Do not edit by hand: world.yaml is the source of truth.\n")


def concept_set_doc(world: World) -> dict:
    """The concept-set document of `world`: objects, superclasses and attribute values."""
    attributes = {kind: list(world.values(kind)) for kind in ATTRIBUTE_KINDS}
    concepts: dict[str, dict] = {}
    for sup, members in world.superclasses.items():
        concepts[sup] = {"kind": "superclass", "subclasses": list(members),
                         "far": [o for o in world.objects if o not in members]}
        for o in members:
            others = [x for x in world.objects if x != o]
            concepts[o] = {"kind": "object", "superclass": sup, "synonyms": list(world.synonyms.get(o, ())),
                           "attributes": attributes, "near": [x for x in members if x != o],
                           "far": [x for x in others if x not in members], "leakage": others}
    for kind in ATTRIBUTE_KINDS:
        for value, words in world.attribute_words[kind].items():
            concepts[value] = {"kind": "attribute", "axis": kind, "synonyms": [w for w in words if w != value]}
    templates = [t.replace("{0}", "{}") for t in SINGLE_TEMPLATES]
    return {"name": "toyworld", "judge": "toyworld", "templates": {"object": templates, "superclass": templates},
            "concepts": concepts}


class _Plain(yaml.SafeDumper):
    """No anchors and aliases: the file is read by people too."""

    def ignore_aliases(self, data) -> bool:
        return True


def render(world: World) -> str:
    return HEADER + yaml.dump(concept_set_doc(world), Dumper=_Plain, sort_keys=False, width=120,
                              default_flow_style=None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the shipped file differs from world.yaml's")
    ap.add_argument("--out", type=Path, default=TARGET)
    args = ap.parse_args(argv)
    text = render(load_world())
    if args.check:
        same = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'stale: run python -m jobs.toyworld.concept_set'}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

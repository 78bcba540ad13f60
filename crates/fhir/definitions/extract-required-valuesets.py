#!/usr/bin/env python3
"""Extracts from the official R4 valuesets.json only what required bindings need.

Keeps every ValueSet bound with strength `required` anywhere in the resource and data type
StructureDefinitions (following nested `compose.include/exclude.valueSet` imports), plus the
CodeSystems those ValueSets draw codes from. Resources are copied unchanged except that their
generated narrative (`text`) is dropped, which the validator never reads.

usage: extract-required-valuesets.py R4_DIR OUT_FILE
  R4_DIR   folder holding profiles-resources.json, profiles-types.json, valuesets.json
  OUT_FILE where to write the resulting collection Bundle (valuesets-required.json)
"""

import json
import os
import sys


def canonical(url):
    return url.split("|", 1)[0]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    r4_dir, out_file = sys.argv[1], sys.argv[2]

    wanted = set()
    for name in ("profiles-resources.json", "profiles-types.json"):
        with open(os.path.join(r4_dir, name), encoding="utf-8") as f:
            bundle = json.load(f)
        for entry in bundle["entry"]:
            for element in entry["resource"].get("snapshot", {}).get("element", []):
                binding = element.get("binding") or {}
                if binding.get("strength") == "required" and "valueSet" in binding:
                    wanted.add(canonical(binding["valueSet"]))

    with open(os.path.join(r4_dir, "valuesets.json"), encoding="utf-8") as f:
        terminology = json.load(f)
    value_sets, code_systems = {}, {}
    for entry in terminology["entry"]:
        resource = entry["resource"]
        target = value_sets if resource["resourceType"] == "ValueSet" else code_systems
        target.setdefault(resource["url"], resource)

    kept_vs, systems, pending = {}, set(), sorted(wanted)
    while pending:
        url = pending.pop()
        if url in kept_vs or url not in value_sets:
            continue
        vs = value_sets[url]
        kept_vs[url] = vs
        compose = vs.get("compose", {})
        for part in compose.get("include", []) + compose.get("exclude", []):
            if "system" in part:
                systems.add(part["system"])
            pending.extend(canonical(v) for v in part.get("valueSet", []))

    entries = []
    for url in sorted(kept_vs):
        entries.append(kept_vs[url])
    for url in sorted(systems):
        if url in code_systems:
            entries.append(code_systems[url])
    out = {
        "resourceType": "Bundle",
        "id": "valuesets-required",
        "type": "collection",
        "entry": [
            {"fullUrl": r["url"], "resource": {k: v for k, v in r.items() if k != "text"}}
            for r in entries
        ],
    }
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    missing = sorted(wanted - set(kept_vs))
    print(
        f"{len(kept_vs)} value sets ({len(missing)} bound but not in valuesets.json: "
        f"{', '.join(missing)}), {sum(1 for s in systems if s in code_systems)} code systems "
        f"({len([s for s in systems if s not in code_systems])} external)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

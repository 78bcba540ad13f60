#!/usr/bin/env python3
"""Fails when a workspace crate declares a dependency its code never names.

A dependency counts as used when its crate name (`-` read as `_`, or the key of a renamed
dependency) appears in the crate's code as a path (`name::`), in a `use name` or in an
`extern crate name`. Normal and build dependencies are looked for in `src/` and `build.rs`;
dev-dependencies anywhere in the crate (`src/`, `tests/`, `benches/`, `examples/`). A
dev-dependency that repeats a normal one unchanged is reported too, and so is an entry of the
root's `[workspace.dependencies]` that no crate lists. A dependency kept for
another reason (a feature it turns on, a link) is named in the crate's
`[package.metadata.cargo-machete] ignored = [...]`, the key cargo-machete reads.

Usage: python3 .ci/unused-deps.py [WORKSPACE_ROOT]
"""

import pathlib
import re
import sys
import tomllib

NORMAL_SECTIONS = ("dependencies", "build-dependencies")
DEV_SECTION = "dev-dependencies"


def sources(crate: pathlib.Path, folders: tuple[str, ...]) -> str:
    """The text of every Rust file under `folders` of `crate` (and its build script)."""
    texts = []
    for folder in folders:
        texts.extend(p.read_text(errors="replace") for p in sorted((crate / folder).rglob("*.rs")))
    build = crate / "build.rs"
    if build.is_file():
        texts.append(build.read_text(errors="replace"))
    return "\n".join(texts)


def named(code: str, crate_name: str) -> bool:
    """Whether `code` names the crate `crate_name`."""
    name = re.escape(crate_name)
    # `::name::` is how a crate is named beside a module of the same name.
    pattern = rf"(?<![\w:]){name}::|(?<![\w])::{name}::|\buse\s+(::)?{name}\b|\bextern\s+crate\s+{name}\b"
    return re.search(pattern, code) is not None


def sections(manifest: dict) -> list[tuple[str, dict]]:
    """(kind, table) for each dependency table, target-specific ones included."""
    found = [(kind, manifest.get(kind, {})) for kind in (*NORMAL_SECTIONS, DEV_SECTION)]
    for target in manifest.get("target", {}).values():
        found.extend((kind, target.get(kind, {})) for kind in (*NORMAL_SECTIONS, DEV_SECTION))
    return found


def check(crate: pathlib.Path) -> list[str]:
    manifest = tomllib.loads((crate / "Cargo.toml").read_text())
    package = manifest.get("package", {}).get("name", crate.name)
    ignored = set(manifest.get("package", {}).get("metadata", {}).get("cargo-machete", {}).get("ignored", []))
    normal_code = sources(crate, ("src",))
    all_code = sources(crate, ("src", "tests", "benches", "examples"))
    normal = {}
    for kind, table in sections(manifest):
        if kind != DEV_SECTION:
            normal.update(table)
    problems = []
    for kind, table in sections(manifest):
        code = all_code if kind == DEV_SECTION else normal_code
        for key, spec in table.items():
            if key in ignored:
                continue
            if kind == DEV_SECTION and normal.get(key) == spec:
                problems.append(f"{package}: {key} is in [dev-dependencies] as it already is in [dependencies]")
            elif not named(code, key.replace("-", "_")):
                problems.append(f"{package}: [{kind}] {key} is never used")
    return problems


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    problems = []
    listed = set()
    for manifest in sorted(root.glob("crates/*/Cargo.toml")):
        problems.extend(check(manifest.parent))
        for _, table in sections(tomllib.loads(manifest.read_text())):
            listed.update(table)
    workspace = tomllib.loads((root / "Cargo.toml").read_text()).get("workspace", {})
    for key in workspace.get("dependencies", {}):
        if key not in listed:
            problems.append(f"workspace: [workspace.dependencies] {key} is listed by no crate")
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} unused dependencies; remove them (or list them under "
              "[package.metadata.cargo-machete] ignored, with the reason)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

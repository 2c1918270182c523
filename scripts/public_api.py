#!/usr/bin/env python3
"""The library's public API as a sorted listing, one item per line, from rustdoc's JSON.

    scripts/public_api.py           compare with tests/public-api.txt (exit 1 and a diff when
                                    the surface changed)
    scripts/public_api.py --bless   write tests/public-api.txt from the current code

The listing is what a user of `pg-changestream` with its default features can name: every
public module, type, function, constant, trait, variant, field and method reachable from the
crate root (re-exports listed at the path they are reachable by), and the trait impls of the
public types (without auto traits and blanket impls). A change to the surface — growth by
accident most of all — fails scripts/test.sh until the fixture is blessed on purpose, the way
`cargo public-api` is used elsewhere (that tool needs a nightly toolchain; rustdoc's JSON is
reached here on stable through RUSTC_BOOTSTRAP, for this one unstable output format only).
"""

import difflib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "public-api.txt")
TARGET = os.path.join(ROOT, "target", "public-api")


def rustdoc_json():
    env = dict(os.environ, RUSTC_BOOTSTRAP="1", RUSTDOCFLAGS="-D warnings")
    subprocess.run(
        ["cargo", "rustdoc", "-q", "-p", "pg-changestream", "--lib", "--target-dir", TARGET,
         "--", "-Z", "unstable-options", "--output-format", "json"],
        cwd=ROOT, env=env, check=True)
    with open(os.path.join(TARGET, "doc", "pg_changestream.json")) as f:
        return json.load(f)


def type_name(ty):
    """A short rendering of a type for impl lines (`for` side)."""
    if not isinstance(ty, dict):
        return "?"
    if "resolved_path" in ty:
        return ty["resolved_path"].get("path", "?").split("::")[-1]
    if "primitive" in ty:
        return ty["primitive"]
    if "borrowed_ref" in ty:
        return "&" + type_name(ty["borrowed_ref"].get("type"))
    if "generic" in ty:
        return ty["generic"]
    return next(iter(ty), "?")


def listing(doc):
    index = doc["index"]
    lines = set()
    seen = set()

    def public(item):
        return item.get("visibility") == "public"

    def methods(owner_path, impl_ids):
        for impl_id in impl_ids:
            impl_item = index.get(str(impl_id))
            if impl_item is None:
                continue
            imp = impl_item["inner"].get("impl", {})
            if imp.get("is_synthetic") or imp.get("blanket_impl") is not None:
                continue
            trait = imp.get("trait")
            if trait is not None:
                lines.add(f"impl {trait.get('path', '?')} for {owner_path}")
                continue
            for member_id in imp.get("items", []):
                member = index.get(str(member_id))
                if member is None or not public(member):
                    continue
                kind = next(iter(member["inner"]))
                lines.add(f"{kind} {owner_path}::{member['name']}")

    def visit(item_id, path):
        item = index.get(str(item_id))
        if item is None:
            return
        inner = item["inner"]
        kind = next(iter(inner))
        if kind == "use":
            use = inner["use"]
            if use.get("is_glob"):
                target = index.get(str(use.get("id")))
                if target is not None and "module" in target["inner"]:
                    for child in target["inner"]["module"]["items"]:
                        visit(child, path)
                return
            target_id = use.get("id")
            if target_id is None or str(target_id) not in index:
                lines.add(f"use {path}::{use['name']} (external: {use['source']})")
                return
            visit_as(target_id, f"{path}::{use['name']}")
            return
        if not public(item) and kind != "module":
            return
        visit_as(item_id, f"{path}::{item['name']}" if path else item["name"])

    def visit_as(item_id, path):
        item = index[str(item_id)]
        inner = item["inner"]
        kind = next(iter(inner))
        if (item_id, path) in seen:
            return
        seen.add((item_id, path))
        body = inner[kind]
        if kind == "module":
            lines.add(f"mod {path}")
            for child in body["items"]:
                visit(child, path)
        elif kind == "struct":
            lines.add(f"struct {path}")
            shape = body.get("kind")
            if isinstance(shape, dict) and "plain" in shape:
                for field in shape["plain"].get("fields", []):
                    f = index.get(str(field))
                    if f is not None and public(f):
                        lines.add(f"field {path}::{f['name']}")
            methods(path, body.get("impls", []))
        elif kind == "enum":
            lines.add(f"enum {path}")
            for variant in body.get("variants", []):
                v = index.get(str(variant))
                if v is not None:
                    lines.add(f"variant {path}::{v['name']}")
            methods(path, body.get("impls", []))
        elif kind == "trait":
            lines.add(f"trait {path}")
            for member_id in body.get("items", []):
                member = index.get(str(member_id))
                if member is not None:
                    lines.add(f"{next(iter(member['inner']))} {path}::{member['name']}")
        else:
            lines.add(f"{kind} {path}")

    root = index[str(doc["root"])]
    for child in root["inner"]["module"]["items"]:
        visit(child, "pg_changestream")
    return sorted(lines)


def main():
    bless = "--bless" in sys.argv[1:]
    current = listing(rustdoc_json())
    text = "".join(line + "\n" for line in current)
    if bless:
        with open(FIXTURE, "w") as f:
            f.write(text)
        print(f"public-api: wrote {len(current)} items to {os.path.relpath(FIXTURE, ROOT)}")
        return 0
    try:
        with open(FIXTURE) as f:
            expected = f.read()
    except FileNotFoundError:
        expected = ""
    if expected == text:
        print(f"public-api: {len(current)} items, as in {os.path.relpath(FIXTURE, ROOT)}")
        return 0
    diff = difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                "tests/public-api.txt", "the code")
    sys.stdout.writelines(diff)
    grown = len(current) - len(expected.splitlines())
    print(f"\npublic-api: the library's public surface changed ({grown:+d} items). If that "
          "is meant, run scripts/public_api.py --bless and commit tests/public-api.txt; "
          "otherwise narrow the visibility (pub(crate)) of what appeared.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

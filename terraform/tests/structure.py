#!/usr/bin/env python3
"""Structural checks of terraform/ and the environments' roots
(infra/environments/*) that need no terraform binary (none can be installed
here): every file parses as HCL (python-hcl2, which checkov brings); every
variable has a description and a type and is used; every output has a
description; every module pins its providers; only roots configure providers,
and each environment keeps its state in a GCS backend under a prefix of its
own; every module under modules/ is called by a root (an environment, or a
module's example/), with only the variables it declares and all it requires;
README.md's tables list every variable and output; and no state, plan or
credentials are in the tree.

Run: python3 terraform/tests/structure.py   (prints "N passed, M failed")
"""

import pathlib
import re
import sys

import hcl2

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPO = ROOT.parent
MODULES = ROOT / "modules"
ENVIRONMENTS = REPO / "infra" / "environments"


def tf_dirs(candidates):
    return sorted(p for p in candidates if p.is_dir() and any(p.glob("*.tf")))


# The roots: each environment, and each module's example (a root that calls
# the module as its users would, e.g. the rendered tenant template).
ENV_ROOTS = tf_dirs(ENVIRONMENTS.iterdir()) if ENVIRONMENTS.is_dir() else []
EXAMPLES = tf_dirs(MODULES.glob("*/example"))
ROOTS = ENV_ROOTS + EXAMPLES

failures = []
passed = 0


def check(ok, message):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(message)


def parse_dir(directory):
    """The parsed .tf files of one module and their joined text."""
    parsed, text = [], ""
    for path in sorted(directory.glob("*.tf")):
        source = path.read_text()
        text += source + "\n"
        try:
            parsed.append(hcl2.loads(source))
            check(True, "")
        except Exception as e:  # a parse error of any kind fails the check
            check(False, f"{path.relative_to(ROOT)}: does not parse: {e}")
    return parsed, text


def blocks(parsed, kind):
    """(name, body) of every `kind "name" { ... }` block."""
    for document in parsed:
        for block in document.get(kind, []):
            for name, body in block.items():
                yield name, body


def scalar(value):
    """An attribute's value: this parser wraps some of them in a list."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def unquote(value):
    value = scalar(value)
    return value.strip('"') if isinstance(value, str) else value


def module_dirs():
    return sorted(p for p in MODULES.iterdir() if p.is_dir())


def label(directory):
    """A directory as README.md's headings and the messages name it: from
    terraform/ (modules/cell), else from the repository (infra/environments/dev)."""
    try:
        return directory.relative_to(ROOT).as_posix()
    except ValueError:
        return directory.relative_to(REPO).as_posix()


check(len(ENV_ROOTS) >= 2, f"no environments' roots under {ENVIRONMENTS.relative_to(REPO)} (dev, prod)")
backend_prefixes = {}  # prefix -> environment


declared = {}  # module dir name -> (all variables, required variables)

for directory in module_dirs() + ROOTS:
    rel = label(directory)
    parsed, text = parse_dir(directory)
    check(parsed, f"{rel}: no .tf files")
    variables = dict(blocks(parsed, "variable"))
    for name, body in variables.items():
        check(
            bool(str(unquote(body.get("description", ""))).strip()),
            f"{rel}: variable {name} has no description",
        )
        check("type" in body, f"{rel}: variable {name} has no type")
        check(
            re.search(rf"\bvar\.{re.escape(name)}\b", text) is not None,
            f"{rel}: variable {name} is never used",
        )
    for name, body in blocks(parsed, "output"):
        check(
            bool(str(unquote(body.get("description", ""))).strip()),
            f"{rel}: output {name} has no description",
        )
    # Providers pinned, and a minimum terraform version.
    terraform_blocks = [scalar(t) for doc in parsed for t in doc.get("terraform", [])]
    check(terraform_blocks, f"{rel}: no terraform block (versions.tf)")
    for t in terraform_blocks:
        check("required_version" in t, f"{rel}: no required_version")
        for providers in t.get("required_providers", []):
            for provider, spec in scalar(providers).items():
                spec = scalar(spec)
                check(
                    isinstance(spec, dict) and unquote(spec.get("version")),
                    f"{rel}: provider {provider} has no version constraint",
                )
    # No credentials in provider blocks; providers configured by roots only
    # (a module with its own provider blocks cannot take for_each or
    # depends_on, and would pin its callers to one configuration).
    for name, body in blocks(parsed, "provider"):
        check(
            "credentials" not in body and "access_token" not in body,
            f"{rel}: provider {name} carries credentials",
        )
        check(
            directory.parent != MODULES,
            f"{rel}: a module configures provider {name}; its root must",
        )
    # Each environment's state: a GCS backend, under a prefix of its own
    # (the bucket is given at init); modules and examples have no backend.
    backends = [
        (kind, scalar(config))
        for t in terraform_blocks
        for backend in t.get("backend", [])
        for kind, config in scalar(backend).items()
    ]
    if directory in ENV_ROOTS:
        check(
            [kind for kind, _ in backends] == ["gcs"],
            f"{rel}: an environment keeps its state in one gcs backend",
        )
        for _, config in backends:
            prefix = unquote(config.get("prefix", "")) if isinstance(config, dict) else ""
            check(bool(prefix), f"{rel}: its gcs backend names no prefix")
            check(
                prefix not in backend_prefixes,
                f"{rel}: backend prefix {prefix} is {backend_prefixes.get(prefix)}'s too",
            )
            backend_prefixes.setdefault(prefix, rel)
            check(
                "bucket" not in config,
                f"{rel}: the state bucket is given at init (-backend-config), not in the repository",
            )
    else:
        check(not backends, f"{rel}: only an environment's root has a backend")
    if directory.parent == MODULES:
        required = {
            name for name, body in variables.items() if "default" not in body
        }
        declared[directory.name] = (set(variables), required)

# terraform/README.md's tables name every variable and output of each module
# (regenerate a table when a module changes).
readme = (ROOT / "README.md").read_text()
for directory in module_dirs() + ENV_ROOTS:
    rel = label(directory)
    section = readme.split(f"#### `{rel}`", 1)
    check(len(section) == 2, f"README.md has no section for {rel}")
    if len(section) < 2:
        continue
    section = section[1].split("#### ", 1)[0]
    parsed, _ = parse_dir(directory)
    for kind in ("variable", "output"):
        for name, _ in blocks(parsed, kind):
            check(
                f"| `{name}` |" in section,
                f"README.md's {rel} section does not list {kind} {name}",
            )

# Every module is called by a root, with the variables it declares.
called = set()
for directory in ROOTS + module_dirs():
    parsed, _ = parse_dir(directory)
    for name, body in blocks(parsed, "module"):
        source = unquote(body.get("source", ""))
        target = (directory / source).resolve()
        module = target.name
        check(
            target.parent == MODULES and module in declared,
            f"{label(directory)}: module {name} calls {source}, not a module here",
        )
        if module not in declared:
            continue
        called.add(module)
        variables, required = declared[module]
        meta = {"source", "for_each", "count", "depends_on", "providers", "version"}
        # The parser adds its own line markers.
        given = {k for k in body if not k.startswith("__")} - meta
        check(
            not (given - variables),
            f"module {name}: passes undeclared variables {sorted(given - variables)}",
        )
        check(
            not (required - given),
            f"module {name}: misses required variables {sorted(required - given)}",
        )
for module in declared:
    check(module in called, f"modules/{module} is not used by any root")

# Nothing that belongs in a state bucket or a secret store.
for path in [*ROOT.rglob("*"), *(ENVIRONMENTS.rglob("*") if ENVIRONMENTS.is_dir() else [])]:
    name = path.name
    check(
        not (
            name.endswith(".tfstate")
            or ".tfstate." in name
            or name.endswith(".tfplan")
            or name == ".terraform"
            or (name.endswith(".tfvars") and not name.endswith(".example"))
            or name.endswith(".json") and "credentials" in name
        ),
        f"{label(path)}: state, plans, real variables or credentials do not belong in the repository",
    )

for message in failures:
    print(f"FAIL {message}")
print(f"terraform: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)

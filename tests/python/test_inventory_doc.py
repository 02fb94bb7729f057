"""The inventory object, three ways, agree on its shape (issue 14 item 5):

- what the real gpuwardend returns (the `inventory` op on its read
  endpoint) and what `gpuwarden inventory -f json` prints, on test hosts in
  both models (per_gpu, the default, and per_clique), with attach handles
  present (every GPU promoted) so their shape is seen;
- docs/placement.md: the object's top-level keys (the `{...}` of its first
  paragraph), the table "What each deployable carries" (one row per field;
  a backticked `{...}` in a row's value is that field's shape, or its
  elements'; the last column says whether `-f json` prints the field);
- proto/PROTOCOL.md §8 "inventory": the result's keys, nested, with their
  types.

Both documents are parsed, not copied here, so a change to the daemon, the
CLI or either document that the others do not follow fails a test.
docs/cli.md's `-f json` example for `inventory` is checked against the CLI
too.
"""

import json
import pathlib
import re
import subprocess

import pytest

from gwdaemon import Daemon, build_dir

TOP = pathlib.Path(__file__).resolve().parents[2]
PLACEMENT_MD = (TOP / "docs" / "placement.md").read_text()
PROTOCOL_MD = (TOP / "proto" / "PROTOCOL.md").read_text()
CLI_MD = (TOP / "docs" / "cli.md").read_text()

BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
WARN = ["--isolation-policy", "warn", "--manage-vendors", "10de"]


# ---- a tiny shape language ----------------------------------------------------------------------
# A shape is a type name ("uint", "str", "BDF", "map" for a map whose keys are not given), a dict
# {key: shape} for a map with exactly those keys, or a list [shape] for an array of that shape.

def split_top(text, sep=","):
    """Split at ``sep`` outside (), {}, [] and double quotes."""
    out, depth, quoted, cur = [], 0, False, ""
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "({[":
            depth += 1
        elif not quoted and ch in ")}]":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


def braces(text):
    """``{a: T, b: {c: T}}`` -> {"a": T, "b": {"c": T}}; a key without a type maps to None."""
    text = text.strip()
    assert text.startswith("{") and text.endswith("}"), text
    out = {}
    for item in split_top(text[1:-1]):
        key, _, rest = item.partition(":")
        key = key.strip()
        assert re.fullmatch(r"[a-z_]+", key), (key, text)
        rest = rest.strip()
        if not rest:
            out[key] = None
        elif rest.startswith("{"):
            out[key] = braces(rest[:closing(rest) + 1])
        elif rest.startswith('"'):
            out[key] = "str"                       # a literal string value
        else:
            out[key] = rest.split()[0]
    return out


def closing(text):
    """Index of the brace closing the one at text[0]."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced: {text}")


def keys_of(shape):
    """The nested key structure of a shape, types dropped: {key: sub-structure or None}."""
    if isinstance(shape, dict):
        return {k: keys_of(v) for k, v in shape.items()}
    if isinstance(shape, list):
        return keys_of(shape[0])
    return None


def check(value, shape, where):
    """``value`` has ``shape`` exactly (every key, no other)."""
    if isinstance(shape, dict):
        assert isinstance(value, dict), (where, value)
        assert set(value) == set(shape), (where, sorted(value), sorted(shape))
        for k, sub in shape.items():
            check(value[k], sub, f"{where}.{k}")
    elif isinstance(shape, list):
        assert isinstance(value, list), (where, value)
        for i, v in enumerate(value):
            check(v, shape[0], f"{where}[{i}]")
    elif shape == "uint":
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, (where, value)
    elif shape == "str":
        assert isinstance(value, str), (where, value)
    elif shape == "BDF":
        assert isinstance(value, str) and BDF.match(value), (where, value)
    else:
        raise AssertionError(f"{where}: no rule for type {shape!r}")


# ---- proto/PROTOCOL.md §8 inventory ------------------------------------------------------------

def protocol_bullet_type(rest):
    """The type at the start of a PROTOCOL.md bullet's text (after ``key``:)."""
    rest = rest.strip()
    m = re.match(r"`(uint|str|BDF)`", rest)
    if m:
        return m.group(1)
    m = re.match(r"array of `(uint|str|BDF)`", rest)
    if m:
        return [m.group(1)]
    m = re.match(r"array of `(\{.*?\})`", rest)
    if m:
        return [braces(m.group(1))]
    if re.match(r"array\b.*\bof maps:?$", rest):
        return ["MAPS"]                           # the sub-bullets give the keys
    m = re.search(r"`(\{.*\})`", rest, re.S)
    if m:
        return braces(m.group(1))
    raise AssertionError(f"PROTOCOL.md: no type in {rest!r}")


def protocol_inventory():
    """The `inventory` result as PROTOCOL.md §8 documents it: a shape."""
    sec = PROTOCOL_MD[PROTOCOL_MD.index("### inventory\n"):]
    sec = sec[:sec.index("\n### ", 1)]
    # Bullets, with their continuation lines joined: (indent, key, text).
    bullets = []
    for line in sec.split("\n"):
        m = re.match(r"^( *)- `([a-z_]+)`: (.*)$", line)
        if m:
            bullets.append([len(m.group(1)), m.group(2), m.group(3)])
        elif bullets and line.startswith(" " * (bullets[-1][0] + 2)) and line.strip():
            bullets[-1][2] += " " + line.strip()
    top, stack = {}, []
    for indent, key, text in bullets:
        while stack and stack[-1][0] >= indent:
            stack.pop()
        shape = protocol_bullet_type(text)
        parent = stack[-1][1] if stack else top
        if shape == ["MAPS"]:
            elem = {}
            parent[key] = [elem]
            stack.append((indent, elem))
        else:
            parent[key] = shape
    return top


# ---- docs/placement.md ----------------------------------------------------------------------------

def placement_doc():
    """(top-level keys, {field: nested keys or None}, fields marked for -f json) from the doc."""
    first = PLACEMENT_MD.split("\n\n")[1]             # the paragraph after the title
    m = re.search(r"`(\{[^`]*\})`", first)
    assert m, "docs/placement.md: the first paragraph names no `{...}` object"
    top = braces(m.group(1))
    sec = PLACEMENT_MD[PLACEMENT_MD.index("## What each deployable carries"):]
    rows = []
    for line in sec.split("\n")[2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert rows and re.fullmatch(r"\| field \| value \| in `-f json` \|", rows[0]), rows[:1]
    fields, in_json = {}, set()
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 3, row
        names = re.findall(r"`([a-z_]+)`", cells[0])
        assert len(names) == 1, f"one field per row: {row}"
        shape = re.search(r"`(\{[^`]*\})`", cells[1])
        fields[names[0]] = keys_of(braces(shape.group(1))) if shape else None
        assert cells[2] in ("yes", "no"), row
        if cells[2] == "yes":
            in_json.add(names[0])
    return top, fields, in_json


def cli_doc_example():
    """docs/cli.md's `inventory -f json` example, parsed."""
    sec = CLI_MD[CLI_MD.index("## inventory\n"):]
    sec = sec[:sec.index("\n## ", 1)]
    return json.loads(re.search(r"```json\n(.*?)```", sec, re.S).group(1))


# ---- the daemon -----------------------------------------------------------------------------------

HOSTS = [("x299-3xa6000", []), ("sm4029-8xrtx5000", WARN)]


@pytest.fixture(scope="module", params=[(h, x, m) for h, x in HOSTS for m in ("per_gpu", "per_clique")],
                ids=lambda p: f"{p[0]}-{p[2]}")
def served(request, tmp_path_factory):
    """(the `inventory` op's result, `gpuwarden inventory -f json`'s output), every GPU promoted."""
    host, extra, model = request.param
    d = Daemon(tmp_path_factory.mktemp("inv"), host=host,
               extra=[*extra, "--inventory-model", model]).start()
    try:
        d.result("published", {"generation": d.result("inventory")["generation"]})
        op = d.result("inventory", endpoint=d.read)
        r = subprocess.run([str(build_dir() / "gpuwarden"), "inventory", "-f", "json", "--endpoint", d.read],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert d.result("inventory", endpoint=d.read)["generation"] == op["generation"]
    finally:
        assert d.stop() == 0, d.log.read_text()
    assert op["model"] == model
    return op, json.loads(r.stdout)


# ---- the documents agree with each other ------------------------------------------------------------

def test_placement_doc_and_protocol_list_the_same_keys():
    top, fields, _ = placement_doc()
    proto = protocol_inventory()
    assert keys_of(proto).keys() == top.keys()
    assert set(top) == {"generation", "host", "model", "deployables", "revision",
                        "published_revision"}, top                              # the parser found them
    assert keys_of(proto)["deployables"] == fields
    assert fields["attach_handles"] == {"type": None, "info": None}            # nested shapes were parsed
    assert fields["device"]["controlpath"] == {"type": None, "info": None}


def test_cli_doc_example_is_the_placement_docs_json_view():
    _, fields, in_json = placement_doc()
    ex = cli_doc_example()
    assert set(ex) == {"generation", "deployables"}
    for dep in ex["deployables"]:
        assert set(dep) == in_json
        for h in dep["attach_handles"]:
            assert set(h) == set(fields["attach_handles"])


# ---- the daemon agrees with the documents ----------------------------------------------------------

def test_inventory_op_has_the_documented_shape(served):
    op, _ = served
    proto = protocol_inventory()
    check(op, proto, "inventory")                # PROTOCOL.md: keys, nesting and types
    top, fields, _ = placement_doc()
    assert set(op) == set(top)
    assert keys_of(proto)["deployables"] == fields
    assert op["deployables"] and any(d["attach_handles"] for d in op["deployables"])


def test_inventory_op_values_are_as_documented(served):
    """The values docs/placement.md's table and PROTOCOL.md state outright."""
    op, _ = served
    host = op["host"]
    assert op["model"] in ("per_gpu", "per_clique")
    assert 1 <= op["generation"] < 2 ** 53
    firsts = [d["gpus"][0] for d in op["deployables"]]
    assert firsts == sorted(firsts)                     # in order of their lowest GPU address
    for d in op["deployables"]:
        assert d["gpus"] == sorted(d["gpus"]) and d["num_accelerators"] == len(d["gpus"]) >= 1
        if len(d["gpus"]) == 1 and op["model"] == "per_gpu":
            assert d["name"] == f"{host}_{d['gpus'][0]}"
        else:
            assert re.fullmatch(re.escape(host) + r"_(clique\d+|[0-9a-f:.]+)", d["name"]), d["name"]
        assert d["rc"] == "PGPU"
        assert 0 <= d["reserved"] <= d["num_accelerators"]
        for h in d["attach_handles"]:
            assert h["type"] == "PCI"
            a = json.loads(h["info"])
            assert h["info"] == json.dumps(a, sort_keys=True)
            assert f"{a['domain']}:{a['bus']}:{a['device']}.{a['function']}" in d["gpus"]
        assert d["device"]["type"] == "GPU" and re.fullmatch(r"[0-9a-f]{4}", d["device"]["vendor"])
        json.loads(d["device"]["std_board_info"])
        cp = d["device"]["controlpath"]
        a = json.loads(cp["info"])
        assert cp["type"] == "PCI" and f"{a['domain']}:{a['bus']}:{a['device']}.{a['function']}" == d["gpus"][0]
    if op["model"] == "per_clique":
        assert any(re.fullmatch(re.escape(host) + r"_clique\d+", d["name"]) for d in op["deployables"])


def test_cli_json_is_the_documented_view(served):
    op, cli = served
    _, fields, in_json = placement_doc()
    assert set(cli) == {"generation", "deployables"}
    assert cli["generation"] == op["generation"]
    assert len(cli["deployables"]) == len(op["deployables"])
    for c, o in zip(cli["deployables"], op["deployables"]):
        assert set(c) == in_json
        assert c == {k: o[k] for k in in_json}
    ex = cli_doc_example()["deployables"][0]
    assert set(cli["deployables"][0]) == set(ex)      # docs/cli.md shows these keys

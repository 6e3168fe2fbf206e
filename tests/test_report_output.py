"""``memscan report`` speaks lsmem: its table, options and JSON against real util-linux lsmem
reading the same machine exported with ``memscan sysfs export``; ``--json`` is the versioned
contract of docs/report-schema.json.

The schema is checked by a small walker of the JSON Schema keywords the schema uses (the
venv has no ``jsonschema``; where it is importable it checks the same documents too)."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import memscan
from memscan.cli import build_parser, main
from memscan.report import (
    COLUMNS,
    DEFAULT_COLUMNS,
    SCHEMA,
    TableOptions,
    build_report,
    format_report,
    format_summary,
    format_table,
    lsmem_size,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "docs" / "report-schema.json"
LSMEM = shutil.which("lsmem")
needs_lsmem = pytest.mark.skipif(LSMEM is None, reason="util-linux lsmem is not installed")
LSMEM5 = "RANGE,SIZE,STATE,REMOVABLE,BLOCK"
LSMEM7 = "RANGE,SIZE,STATE,REMOVABLE,BLOCK,NODE,ZONES"


def lsmem(root, *args):
    return subprocess.run(
        [LSMEM, "--sysroot", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def report(capsys, *args):
    """stdout of ``memscan report ARGS`` (asserting it succeeds)."""
    rc = main(["report", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def report_error(capsys, *args):
    """stderr of a ``memscan report ARGS`` that must fail (rc 2, argparse's too)."""
    try:
        rc = main(["report", *args])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def seed56(tmp_path_factory):
    """The seed machine (fragmented, seed 1: report's defaults) exported under 5.6 by the
    command itself: a post-patch kernel, so real lsmem meets no fault."""
    root = tmp_path_factory.mktemp("seed56")
    subprocess.run(
        [sys.executable, "-m", "memscan", "sysfs", "export", str(root), "--kernel", "5.6"],
        check=True,
        capture_output=True,
    )
    return root


# -- the table against real lsmem ------------------------------------------------------------


@needs_lsmem
@pytest.mark.parametrize(
    "opts",
    [
        [],
        ["-a"],
        ["-n"],
        ["-b"],
        ["-a", "-b", "-n"],
        ["-S", "none"],
        ["--split", "STATE"],
        ["--summary"],
        ["--summary=never"],
        ["--summary=only"],
        ["-b", "--summary=only"],
    ],
    ids=lambda o: " ".join(o) or "defaults",
)
@pytest.mark.parametrize("cols", [LSMEM5, LSMEM7, "block,size,state"])
def test_text_starts_with_what_lsmem_prints(seed56, capsys, cols, opts):
    """The text report begins with lsmem's whole output for the same columns and options
    (table, blank line, summary), byte for byte; memscan's findings follow a blank line."""
    want = lsmem(seed56, "-o", cols, *opts)
    got = report(capsys, "--kernel", "5.6", "-o", cols, *opts)
    assert got.startswith(want + "\n"), f"{got[: len(want) + 200]}\n---\n{want}"
    assert got[len(want) + 1 :].startswith("memscan report: seed machine")


@needs_lsmem
@pytest.mark.parametrize(
    "opts",
    [
        ["-r"],
        ["-r", "-n"],
        ["-r", "-b", "-a"],
        ["-J"],
        ["-J", "-b"],
        ["-J", "-a", "-b"],
        ["-P"],
        ["-P", "-n"],
        ["-P", "-a", "-b"],
        ["-r", "--summary=always"],
        ["-P", "--summary=always"],
        ["-J", "--summary=always", "-b"],
        ["-P", "--summary=never"],
    ],
)
@pytest.mark.parametrize("cols", [LSMEM5, LSMEM7])
def test_raw_and_json_tables_are_what_lsmem_prints(seed56, capsys, cols, opts):
    """-r, -P and -J print the table alone, exactly as lsmem -r / -P / -J do (the summary
    after it only with --summary=always)."""
    want = lsmem(seed56, "-o", cols, *opts)
    got = report(capsys, "--kernel", "5.6", "-o", cols, *opts)
    assert got == want
    if "-J" in opts and not any(o.startswith("--summary") for o in opts):
        assert json.loads(got) == json.loads(want)


@needs_lsmem
@pytest.mark.parametrize("summary", ["--summary=only", "--summary"])
@pytest.mark.parametrize("mode", ["-r", "-J", "-P"])
def test_summary_only_goes_with_the_text_table_alone(seed56, capsys, mode, summary):
    """lsmem refuses --summary=only (and a bare --summary, which means only) with -r/-J/-P
    (rc 1); memscan refuses it too, before any work (rc 2), and says why."""
    real = subprocess.run(
        [LSMEM, "--sysroot", str(seed56), mode, summary], capture_output=True, text=True
    )
    assert real.returncode != 0 and "mutually exclusive" in real.stderr
    err = report_error(capsys, mode, summary)
    assert "--summary=only" in err and "-P" in err


def test_pairs_names_are_shell_variables(capsys):
    """memscan's own STRUCT-PAGES column is spelled as a shell variable in -P output, so each
    line can be eval'd; values with shell metacharacters would be \\xHH-escaped."""
    from memscan.report import _pairs_escape

    out = report(capsys, "-P", "-o", "+NODE,ZONES", "-n")
    first = out.splitlines()[0]
    assert 'STRUCT_PAGES="' in first and "STRUCT-PAGES" not in first
    assert re.fullmatch(r'([A-Z_]+="[^"$`\\]*" ?)+', first), first
    assert _pairs_escape('a"b$c`d\\e\n') == "a\\x22b\\x24c\\x60d\\x5ce\\x0a"


@needs_lsmem
def test_offline_going_offline_and_zones_match_lsmem(tmp_path):
    """s390x from address 0 (memory0/valid_zones exists, so lsmem shows ZONES): an offline
    block (REMOVABLE empty, false in -J; zones Normal/Movable) and a going-offline one
    (on->off) split the ranges as in lsmem, in every output shape."""
    m = memscan.Machine.from_layout(
        {"arch": "s390x", "ranges": [{"start": 0, "size": "4G", "kind": "ram"}]}
    )
    assert m.offline(12, "6.1", dry_run=False).ok
    m.set_block_state(14, "going-offline")
    m.export_sysfs(tmp_path, kernel="6.1")
    r = build_report(m, kernel="6.1", post_kernel="6.1", progress=False)
    cases = [
        ({}, []),
        ({"all_blocks": True}, ["-a"]),
        ({"split": ("STATE",)}, ["-S", "state"]),
        ({"split": ("STATE", "ZONES")}, ["-S", "STATE,zones"]),
        ({"split": ()}, ["-S", "none"]),
        ({"in_bytes": True, "headings": False}, ["-b", "-n"]),
    ]
    for cols in (LSMEM5, LSMEM7):
        for kw, args in cases:
            for mode, flag in (("text", []), ("raw", ["-r"]), ("json", ["-J"])):
                o = TableOptions(columns=tuple(cols.split(",")), mode=mode, **kw)
                want = lsmem(tmp_path, "-o", cols, *args, *flag)
                if mode == "text":
                    assert format_report(r, table=o).startswith(want), (cols, args)
                else:
                    assert format_table(r, o) + "\n" == want, (cols, args, mode)
    text = format_table(r, TableOptions(columns=tuple(LSMEM7.split(","))))
    assert "on->off" in text and "Normal/Movable" in text


@needs_lsmem
def test_nodes_match_lsmem(tmp_path):
    """Two NUMA nodes: NODE (and its split) as lsmem reads the exported node links."""
    m = memscan.Machine.synthetic("2G", block_size="128M", nodes=2).populate("idle", seed=3)
    m.export_sysfs(tmp_path, kernel="6.1")
    r = build_report(m, kernel="6.1", post_kernel="6.1", progress=False)
    cols = "RANGE,SIZE,STATE,REMOVABLE,BLOCK,NODE"
    for args in ([], ["-a"], ["-J"]):
        o = TableOptions(
            columns=tuple(cols.split(",")),
            all_blocks="-a" in args,
            mode="json" if args == ["-J"] else "text",
        )
        want = lsmem(tmp_path, "-o", cols, *args)
        got = format_table(r, o) + "\n" if o.mode == "json" else format_report(r, table=o)
        assert got.startswith(want)
    assert {x["node"] for x in json.loads(lsmem(tmp_path, "-J", "-o", "NODE"))["memory"]} == {0, 1}


@needs_lsmem
@pytest.mark.parametrize("size", ["3840M", "1152M", "4G", "130944M", "1T"])
def test_sizes_are_spelled_as_lsmem_spells_them(tmp_path, size):
    """SIZE and the summary in lsmem's human units (one decimal, rounded as lsmem rounds)."""
    m = memscan.Machine.from_layout(
        {
            "arch": "x86_64",
            "block_size": "128M",
            "ranges": [{"start": "4G", "size": size, "kind": "ram"}],
        }
    )
    m.set_block_state(int(m.blocks()[3]), "offline")
    m.export_sysfs(tmp_path, kernel="6.1")
    r = build_report(m, kernel="6.1", post_kernel="6.1", progress=False)
    for in_bytes, args in ((False, []), (True, ["-b"])):
        want = lsmem(tmp_path, "--summary=only", *args).splitlines()
        assert format_summary(r, in_bytes) == [x for x in want if x], size
        table = lsmem(tmp_path, "-o", "SIZE", "--summary=never", *args)
        assert format_table(r, TableOptions(columns=("SIZE",), in_bytes=in_bytes)) + "\n" == table


def test_lsmem_size_rounding():
    gib = 1 << 30
    assert [lsmem_size(x) for x in (0, 512, 2 * gib, 190 * gib, 3840 << 20)] == [
        "0B",
        "512B",
        "2G",
        "190G",
        "3.8G",
    ]
    # the tenth rounds half up from the truncated thousandths; .95 and up is the next unit
    assert lsmem_size(gib + gib * 149 // 1000) == "1.1G"
    assert lsmem_size(gib + gib * 150 // 1000 + 1) == "1.2G"
    assert lsmem_size(gib + gib * 96 // 100) == "2G"


# -- each option ---------------------------------------------------------------------------


def _header(out):
    return out.splitlines()[0].split()


def test_default_columns_and_output_list(capsys):
    out = report(capsys)
    assert _header(out) == list(DEFAULT_COLUMNS)
    # case-insensitive names, in the order given
    assert _header(report(capsys, "-o", "block,Size,STATE")) == ["BLOCK", "SIZE", "STATE"]
    # +LIST appends to the defaults, as lsmem's -o +LIST
    out = report(capsys, "-o", "+node,ZONES,offline")
    assert _header(out) == [*DEFAULT_COLUMNS, "NODE", "ZONES", "OFFLINE"]
    rows = out.split("\n\n")[0].splitlines()[1:]
    assert [x.split()[-1] for x in rows] == ["EINVAL", "EBUSY", "EINVAL"]
    assert [x.split()[-2] for x in rows] == ["None", "Normal", "None"]  # lsmem's spelling


def test_output_list_refuses_unknown_names(capsys):
    err = report_error(capsys, "-o", "RANGE,SIZ")
    assert "unknown column 'SIZ'" in err
    assert all(name in err for name in COLUMNS)  # lists the known ones
    assert "empty column name" in report_error(capsys, "-o", "RANGE,,SIZE")
    # + only at the start, as in lsmem
    assert "unknown column '+SIZE'" in report_error(capsys, "-o", "RANGE,+SIZE")


def test_memscan_columns(capsys):
    """POST (post-patch removable), STRUCT-PAGES (summed over the range), OFFLINE."""
    d = json.loads(report(capsys, "-J", "-a", "-o", "BLOCK,REMOVABLE,POST,STRUCT-PAGES,OFFLINE"))[
        "memory"
    ]
    rep = json.loads(report(capsys, "--json"))
    assert [x["block"] for x in d] == [str(b["block"]) for b in rep["blocks"]]
    assert [x["struct-pages"] for x in d] == [b["struct_pages_read"] for b in rep["blocks"]]
    assert all(x["post"] is True for x in d)
    assert [x["offline"] for x in d] == [b["offline_errno"] or "ok" for b in rep["blocks"]]
    assert d[-1]["removable"] is None and d[0]["removable"] is False  # memory96 faults
    merged = json.loads(report(capsys, "-J", "-o", "BLOCK,STRUCT-PAGES"))["memory"]
    assert sum(x["struct-pages"] for x in merged) == rep["totals"]["struct_pages_read"]


def test_bytes(capsys):
    out = report(capsys, "-b", "-o", "SIZE,BLOCK,REMOVABLE")
    rows = out.split("\n\n")[0].splitlines()[1:]
    assert [x.split()[0] for x in rows] == [str(2 << 30), str(188 << 30), str(2 << 30)]
    assert f"Memory block size:{2 << 30:>21}" in out  # the summary in bytes too, as lsmem -b
    assert json.loads(report(capsys, "-J", "-b", "-o", "SIZE"))["memory"][0]["size"] == 2 << 30
    assert json.loads(report(capsys, "-J", "-o", "SIZE"))["memory"][0]["size"] == "2G"


def test_json_table_shape(capsys):
    d = json.loads(report(capsys, "-J", "-o", LSMEM7))
    assert list(d) == ["memory"]
    assert [list(x) for x in d["memory"]] == [[c.lower() for c in LSMEM7.split(",")]] * 3
    x = d["memory"][1]
    assert (x["block"], x["removable"], x["node"], x["zones"]) == ("2-95", False, 0, "Normal")
    assert d["memory"][2]["removable"] is None  # the read faults: neither true nor false


def test_raw_and_noheadings(capsys):
    raw = report(capsys, "-r")
    lines = raw.splitlines()
    assert lines[0] == " ".join(DEFAULT_COLUMNS) and len(lines) == 4  # no summary, no findings
    assert "  " not in raw and "FAULT" in lines[3]
    assert report(capsys, "-r", "-n").splitlines() == lines[1:]
    text = report(capsys, "-n")
    assert text.splitlines()[0].startswith("0x0000000000000000-0x000000007fffffff")
    assert "Memory block size:" in text  # -n drops the header line only, as in lsmem


def test_split(capsys):
    """--split decides merging: none merges every contiguous run; a listed column splits
    even when not shown (as lsmem -S); a column that cannot split is refused."""

    def blocks(*args):
        return [x["block"] for x in json.loads(report(capsys, "-J", *args))["memory"]]

    assert blocks() == ["0", "2-95", "96"]  # REMOVABLE splits off the FAULT
    assert blocks("-S", "none") == ["0", "2-96"]
    assert blocks("-S", "state") == ["0", "2-96"]
    assert blocks("-o", "RANGE,BLOCK") == ["0", "2-96"]  # default: only shown columns split
    assert blocks("-o", "RANGE,BLOCK", "-S", "removable") == ["0", "2-95", "96"]
    assert blocks("-o", "BLOCK,OFFLINE") == ["0", "2-95", "96"]  # EINVAL, EBUSY, EINVAL
    err = report_error(capsys, "-S", "SIZE")
    assert "'SIZE' does not decide merging" in err and "STATE, REMOVABLE, NODE" in err
    assert "unknown column 'foo'" in report_error(capsys, "-S", "state,foo")


def test_all(capsys):
    rows = report(capsys, "-a", "-r", "-n", "-o", "BLOCK").split()
    assert rows == [str(b) for b in [0, *range(2, 97)]]


def test_zones_fault_is_shown_not_raised(capsys):
    """A valid_zones read that BUGs on the debug kernel (test_pages_in_a_zone samples a
    poisoned struct page) shows FAULT, as REMOVABLE does; -J has null; --json says why."""
    m = memscan.Machine.synthetic("1G", block_size="128M")
    b = int(m.blocks()[-1])
    m.set_pages(
        b * m.geometry.pages_per_block + (1 << (m.geometry.max_order - 1)),
        1,
        memscan.PageKind.UNINIT,
    )
    r = build_report(m, kernel="5.5+debug", progress=False)
    o = TableOptions(columns=("BLOCK", "REMOVABLE", "ZONES"), all_blocks=True)
    rows = format_table(r, o).splitlines()
    assert rows[-1].split() == [str(b), "FAULT", "FAULT"] and rows[1].split()[2] == "Normal"
    j = json.loads(format_table(r, TableOptions(columns=("ZONES",), mode="json")))
    assert j["memory"][-1]["zones"] is None
    assert r.to_json()["blocks"][-1]["valid_zones_fault"]["function"] == "test_pages_in_a_zone"
    assert "Faults reading valid_zones" in format_report(r)


def test_no_valid_zones_file_is_empty_not_a_crash():
    """arm64 5.5 has no CONFIG_MEMORY_HOTREMOVE: no valid_zones file, ZONES empty."""
    m = memscan.Machine.synthetic("8G", arch="arm64")
    r = build_report(m, kernel="5.5", progress=False)
    assert all(b.valid_zones is None and b.valid_zones_fault is None for b in r.blocks)
    j = json.loads(format_table(r, TableOptions(columns=("BLOCK", "ZONES"), mode="json")))
    assert all(x["zones"] is None for x in j["memory"])


def test_text_has_no_none_and_hex_pfns(capsys):
    """No Python None in any text line (a missing value is empty in the table as in lsmem,
    "-" elsewhere), and every pfn in hex."""
    for args in ([], ["-a"], ["--kernel", "5.5", "-a"], ["--synthetic", "2G", "-a"]):
        out = report(capsys, *args)
        assert not re.search(r"\bNone\b", out), args
        assert not re.search(r"pfn (?!0x)", out), args
        assert "pfn 0x" in out or args[:1] == ["--synthetic"]


def test_json_and_table_options_are_apart(capsys):
    assert "the table options" in report_error(capsys, "--json", "-o", "RANGE")
    assert "-b" in report_error(capsys, "--json", "-b")
    report_error(capsys, "--json", "-J")  # argparse: not allowed with each other
    report_error(capsys, "-J", "-r")


def test_help_documents_every_option_with_its_default():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    rp = sub.choices["report"]
    for action in rp._actions:
        if action.dest == "help":
            continue
        assert action.help and "default" in action.help, action.option_strings
    text = rp.format_help()
    assert "examples:" in text and text.count("\n  memscan report ") >= 3
    for name in COLUMNS:
        assert f"  {name}  " in text
    assert SCHEMA in text and "-J" in text


# -- --json: the versioned contract ----------------------------------------------------------

KEYWORDS = {
    "$schema",
    "$id",
    "$defs",
    "$ref",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "const",
    "enum",
    "minimum",
    "maximum",
    "anyOf",
}
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(value, sch, root, path="$"):
    """The draft 2020-12 keywords the schema uses, checked by hand."""
    if "$ref" in sch:
        name = sch["$ref"].removeprefix("#/$defs/")
        return schema_errors(value, root["$defs"][name], root, path)
    if "anyOf" in sch:
        if all(schema_errors(value, s, root, path) for s in sch["anyOf"]):
            return [f"{path}: matches none of anyOf"]
        return []
    errs = []
    if "type" in sch:
        types = sch["type"] if isinstance(sch["type"], list) else [sch["type"]]
        if not any(TYPES[t](value) for t in types):
            return [f"{path}: {value!r} is not {types}"]
    if "const" in sch and value != sch["const"]:
        errs.append(f"{path}: {value!r} is not {sch['const']!r}")
    if "enum" in sch and not any(value == e and type(value) is type(e) for e in sch["enum"]):
        errs.append(f"{path}: {value!r} not in {sch['enum']}")
    if TYPES["number"](value):
        if "minimum" in sch and value < sch["minimum"]:
            errs.append(f"{path}: {value} < {sch['minimum']}")
        if "maximum" in sch and value > sch["maximum"]:
            errs.append(f"{path}: {value} > {sch['maximum']}")
    if isinstance(value, dict):
        props = sch.get("properties", {})
        errs += [f"{path}: missing {k!r}" for k in sch.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                errs += schema_errors(v, props[k], root, f"{path}.{k}")
            elif sch.get("additionalProperties") is False:
                errs.append(f"{path}: unexpected key {k!r}")
    if isinstance(value, list) and "items" in sch:
        for i, v in enumerate(value):
            errs += schema_errors(v, sch["items"], root, f"{path}[{i}]")
    return errs


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA_FILE.read_text())


def test_schema_uses_only_the_checked_keywords(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema"] == {"const": SCHEMA}

    def walk(s):
        assert set(s) <= KEYWORDS, set(s) - KEYWORDS
        for k in ("properties", "$defs"):
            for sub in s.get(k, {}).values():
                walk(sub)
        for sub in [s.get("items"), s.get("additionalProperties"), *s.get("anyOf", [])]:
            if isinstance(sub, dict):
                walk(sub)

    walk(schema)


def _validate(doc, schema):
    errs = schema_errors(doc, schema, schema)
    try:
        import jsonschema
    except ImportError:
        pass
    else:  # pragma: no cover - not in the venv
        jsonschema.Draft202012Validator(schema).validate(doc)
    return errs


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--kernel", "5.5"],
        ["--kernel", "5.6"],
        ["--synthetic", "2G", "--block-size", "128M", "--nodes", "2"],
        ["--snapshot", str(ROOT / "tests/groundtruth/offline-6.1-debian/snapshot.tar.xz")],
    ],
    ids=["seed", "seed-5.5", "seed-5.6", "synthetic", "snapshot"],
)
def test_json_validates_against_the_schema(capsys, schema, args):
    doc = json.loads(report(capsys, "--json", *args))
    assert doc["schema"] == SCHEMA
    assert _validate(doc, schema) == []


def test_schema_check_can_fail(capsys, schema):
    doc = json.loads(report(capsys, "--json"))
    bad = json.loads(json.dumps(doc))
    bad["blocks"][0]["removable"] = "no"
    bad["extra"]["offline_outcomes"][0] = {"EBUSY failure to isolate range": 94}
    bad["run_time_s"] = 0.1
    errs = schema_errors(bad, schema, schema)
    assert any("blocks[0].removable" in e for e in errs)
    assert any("unexpected key 'EBUSY failure" in e for e in errs)
    assert any("unexpected key 'run_time_s'" in e for e in errs)


def test_json_runs_differ_only_in_run(capsys):
    a = json.loads(report(capsys, "--json"))
    b = json.loads(report(capsys, "--json"))
    assert set(a["run"]) == {"seconds", "snapshot_build_seconds"} and a["run"]["seconds"] >= 0
    a.pop("run"), b.pop("run")
    assert a == b


def test_json_removable_is_one_type_everywhere(capsys):
    """0, 1 or null (the read faults), in blocks and ranges alike, pre and post."""
    d = json.loads(report(capsys, "--json"))
    values = [
        x[k]
        for part in ("blocks", "ranges")
        for x in d[part]
        for k in ("removable", "removable_post")
    ]
    assert set(values) == {0, 1, None} and not any(isinstance(v, bool) for v in values)
    assert d["blocks"][-1]["removable"] is None and d["blocks"][-1]["fault"]["block"] == 96
    assert d["ranges"][-1]["removable"] is None
    assert [(x["first_block"], x["last_block"]) for x in d["ranges"]] == [(0, 0), (2, 95), (96, 96)]
    c = d["extra"]["confusion_post"]
    assert sum(x["count"] for x in c["fp_reasons"]) == c["fp"] == 96
    assert sum(x["count"] for x in d["extra"]["offline_outcomes"]) == len(d["blocks"])


def test_patch_roles_are_checked():
    """--kernel must scan removable (pre-patch) and --post-kernel must not: otherwise the
    comparison is not the patch's, and the command says so (it still runs)."""
    import subprocess
    import sys

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "memscan", "report", *a], capture_output=True, text=True
        )

    assert "warning" not in run().stderr
    r = run("--kernel", "6.1")
    assert r.returncode == 0 and "pre-patch kernel 6.1 has 53cdc1cb29e8" in r.stderr
    r = run("--post-kernel", "5.5")
    assert r.returncode == 0 and "post-patch kernel 5.5 still scans" in r.stderr

"""The vocabularies Rust and Python share have one home, the core (``_core.vocabulary()``).
Where Python still declares a name for type checkers and readers (dataclass fields, the
stubs' TypedDicts and enum members), these tests fail when the declaration drifts from what
the core defines or returns."""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import numpy as np
import pytest

import memscan
from memscan import _core, kinds
from memscan.errors import ArgumentError, GeometryError
from memscan.workload import KNOBS, Workload

PKG = pathlib.Path(memscan.__file__).parent
VOCAB = _core.vocabulary()


def stub_classes(path: pathlib.Path) -> dict:
    """Class name -> the names declared in its body, from a .pyi file."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            names = []
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.append(item.target.id)
                elif isinstance(item, ast.Assign):
                    names += [t.id for t in item.targets if isinstance(t, ast.Name)]
            out[node.name] = names
    return out


CORE_STUB = stub_classes(PKG / "_core.pyi")


def test_workload_fields_are_the_core_knobs_in_order_with_its_defaults():
    fields = [f.name for f in dataclasses.fields(Workload)]
    assert fields == list(KNOBS)
    w = Workload()
    for name, (_kind, default) in KNOBS.items():
        assert getattr(w, name) == default, name


@pytest.mark.parametrize("name", list(KNOBS))
def test_each_knob_is_converted_by_its_kind(name):
    kind = KNOBS[name][0]
    m = memscan.Machine.synthetic("1G")
    wrong = {"fraction": "a lot", "count": -1, "index": 0.5, "weights": 3, "flag": "yes"}[kind]
    with pytest.raises(ArgumentError, match=name):
        m._core.populate({name: wrong}, 0)


def test_an_unknown_knob_names_the_known_ones():
    m = memscan.Machine.synthetic("1G")
    with pytest.raises(ArgumentError, match="unknown knob.*free_whole"):
        m._core.populate({"frea": 0.1}, 0)


def test_result_dataclasses_carry_the_core_counters():
    def names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    offline = names(memscan.Offline)
    n = len(VOCAB["offline_counters"])
    assert offline[-n:] == VOCAB["offline_counters"]
    for cls in (memscan.Removable, memscan.ScanResult):
        got = [f for f in names(cls) if f in VOCAB["scan_counters"]]
        assert got == VOCAB["scan_counters"], cls
    # the reference model's own cost record counts the same things
    from memscan.reference import Cost

    assert names(Cost) == VOCAB["scan_counters"]


def test_python_tables_are_the_cores():
    from memscan import kinds
    from memscan.kpageflags import KPF
    from memscan.report import STRUCT_PAGE
    from memscan.sources.layout import ARCH_ALIASES

    assert KPF == dict(VOCAB["kpf_bits"])
    assert STRUCT_PAGE == VOCAB["struct_page_bytes"]
    assert set(ARCH_ALIASES.values()) == set(VOCAB["arches"])
    assert {a: ARCH_ALIASES[a] for a, _ in VOCAB["arch_aliases"]} == dict(VOCAB["arch_aliases"])
    assert kinds.SEC_PRESENT | kinds.SEC_DEVICE == (
        dict(VOCAB["section_flags"])["PRESENT"] | dict(VOCAB["section_flags"])["DEVICE"]
    )


@pytest.fixture(scope="module")
def seed():
    m = memscan.Machine.seed()
    m.populate("fragmented", seed=3)
    return m


def runtime_results(m):
    c = m._core
    blocks = [int(b) for b in m.blocks()[:4]]
    flags = c.kpageflags_export(0, 512)
    raw = np.zeros(64 * 8, dtype=np.uint8)
    return {
        "_GeometryDict": c.geometry(),
        "_SectionsDict": c.sections(),
        "_RemovableDict": c.removable(blocks[0], "5.5"),
        "_ScanColumns": c.scan(blocks, "5.5"),
        "_OfflineDict": c.offline(blocks[1], "6.1"),
        "_OfflineColumns": c.offline_many(blocks, "6.1"),
        "_ValidZonesDict": c.valid_zones(blocks[0], "6.1"),
        "_SectionRemovableDict": c.is_mem_section_removable(
            blocks[0] * m.geometry.pages_per_block, m.geometry.pages_per_section, "5.5"
        ),
        "_KpageflagsImportDict": m.copy()._core.kpageflags_import(0, flags),
        "_MemmapImportDict": m.copy()._core.memmap_import(0, raw, _core.X86_VMEMMAP_BASE),
        "_Vocabulary": _core.vocabulary(),
        "_KernelProfileDict": _core.kernel_profile("5.5+debug"),
    }


def test_stub_typed_dicts_have_exactly_the_keys_the_core_returns(seed):
    got = runtime_results(seed)
    for name, value in got.items():
        assert name in CORE_STUB, name
        assert sorted(CORE_STUB[name]) == sorted(value), name
    fault = seed._core.removable(96, "5.5+debug")["fault"]
    assert sorted(CORE_STUB["_FaultDict"]) == sorted(fault)


def test_kinds_stub_declares_the_members_built_from_the_core():
    stub = stub_classes(PKG / "kinds.pyi")
    for cls in (kinds.PageKind, kinds.MigrateType, kinds.BlockState):
        assert [x for x in stub[cls.__name__] if x.isupper()] == [e.name for e in cls]
    assert [(e.name, int(e)) for e in kinds.PageKind] == VOCAB["page_kinds"]
    assert [e.sysfs for e in kinds.BlockState] == [n for n, _ in VOCAB["block_states"]]


def test_every_arch_alias_builds_its_arch():
    for alias, arch in kinds.ARCH_ALIASES.items():
        g = _core.default_geometry(alias.upper())
        assert g == _core.default_geometry(arch), alias
    with pytest.raises(GeometryError, match="known: x86_64, arm64, ppc64, s390x"):
        _core.default_geometry("sparc")


def test_geometry_keys_are_the_ones_the_core_accepts():
    g = _core.default_geometry("x86_64")
    assert sorted(g) == sorted(VOCAB["geometry_keys"])
    with pytest.raises(GeometryError, match='unknown geometry key "pageblock" .known: page_shift'):
        _core.default_geometry("x86_64", {"pageblock": 9})


def test_core_errors_arrive_as_their_exception_classes(seed):
    with pytest.raises(memscan.NoSuchBlockError):
        seed._core.removable(10**9, "5.5")
    with pytest.raises(memscan.PfnRangeError):
        seed._core.page(10**15)
    with pytest.raises(ArgumentError, match="unknown kernel|kernel"):
        seed._core.removable(0, "2.6")
    with pytest.raises(memscan.LayoutError, match="unknown zone"):
        _core.CoreMachine.build(
            "x86_64", {}, 1 << 30, [(0, 1 << 18, 0)], [], [], [(0, "Hi", 0, 1)], [], []
        )

//! Core results as Python values, each driven by its struct's field table (`FIELDS` in the
//! core), so a single result and a numpy column of many come from the same list; the
//! vocabulary the Python package builds its enums and tables from; workload knobs by kind.

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::argument;
use crate::cost::{Field, ScanCost, STRUCT_PAGE_BYTES};
use crate::geometry::{Arch, Geometry, GeometryOverrides};
use crate::kernel::offline::{Errno, OfflineWork};
use crate::kernel::pageinfo::Fault;
use crate::kernel::removable::BlockScan;
use crate::page::{kind, MigrateType, ZoneType, HUGETLB_FREE, LRU_BATCH, ZEROED_HOLE};
use crate::topology::{BlockState, UninitMemmap};
use crate::workload::{KnobKind, KnobValue, Workload, KNOBS};

/// Set every field of `v` in `d`.
pub(super) fn set_fields<T>(d: &Bound<'_, PyDict>, fields: &[Field<T>], v: &T) -> PyResult<()> {
    for (name, get) in fields {
        d.set_item(*name, get(v))?;
    }
    Ok(())
}

/// Set one numpy column per field, over `items` (`pick` finds the struct in an item).
pub(super) fn set_columns<I, T>(
    d: &Bound<'_, PyDict>,
    fields: &[Field<T>],
    items: &[I],
    pick: impl Fn(&I) -> &T,
) -> PyResult<()> {
    for (name, get) in fields {
        let column: Vec<u64> = items.iter().map(|i| get(pick(i))).collect();
        d.set_item(*name, column.into_pyarray(d.py()))?;
    }
    Ok(())
}

pub(super) fn fault_dict<'py>(
    py: Python<'py>,
    g: &Geometry,
    f: &Fault,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("function", f.function)?;
    d.set_item("access", f.access)?;
    d.set_item("pfn", f.pfn)?;
    d.set_item("phys", g.pfn_to_phys(f.pfn))?;
    d.set_item("section", g.pfn_to_section(f.pfn))?;
    d.set_item("block", g.pfn_to_block(f.pfn))?;
    d.set_item("kind", f.kind.name())?;
    d.set_item("message", &f.message)?;
    Ok(d)
}

pub(super) fn fault_opt<'py>(
    py: Python<'py>,
    g: &Geometry,
    f: Option<&Fault>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    f.map(|f| fault_dict(py, g, f)).transpose()
}

pub(super) fn scan_dict<'py>(
    py: Python<'py>,
    g: &Geometry,
    s: &BlockScan,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("block", s.block)?;
    d.set_item("value", s.value)?;
    d.set_item("scanned", s.scanned)?;
    d.set_item("fault", fault_opt(py, g, s.fault.as_ref())?)?;
    d.set_item("note", fault_opt(py, g, s.note.as_ref())?)?;
    match &s.first_unmovable {
        Some(u) => {
            let ud = PyDict::new(py);
            ud.set_item("pfn", u.pfn)?;
            ud.set_item("reason", u.reason)?;
            ud.set_item("movable_zone_warning", u.movable_zone_warning)?;
            d.set_item("first_unmovable", ud)?;
        }
        None => d.set_item("first_unmovable", py.None())?,
    }
    set_fields(&d, &ScanCost::FIELDS, &s.cost)?;
    Ok(d)
}

/// A workload from a dict of knobs, each converted by its kind in the core's table.
pub(super) fn workload_from_dict(d: &Bound<'_, PyDict>) -> PyResult<Workload> {
    let mut w = Workload::default();
    for (k, v) in d.iter() {
        let key: String = k.extract()?;
        let knob = Workload::knob(&key)?;
        let bad = |what: &str| argument(format!("workload {key}: {what}"));
        let value = match knob.kind {
            KnobKind::Fraction => {
                KnobValue::Number(v.extract().map_err(|_| bad("expected a number"))?)
            }
            KnobKind::Count | KnobKind::Index => KnobValue::Count(
                v.extract()
                    .map_err(|_| bad("expected a non-negative integer"))?,
            ),
            KnobKind::Weights => {
                KnobValue::Weights(v.extract().map_err(|_| bad("expected a list of weights"))?)
            }
            KnobKind::Flag => KnobValue::Flag(v.extract().map_err(|_| bad("expected a bool"))?),
        };
        w.set_knob(&key, value)?;
    }
    Ok(w)
}

fn knob_default(py: Python<'_>, v: KnobValue) -> PyResult<Bound<'_, PyAny>> {
    Ok(match v {
        KnobValue::Number(x) => x.into_pyobject(py)?.into_any(),
        KnobValue::Count(x) => x.into_pyobject(py)?.into_any(),
        KnobValue::Weights(x) => x.into_pyobject(py)?.into_any(),
        KnobValue::Flag(x) => x.into_pyobject(py)?.to_owned().into_any(),
    })
}

/// Geometry overrides from a layout's `geometry` dict and the kernel whose defaults apply.
pub(super) fn geometry_overrides(
    geometry: &std::collections::HashMap<String, u64>,
    arch: Arch,
    kernel: Option<&str>,
) -> crate::Result<GeometryOverrides> {
    let kernel = kernel
        .map(|k| crate::kernel::profile::KernelProfile::parse(k, arch).map(|p| p.version))
        .transpose()?;
    GeometryOverrides::from_pairs(geometry.iter().map(|(k, v)| (k.as_str(), *v)), kernel)
}

/// The vocabularies Rust and Python share, each defined once in the core: page kinds and
/// their fields, migratetypes, zones, block states, section flags, kpageflags bits, the
/// counters of scans, offline attempts and imports, workload knobs with their defaults,
/// arches and their aliases, geometry keys, and the struct page size.
pub(super) fn vocabulary(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        "page_kinds",
        kind::NAMES
            .iter()
            .zip(0u8..)
            .map(|(n, v)| (*n, v))
            .collect::<Vec<_>>(),
    )?;
    d.set_item(
        "page_fields",
        [
            ("ZEROED_HOLE", ZEROED_HOLE),
            ("HUGETLB_FREE", HUGETLB_FREE),
            ("LRU_BATCH", LRU_BATCH),
        ],
    )?;
    d.set_item(
        "migratetypes",
        MigrateType::ALL
            .iter()
            .map(|m| (m.name(), *m as u8))
            .collect::<Vec<_>>(),
    )?;
    d.set_item("zones", ZoneType::ALL.map(ZoneType::name))?;
    d.set_item(
        "block_states",
        BlockState::ALL
            .iter()
            .map(|s| (s.name(), *s as u8))
            .collect::<Vec<_>>(),
    )?;
    d.set_item("section_flags", crate::sections::SECTION_FLAGS)?;
    d.set_item("kpf_bits", crate::kpageflags::KPF_BITS)?;
    d.set_item("scan_counters", ScanCost::FIELDS.map(|f| f.0))?;
    d.set_item("offline_counters", OfflineWork::FIELDS.map(|f| f.0))?;
    d.set_item(
        "kpageflags_import_counters",
        crate::kpageflags::ImportStats::FIELDS.map(|f| f.0),
    )?;
    d.set_item(
        "memmap_import_counters",
        crate::memmap::MemmapStats::FIELDS.map(|f| f.0),
    )?;
    d.set_item(
        "errnos",
        [
            Errno::Einval,
            Errno::Ebusy,
            Errno::Eperm,
            Errno::Eintr,
            Errno::Enomem,
        ]
        .map(Errno::name),
    )?;
    let defaults = Workload::default();
    let knobs = PyDict::new(py);
    for k in &KNOBS {
        knobs.set_item(
            k.name,
            (k.kind.name(), knob_default(py, (k.get)(&defaults))?),
        )?;
    }
    d.set_item("workload_knobs", knobs)?;
    d.set_item("arches", Arch::ALL.map(Arch::name))?;
    d.set_item(
        "arch_aliases",
        Arch::ALIASES.map(|(alias, a)| (alias, a.name())),
    )?;
    d.set_item("geometry_keys", GeometryOverrides::KEYS)?;
    d.set_item("uninit_memmap", UninitMemmap::NAMES)?;
    d.set_item("struct_page_bytes", STRUCT_PAGE_BYTES)?;
    Ok(d)
}

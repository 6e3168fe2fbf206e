//! The PyO3 binding layer over the pure-Rust model, by concern: `errors` (core errors and
//! panics as memscan's exception classes), `convert` (results from the core's field tables,
//! the shared vocabulary, workload knobs), `machine` (the `CoreMachine` class); the module's
//! free functions are here.

mod convert;
mod errors;
mod machine;

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::geometry::{Arch, Geometry, GeometryOverrides};
use crate::kernel::profile::KernelProfile;
use errors::guard;
pub use machine::CoreMachine;

/// The geometry an arch (and a kernel, where its defaults differ) gives a machine whose RAM
/// ends at `boot_mem_end`, with `geometry`'s overrides applied: the one home of the defaults.
#[pyfunction]
#[pyo3(signature = (arch, geometry=HashMap::new(), boot_mem_end=0, kernel=None))]
fn default_geometry(
    py: Python<'_>,
    arch: &str,
    geometry: HashMap<String, u64>,
    boot_mem_end: u64,
    kernel: Option<&str>,
) -> PyResult<HashMap<&'static str, u64>> {
    errors::detached(py, || {
        let arch = Arch::parse(arch)?;
        let ov = convert::geometry_overrides(&geometry, arch, kernel)?;
        let g = Geometry::for_arch(arch, ov, boot_mem_end)?;
        Ok(HashMap::from(GeometryOverrides::values_of(&g)))
    })
}

/// The vocabularies Rust and Python share (see `convert::vocabulary`).
#[pyfunction]
fn vocabulary(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    convert::vocabulary(py)
}

/// A kernel profile as the core parses it: its fields and every named predicate the models
/// use, so Python reads behaviours from the one parser (memscan.kernel.Kernel).
#[pyfunction]
#[pyo3(signature = (spec, arch="x86_64"))]
fn kernel_profile<'py>(py: Python<'py>, spec: &str, arch: &str) -> PyResult<Bound<'py, PyDict>> {
    let p = guard(|| KernelProfile::parse(spec, Arch::parse(arch)?))?;
    let d = PyDict::new(py);
    d.set_item("version", p.version.name())?;
    d.set_item("arch", p.arch.name())?;
    d.set_item("name", p.name())?;
    d.set_item("debug_vm", p.debug_vm)?;
    d.set_item("debug_vm_pgflags", p.debug_vm_pgflags)?;
    d.set_item("memory_hotremove", p.memory_hotremove)?;
    d.set_item("removable_scans", p.removable_scans())?;
    d.set_item("holes_zeroed", p.holes_zeroed())?;
    d.set_item("holes_in_zone_initialised", p.holes_in_zone_initialised())?;
    d.set_item("holes_read_zone_zero", p.holes_read_zone_zero())?;
    d.set_item("has_memory_holes_check", p.has_memory_holes_check())?;
    d.set_item("offline_path_6_1", p.offline_path_6_1())?;
    d.set_item(
        "has_is_mem_section_removable",
        p.has_is_mem_section_removable(),
    )?;
    d.set_item(
        "warns_unmovable_in_zone_movable",
        p.warns_unmovable_in_zone_movable(),
    )?;
    d.set_item("cmm_isolate_notifier", p.cmm_isolate_notifier())?;
    d.set_item("cmm_balloon_compaction", p.cmm_balloon_compaction())?;
    d.set_item("zone_zero", p.zone_zero().name())?;
    Ok(d)
}

/// The native module. Structure lives in the Python package.
#[pymodule]
mod _core {
    #[pymodule_export]
    use super::CoreMachine;

    #[pymodule_export]
    use super::default_geometry;

    #[pymodule_export]
    use super::kernel_profile;

    #[pymodule_export]
    use super::vocabulary;

    /// x86_64 vmemmap base with 4-level paging and no KASLR (struct page of pfn N at
    /// base + 64 N): the one home of this constant for Rust and Python.
    #[pymodule_export]
    const X86_VMEMMAP_BASE: u64 = crate::kernel::pageinfo::X86_VMEMMAP_BASE;

    /// The package version: Cargo.toml's, the one home (pyproject.toml takes it dynamically).
    #[pymodule_export]
    const VERSION: &str = env!("CARGO_PKG_VERSION");
}

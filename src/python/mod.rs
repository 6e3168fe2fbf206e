//! The PyO3 binding layer: one frozen class over the pure-Rust model, conversions, and the
//! mapping of core errors (and any panic) to memscan's Python exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::RwLock;

use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::error::Error;
use crate::geometry::{Arch, Geometry, GeometryOverrides};
use crate::kernel::offline;
use crate::kernel::pageinfo::Fault;
use crate::kernel::profile::KernelProfile;
use crate::kernel::removable::{self, BlockScan};
use crate::kpageflags;
use crate::page::{MigrateType, ZoneType};
use crate::sysfs;
use crate::topology::{self, BlockState, DeviceRange, Hstate, LayoutSpec, PfnRange, ZoneSpec};
use crate::workload::{self, Workload};

/// Raise the Python exception class `name` from memscan.errors.
fn raise(py: Python<'_>, name: &str, msg: String) -> PyErr {
    match py
        .import("memscan.errors")
        .and_then(|m| m.getattr(name))
        .and_then(|cls| cls.call1((msg.clone(),)))
    {
        Ok(exc) => PyErr::from_value(exc),
        Err(_) => PyRuntimeError::new_err(msg),
    }
}

fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let name = match &e {
        Error::Geometry(_) => "GeometryError",
        Error::Layout(_) => "LayoutError",
        Error::NoSuchBlock { .. } => "NoSuchBlockError",
        Error::PfnRange { .. } => "PfnRangeError",
        Error::Argument(_) => "ArgumentError",
        Error::Memory(_) => "ModelMemoryError",
        Error::Interrupted => return pyo3::exceptions::PyKeyboardInterrupt::new_err(()),
    };
    raise(py, name, e.to_string())
}

/// Run `f`, turning a core error or a panic into a Python exception.
fn guard<T>(py: Python<'_>, f: impl FnOnce() -> crate::Result<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py(py, e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(raise(
                py,
                "InternalError",
                format!("memscan internal error: {msg}"),
            ))
        }
    }
}

fn fault_dict<'py>(py: Python<'py>, g: &Geometry, f: &Fault) -> PyResult<Bound<'py, PyDict>> {
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

fn scan_dict<'py>(py: Python<'py>, g: &Geometry, s: &BlockScan) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("block", s.block)?;
    d.set_item("value", s.value)?;
    d.set_item("scanned", s.scanned)?;
    d.set_item(
        "fault",
        s.fault.as_ref().map(|f| fault_dict(py, g, f)).transpose()?,
    )?;
    d.set_item(
        "note",
        s.note.as_ref().map(|f| fault_dict(py, g, f)).transpose()?,
    )?;
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
    d.set_item("struct_pages_read", s.cost.struct_pages_read)?;
    d.set_item("pageblocks_visited", s.cost.pageblocks_visited)?;
    d.set_item("sections_scanned", s.cost.sections_scanned)?;
    Ok(d)
}

/// (block, state, removable, valid_zones, nids) as Python passes them.
/// One counter of an offline attempt's work, by name (a column of `offline_many`).
type WorkCounter = fn(&offline::OfflineWork) -> u64;
type BlockFilesTuple = (u64, String, Option<String>, Option<String>, Vec<u16>, u64);

/// The native model. Use `memscan.Machine`, which wraps it.
#[pyclass(frozen, module = "memscan._core", name = "CoreMachine")]
pub struct CoreMachine {
    inner: RwLock<topology::Machine>,
}

impl CoreMachine {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, topology::Machine> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, topology::Machine> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn parse_zone(name: &str) -> crate::Result<ZoneType> {
    ZoneType::parse(name).ok_or_else(|| {
        Error::Layout(format!(
            "unknown zone {name:?} (known: DMA, DMA32, Normal, Movable)"
        ))
    })
}

#[pymethods]
impl CoreMachine {
    /// Build from a layout (see memscan.sources.layout for the Python form).
    #[staticmethod]
    #[pyo3(signature = (arch, geometry, boot_mem_end, ram, reserved, device, zones, offline_blocks, hstates, kernel=None))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        py: Python<'_>,
        arch: &str,
        geometry: std::collections::HashMap<String, u64>,
        boot_mem_end: u64,
        ram: Vec<(u64, u64, u16)>,
        reserved: Vec<(u64, u64)>,
        device: Vec<(u64, u64, u16, u64)>,
        zones: Vec<(u16, String, u64, u64)>,
        offline_blocks: Vec<u64>,
        hstates: Vec<(u32, bool)>,
        kernel: Option<String>,
    ) -> PyResult<CoreMachine> {
        let m = py.detach(|| {
            guard_nopy(|| {
                let arch = Arch::parse(arch)?;
                let ov = geometry_overrides(&geometry, arch, kernel.as_deref())?;
                let g = Geometry::for_arch(arch, ov, boot_mem_end)?;
                let zones = zones
                    .into_iter()
                    .map(|(nid, z, start, end)| {
                        Ok(ZoneSpec {
                            nid,
                            zone: parse_zone(&z)?,
                            start,
                            end,
                        })
                    })
                    .collect::<crate::Result<Vec<_>>>()?;
                let spec = LayoutSpec {
                    geometry: g,
                    ram: ram
                        .into_iter()
                        .map(|(start, end, nid)| PfnRange { start, end, nid })
                        .collect(),
                    reserved,
                    device: device
                        .into_iter()
                        .map(|(start, end, nid, uninit_pages)| DeviceRange {
                            start,
                            end,
                            nid,
                            uninit_pages,
                        })
                        .collect(),
                    zones,
                    offline_blocks,
                    hstates: hstates
                        .into_iter()
                        .map(|(order, migration_supported)| Hstate {
                            order,
                            migration_supported,
                        })
                        .collect(),
                };
                topology::Machine::build(&spec)
            })
        });
        let m = m.map_err(|e| e.into_py(py))?;
        Ok(CoreMachine {
            inner: RwLock::new(m),
        })
    }

    /// Geometry as a dict of ints (and the arch name).
    fn geometry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.read();
        let g = m.geometry;
        let d = PyDict::new(py);
        d.set_item("arch", g.arch.name())?;
        d.set_item("page_shift", g.page_shift)?;
        d.set_item("section_size_bits", g.section_size_bits)?;
        d.set_item("pageblock_order", g.pageblock_order)?;
        d.set_item("max_order", g.max_order)?;
        d.set_item("block_size", g.block_size)?;
        d.set_item("pages_per_section", g.pages_per_section())?;
        d.set_item("pageblock_nr_pages", g.pageblock_nr_pages())?;
        d.set_item("sections_per_block", g.sections_per_block())?;
        d.set_item("pages_per_block", g.pages_per_block())?;
        d.set_item("max_pfn", m.store.max_pfn)?;
        Ok(d)
    }

    /// Per-block state codes (0 absent, 1 online, 2 offline, 3 going-offline).
    fn block_states<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u8>> {
        let m = self.read();
        m.blocks
            .iter()
            .map(|s| *s as u8)
            .collect::<Vec<_>>()
            .into_pyarray(py)
    }

    fn set_block_state(&self, py: Python<'_>, block: u64, state: &str) -> PyResult<()> {
        let st = BlockState::parse(state).ok_or_else(|| {
            to_py(
                py,
                Error::Argument(format!(
                    "unknown block state {state:?} (online, offline, going-offline)"
                )),
            )
        })?;
        guard(py, || self.write().set_block_state(block, st))
    }

    /// Section flags (u8) and nids (u16) as numpy arrays.
    fn sections<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.read();
        let d = PyDict::new(py);
        let flags: Vec<u8> = m.store.meta.iter().map(|s| s.flags).collect();
        let nids: Vec<u16> = m.store.meta.iter().map(|s| s.nid).collect();
        d.set_item("flags", flags.into_pyarray(py))?;
        d.set_item("nid", nids.into_pyarray(py))?;
        Ok(d)
    }

    /// Zone spans: list of (nid, zone name, start_pfn, end_pfn).
    fn zones(&self) -> Vec<(u16, &'static str, u64, u64)> {
        let m = self.read();
        let mut v = Vec::new();
        for (nid, n) in m.nodes.iter().enumerate() {
            for z in ZoneType::ALL {
                if let Some(s) = n.zones[z as usize] {
                    v.push((nid as u16, z.name(), s.start_pfn, s.end_pfn));
                }
            }
        }
        v
    }

    /// "System RAM" pfn ranges (the iomem resources `walk_system_ram_range()` walks).
    fn system_ram(&self) -> Vec<(u64, u64)> {
        self.read().system_ram.clone()
    }

    /// Set the reserved pages (`resv_huge_pages`) of hstate `hstate`.
    fn set_hugetlb_reserved(&self, py: Python<'_>, hstate: usize, pages: u64) -> PyResult<()> {
        guard(py, || {
            let mut m = self.write();
            let n = m.hstates.len();
            let slot = m.hugetlb_resv.get_mut(hstate).ok_or_else(|| {
                Error::Argument(format!(
                    "hstate {hstate} does not exist (the machine has {n})"
                ))
            })?;
            *slot = pages;
            Ok(())
        })
    }

    fn hugetlb_reserved(&self) -> Vec<u64> {
        self.read().hugetlb_resv.clone()
    }

    /// v6.1 `mem->zone` per block: (nid, zone name), or None (NULL).
    fn mem_zones(&self) -> Vec<Option<(u16, &'static str)>> {
        let m = self.read();
        (0..m.nr_blocks())
            .map(|b| crate::kernel::offline::mem_zone(&m, b).map(|(n, z)| (n, z.name())))
            .collect()
    }

    /// s390 standby blocks.
    fn standby_blocks(&self) -> Vec<u64> {
        self.read().standby_blocks.clone()
    }

    /// What never-initialised struct pages hold without DEBUG_VM: "garbage" or "zero".
    #[getter]
    fn uninit_memmap(&self) -> &'static str {
        self.read().uninit_memmap.name()
    }

    /// The min watermark in pages under 5.x and 6.1 rules.
    fn min_free_pages(&self) -> (u64, u64) {
        let m = self.read();
        (m.min_free_pages, m.min_free_pages_6_1)
    }

    /// What the watermark depends on besides the pages: (user min_free_kbytes, THP enabled,
    /// hotplugged since boot).
    fn min_free_inputs(&self) -> (Option<u64>, bool, bool) {
        let m = self.read();
        (m.user_min_free_kbytes, m.thp_enabled, m.hotplugged)
    }

    /// `echo KB > /proc/sys/vm/min_free_kbytes` (None: as booted); recomputes the watermarks.
    fn set_min_free_kbytes(&self, kbytes: Option<u64>) {
        let mut m = self.write();
        m.user_min_free_kbytes = kbytes;
        offline::refresh_min_free(&mut m);
    }

    /// Transparent hugepages enabled (khugepaged raises min_free_kbytes).
    #[getter]
    fn thp_enabled(&self) -> bool {
        self.read().thp_enabled
    }

    #[setter]
    fn set_thp_enabled(&self, value: bool) {
        let mut m = self.write();
        m.thp_enabled = value;
        offline::refresh_min_free(&mut m);
    }

    /// HugeTLB Vmemmap Optimization on (hugetlb_free_vmemmap=on): 6.1 dissolve may fail
    /// with ENOMEM.
    #[getter]
    fn hugetlb_vmemmap_optimized(&self) -> bool {
        self.read().hugetlb_vmemmap_optimized
    }

    #[setter]
    fn set_hugetlb_vmemmap_optimized(&self, value: bool) {
        self.write().hugetlb_vmemmap_optimized = value;
    }

    #[setter]
    fn set_uninit_memmap(&self, py: Python<'_>, value: &str) -> PyResult<()> {
        let v = topology::UninitMemmap::parse(value).ok_or_else(|| {
            to_py(
                py,
                Error::Argument(format!(
                    "uninit_memmap {value:?}: expected one of {:?}",
                    topology::UninitMemmap::NAMES
                )),
            )
        })?;
        self.write().uninit_memmap = v;
        Ok(())
    }

    fn nodes_online(&self) -> Vec<bool> {
        self.read().nodes.iter().map(|n| n.online).collect()
    }

    fn hstates(&self) -> Vec<(u32, bool)> {
        self.read()
            .hstates
            .iter()
            .map(|h| (h.order, h.migration_supported))
            .collect()
    }

    fn page(&self, py: Python<'_>, pfn: u64) -> PyResult<u8> {
        let m = self.read();
        guard(py, || {
            m.check_pfn_range(pfn, 1)?;
            Ok(m.store.page(pfn))
        })
    }

    /// A copy of `count` page bytes from `pfn`.
    fn page_bytes<'py>(
        &self,
        py: Python<'py>,
        pfn: u64,
        count: u64,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let m = self.read();
        let v = guard(py, || {
            m.check_pfn_range(pfn, count)?;
            let mut out = vec![0u8; count as usize];
            m.store.read_pages(pfn, &mut out);
            Ok(out)
        })?;
        Ok(v.into_pyarray(py))
    }

    /// Read-only numpy view of a block's page bytes, tied to this object (no copy).
    fn block_view<'py>(slf: &Bound<'py, Self>, block: u64) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let py = slf.py();
        let this = slf.get();
        let (ptr, len) = guard(py, || {
            let mut m = this.write();
            if block >= m.nr_blocks() {
                return Err(Error::NoSuchBlock {
                    block,
                    why: format!("the machine has block ids 0..{}", m.nr_blocks()),
                });
            }
            let s = m.store.block_pages(block);
            Ok((s.as_ptr(), s.len()))
        })?;
        // SAFETY: the chunk behind `ptr` is allocated once and never freed or moved while the
        // machine lives (sections.rs); the array keeps `slf` alive as its base object.
        let view = unsafe { ArrayView1::from_shape_ptr(len, ptr) };
        let arr = unsafe { PyArray1::borrow_from_array(&view, slf.clone().into_any()) };
        arr.readwrite().make_nonwriteable();
        Ok(arr)
    }

    fn set_pages(&self, py: Python<'_>, pfn: u64, count: u64, value: u8) -> PyResult<()> {
        guard(py, || {
            let mut m = self.write();
            m.check_pfn_range(pfn, count)?;
            m.store.set_pages(pfn, count, value);
            Ok(())
        })
    }

    /// Write page bytes from a contiguous numpy array.
    fn write_pages(
        &self,
        py: Python<'_>,
        pfn: u64,
        values: PyReadonlyArray1<'_, u8>,
    ) -> PyResult<()> {
        let vals = values.as_slice().map_err(|_| {
            to_py(
                py,
                Error::Argument("values must be a contiguous uint8 array".into()),
            )
        })?;
        guard(py, || {
            let mut m = self.write();
            m.check_pfn_range(pfn, vals.len() as u64)?;
            m.store.write_pages(pfn, vals);
            Ok(())
        })
    }

    fn set_migratetype(&self, py: Python<'_>, pfn: u64, mt: u8) -> PyResult<()> {
        guard(py, || {
            let mt = MigrateType::from_u8(mt)
                .ok_or_else(|| Error::Argument(format!("unknown migratetype {mt}")))?;
            let mut m = self.write();
            m.check_pfn_range(pfn, 1)?;
            m.store.set_migratetype(pfn, mt);
            Ok(())
        })
    }

    /// Per-pageblock bits (migratetype low nibble, zone high nibble), copied.
    fn pageblock_bits<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u8>> {
        self.read()
            .store
            .pageblock_bytes()
            .to_vec()
            .into_pyarray(py)
    }

    #[pyo3(signature = (workload, seed))]
    fn populate(&self, py: Python<'_>, workload: &Bound<'_, PyDict>, seed: u64) -> PyResult<()> {
        let w = workload_from_dict(py, workload)?;
        interruptible(py, |cancel| {
            workload::populate_cancellable(&mut self.write(), &w, seed, cancel)
        })
    }

    fn kind_counts(&self) -> Vec<u64> {
        workload::kind_counts(&self.read()).to_vec()
    }

    fn memory_bytes(&self) -> u64 {
        self.read().store.memory_bytes()
    }

    /// Bytes `populate` would allocate now (before it allocates anything).
    fn populate_bytes(&self) -> u64 {
        workload::populate_bytes(&self.read())
    }

    fn dense_blocks(&self) -> u64 {
        self.read().store.dense_blocks()
    }

    /// One `removable` read, as a dict.
    fn removable<'py>(
        &self,
        py: Python<'py>,
        block: u64,
        kernel: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = self.read();
        let s = guard(py, || {
            let p = KernelProfile::parse(kernel, m.geometry.arch)?;
            removable::removable_show(&m, block, &p)
        })?;
        scan_dict(py, &m.geometry, &s)
    }

    /// `removable` of many blocks: columnar numpy arrays plus fault dicts. Releases the GIL.
    #[pyo3(signature = (blocks, kernel, parallel=false))]
    fn scan<'py>(
        &self,
        py: Python<'py>,
        blocks: Vec<u64>,
        kernel: &str,
        parallel: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let res = py
            .detach(|| {
                guard_nopy(|| {
                    let m = self.read();
                    let p = KernelProfile::parse(kernel, m.geometry.arch)?;
                    for &b in &blocks {
                        m.block_state(b)?;
                    }
                    removable::scan_blocks(&m, &blocks, &p, parallel)
                })
            })
            .map_err(|e| e.into_py(py))?;
        let m = self.read();
        let g = m.geometry;
        let d = PyDict::new(py);
        let n = res.len();
        let mut value = Vec::with_capacity(n);
        let mut reads = Vec::with_capacity(n);
        let mut pbs = Vec::with_capacity(n);
        let mut secs = Vec::with_capacity(n);
        let mut scanned = Vec::with_capacity(n);
        let faults = PyList::empty(py);
        let notes = PyList::empty(py);
        for s in &res {
            value.push(s.value.map_or(-1i8, |v| v as i8));
            reads.push(s.cost.struct_pages_read);
            pbs.push(s.cost.pageblocks_visited);
            secs.push(s.cost.sections_scanned);
            scanned.push(s.scanned);
            if let Some(f) = &s.fault {
                faults.append(fault_dict(py, &g, f)?)?;
            }
            if let Some(f) = &s.note {
                notes.append(fault_dict(py, &g, f)?)?;
            }
        }
        d.set_item("block", blocks.into_pyarray(py))?;
        d.set_item("value", value.into_pyarray(py))?;
        d.set_item("scanned", scanned.into_pyarray(py))?;
        d.set_item("struct_pages_read", reads.into_pyarray(py))?;
        d.set_item("pageblocks_visited", pbs.into_pyarray(py))?;
        d.set_item("sections_scanned", secs.into_pyarray(py))?;
        d.set_item("faults", faults)?;
        d.set_item("notes", notes)?;
        Ok(d)
    }

    /// `echo offline > memoryN/state`: the outcome as a dict; changes the model unless
    /// `dry_run`.
    #[pyo3(signature = (block, kernel, dry_run=true, patience_rounds=1000))]
    fn offline<'py>(
        &self,
        py: Python<'py>,
        block: u64,
        kernel: &str,
        dry_run: bool,
        patience_rounds: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let o = py
            .detach(|| {
                guard_nopy(|| {
                    if dry_run {
                        // deciding reads only: a shared lock
                        let m = self.read();
                        let p = KernelProfile::parse(kernel, m.geometry.arch)?;
                        return offline::decide_offline(&m, block, &p, patience_rounds)
                            .map(|(o, _)| o);
                    }
                    let mut m = self.write();
                    let p = KernelProfile::parse(kernel, m.geometry.arch)?;
                    offline::offline_block(
                        &mut m,
                        block,
                        &p,
                        offline::OfflineOptions {
                            dry_run,
                            patience_rounds,
                        },
                    )
                })
            })
            .map_err(|e| e.into_py(py))?;
        let g = self.read().geometry;
        let d = PyDict::new(py);
        d.set_item("block", o.block)?;
        d.set_item("errno", o.errno.map(offline::Errno::name))?;
        d.set_item("reason", o.reason)?;
        d.set_item("pfn", o.pfn)?;
        d.set_item("detail", o.detail)?;
        d.set_item(
            "fault",
            o.fault
                .as_ref()
                .map(|f| fault_dict(py, &g, f))
                .transpose()?,
        )?;
        d.set_item("applied", o.applied)?;
        let w = o.work;
        d.set_item("struct_pages_read", w.struct_pages_read)?;
        d.set_item("pageblocks_isolated", w.pageblocks_isolated)?;
        d.set_item("pages_migrated", w.pages_migrated)?;
        d.set_item("migration_rounds", w.migration_rounds)?;
        d.set_item("lru_add_drain_all", w.lru_add_drain_all)?;
        d.set_item("drain_all_pages", w.drain_all_pages)?;
        Ok(d)
    }

    /// Dry-run offline of many blocks in one call: columns (errno/reason/pfn lists and work
    /// arrays). Releases the GIL.
    #[pyo3(signature = (blocks, kernel, patience_rounds=1000))]
    fn offline_many<'py>(
        &self,
        py: Python<'py>,
        blocks: Vec<u64>,
        kernel: &str,
        patience_rounds: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let outs = py
            .detach(|| {
                guard_nopy(|| {
                    // dry runs only decide: a shared lock, so readers run beside them
                    let m = self.read();
                    let p = KernelProfile::parse(kernel, m.geometry.arch)?;
                    blocks
                        .iter()
                        .map(|&b| {
                            offline::decide_offline(&m, b, &p, patience_rounds).map(|(o, _)| o)
                        })
                        .collect::<crate::Result<Vec<_>>>()
                })
            })
            .map_err(|e| e.into_py(py))?;
        let d = PyDict::new(py);
        d.set_item("block", blocks.clone().into_pyarray(py))?;
        d.set_item(
            "errno",
            outs.iter()
                .map(|o| o.errno.map(offline::Errno::name))
                .collect::<Vec<_>>(),
        )?;
        d.set_item("reason", outs.iter().map(|o| o.reason).collect::<Vec<_>>())?;
        d.set_item("pfn", outs.iter().map(|o| o.pfn).collect::<Vec<_>>())?;
        d.set_item(
            "detail",
            outs.iter().map(|o| o.detail.clone()).collect::<Vec<_>>(),
        )?;
        let g = self.read().geometry;
        let faults = outs
            .iter()
            .map(|o| o.fault.as_ref().map(|f| fault_dict(py, &g, f)).transpose())
            .collect::<PyResult<Vec<_>>>()?;
        d.set_item("fault", faults)?;
        let counters: [(&str, WorkCounter); 6] = [
            ("struct_pages_read", |w| w.struct_pages_read),
            ("pageblocks_isolated", |w| w.pageblocks_isolated),
            ("pages_migrated", |w| w.pages_migrated),
            ("migration_rounds", |w| w.migration_rounds),
            ("lru_add_drain_all", |w| w.lru_add_drain_all),
            ("drain_all_pages", |w| w.drain_all_pages),
        ];
        for (name, get) in counters {
            let column: Vec<u64> = outs.iter().map(|o| get(&o.work)).collect();
            d.set_item(name, column.into_pyarray(py))?;
        }
        Ok(d)
    }

    /// An independent deep copy of the machine (page bytes, pageblock bits, block states).
    /// The allocation is fallible: a copy that does not fit is a ModelMemoryError.
    fn copy(&self, py: Python<'_>) -> PyResult<CoreMachine> {
        let m = py
            .detach(|| guard_nopy(|| self.read().try_clone()))
            .map_err(|e| e.into_py(py))?;
        Ok(CoreMachine {
            inner: RwLock::new(m),
        })
    }

    /// Write a memory sysfs tree under `root` from per-block values (see memscan.sysfs).
    /// `link_limit` stands in for the file system's limit on links per inode (tests).
    #[staticmethod]
    #[pyo3(signature = (root, block_size, blocks, link_limit=None))]
    fn write_sysfs_tree(
        py: Python<'_>,
        root: String,
        block_size: u64,
        blocks: Vec<BlockFilesTuple>,
        link_limit: Option<u32>,
    ) -> PyResult<()> {
        let files: Vec<sysfs::BlockFiles> = blocks
            .into_iter()
            .map(
                |(block, state, removable, valid_zones, nids, phys_device)| sysfs::BlockFiles {
                    block,
                    state,
                    removable,
                    valid_zones,
                    nids,
                    phys_device,
                },
            )
            .collect();
        interruptible(py, |cancel| {
            sysfs::write_tree(
                std::path::Path::new(&root),
                block_size,
                &files,
                link_limit,
                cancel,
            )
        })
    }

    /// ns per open + read + close of one attribute file (read-only; see memscan calibrate).
    #[staticmethod]
    fn time_attribute_reads(py: Python<'_>, path: String, reads: u32) -> PyResult<f64> {
        py.detach(|| guard_nopy(|| sysfs::time_attribute_reads(std::path::Path::new(&path), reads)))
            .map_err(|e| e.into_py(py))
    }

    /// /proc/kpageflags words for `count` pfns from `start` (6.1 semantics).
    fn kpageflags_export<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        count: u64,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let v = py
            .detach(|| {
                guard_nopy(|| {
                    let m = self.read();
                    m.check_pfn_range(start, count)?;
                    Ok(kpageflags::export(&m, start, count))
                })
            })
            .map_err(|e| e.into_py(py))?;
        Ok(v.into_pyarray(py))
    }

    /// Page kinds from kpageflags words (and kpagecount counts) for pfns from `start`;
    /// returns what could not be told.
    #[pyo3(signature = (start, flags, counts=None))]
    fn kpageflags_import<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        flags: PyReadonlyArray1<'_, u64>,
        counts: Option<PyReadonlyArray1<'_, u64>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let f = flags.as_slice().map_err(|_| {
            to_py(
                py,
                Error::Argument("flags must be a contiguous uint64 array".into()),
            )
        })?;
        let c = match &counts {
            None => None,
            Some(c) => Some(c.as_slice().map_err(|_| {
                to_py(
                    py,
                    Error::Argument("counts must be a contiguous uint64 array".into()),
                )
            })?),
        };
        if c.is_some_and(|c| c.len() != f.len()) {
            return Err(to_py(
                py,
                Error::Argument("kpagecount and kpageflags cover different pfn counts".into()),
            ));
        }
        let st = guard(py, || {
            let mut m = self.write();
            m.check_pfn_range(start, f.len() as u64)?;
            Ok(kpageflags::import(&mut m, start, f, c))
        })?;
        let d = PyDict::new(py);
        d.set_item("pages", st.pages)?;
        d.set_item("nopage", st.nopage)?;
        d.set_item("ambiguous", st.ambiguous)?;
        d.set_item("ambiguous_free", st.ambiguous_free)?;
        d.set_item("lru_batch", st.lru_batch)?;
        d.set_item("buddy_blocks", st.buddy_blocks.to_vec())?;
        d.set_item("hugetlb_mapped", st.hugetlb_mapped)?;
        d.set_item("hugetlb_unmapped", st.hugetlb_unmapped)?;
        Ok(d)
    }

    /// Page kinds from raw x86_64 struct pages (64 bytes per pfn from `start`; `vmemmap` is
    /// the base their compound_head pointers use).
    fn memmap_import<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        raw: PyReadonlyArray1<'_, u8>,
        vmemmap: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = raw.as_slice().map_err(|_| {
            to_py(
                py,
                Error::Argument("struct pages must be a contiguous uint8 array".into()),
            )
        })?;
        if r.len() % crate::memmap::STRUCT_PAGE_SIZE != 0 {
            return Err(to_py(
                py,
                Error::Argument(format!(
                    "{} bytes of struct pages is not a whole number of {}-byte struct pages",
                    r.len(),
                    crate::memmap::STRUCT_PAGE_SIZE
                )),
            ));
        }
        let st = guard(py, || {
            let mut m = self.write();
            m.check_pfn_range(start, (r.len() / crate::memmap::STRUCT_PAGE_SIZE) as u64)?;
            Ok(crate::memmap::import(&mut m, start, r, vmemmap))
        })?;
        let d = PyDict::new(py);
        d.set_item("pages", st.pages)?;
        d.set_item("skipped", st.skipped)?;
        d.set_item("pcp_free", st.pcp_free)?;
        d.set_item("lru_pagevec", st.lru_pagevec)?;
        d.set_item("orphan_tails", st.orphan_tails)?;
        d.set_item("poisoned", st.poisoned)?;
        d.set_item("zeroed", st.zeroed)?;
        Ok(d)
    }

    /// `echo <online_type> > memoryN/state`: None on success, else the errno name.
    fn online(
        &self,
        py: Python<'_>,
        block: u64,
        online_type: &str,
    ) -> PyResult<Option<&'static str>> {
        guard(py, || {
            offline::online_block(&mut self.write(), block, online_type)
                .map(|e| e.map(offline::Errno::name))
        })
    }

    /// `valid_zones` of many blocks in one call (None where the read faults).
    fn valid_zones_many(
        &self,
        py: Python<'_>,
        blocks: Vec<u64>,
        kernel: &str,
    ) -> PyResult<Vec<Option<String>>> {
        let m = self.read();
        guard(py, || {
            let p = KernelProfile::parse(kernel, m.geometry.arch)?;
            blocks
                .iter()
                .map(|&b| offline::valid_zones(&m, b, &p).map(std::result::Result::ok))
                .collect()
        })
    }

    /// The text of `memoryN/valid_zones` (without the newline) and the fault that killed
    /// the reader instead, as a dict {"value", "fault"}.
    fn valid_zones<'py>(
        &self,
        py: Python<'py>,
        block: u64,
        kernel: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = self.read();
        let r = guard(py, || {
            let p = KernelProfile::parse(kernel, m.geometry.arch)?;
            offline::valid_zones(&m, block, &p)
        })?;
        let d = PyDict::new(py);
        match r {
            Ok(v) => {
                d.set_item("value", v)?;
                d.set_item("fault", py.None())?;
            }
            Err(f) => {
                d.set_item("value", py.None())?;
                d.set_item("fault", fault_dict(py, &m.geometry, &f)?)?;
            }
        }
        Ok(d)
    }

    /// `is_mem_section_removable(start_pfn, nr_pages)` called directly.
    fn is_mem_section_removable<'py>(
        &self,
        py: Python<'py>,
        start_pfn: u64,
        nr_pages: u64,
        kernel: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = self.read();
        let (r, cost) = guard(py, || {
            m.check_pfn_range(start_pfn, nr_pages)?;
            let p = KernelProfile::parse(kernel, m.geometry.arch)?;
            removable::is_mem_section_removable_call(&m, start_pfn, nr_pages, &p)
        })?;
        let d = PyDict::new(py);
        match r {
            Ok(v) => {
                d.set_item("value", u8::from(v))?;
                d.set_item("fault", py.None())?;
            }
            Err(f) => {
                d.set_item("value", py.None())?;
                d.set_item("fault", fault_dict(py, &m.geometry, &f)?)?;
            }
        }
        d.set_item("struct_pages_read", cost.struct_pages_read)?;
        d.set_item("pageblocks_visited", cost.pageblocks_visited)?;
        d.set_item("sections_scanned", cost.sections_scanned)?;
        Ok(d)
    }
}

/// An error raised without the GIL, converted once the GIL is back.
enum Detached {
    Core(Error),
    Panic(String),
}

impl Detached {
    fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Detached::Core(e) => to_py(py, e),
            Detached::Panic(msg) => raise(
                py,
                "InternalError",
                format!("memscan internal error: {msg}"),
            ),
        }
    }
}

/// Run long core work `f` on a worker thread without the GIL while this (the calling)
/// thread looks for signals every 50 ms: Ctrl-C sets the flag `f` checks between its chunks,
/// and `f` stops with `Error::Interrupted` (KeyboardInterrupt). Python only runs signal
/// handlers in the main thread, which is why the work is not done on it.
fn interruptible<T: Send>(
    py: Python<'_>,
    f: impl FnOnce(&std::sync::atomic::AtomicBool) -> crate::Result<T> + Send,
) -> PyResult<T> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let cancel = AtomicBool::new(false);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // a Receiver is not Sync; the Mutex lets the GIL-free closure borrow it
    let done_rx = std::sync::Mutex::new(done_rx);
    let out = std::thread::scope(|s| {
        let cancel = &cancel;
        let worker = s.spawn(move || {
            let r = guard_nopy(|| f(cancel));
            let _ = done_tx.send(());
            r
        });
        loop {
            let finished = py.detach(|| {
                !matches!(
                    done_rx
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv_timeout(std::time::Duration::from_millis(50)),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                )
            });
            if finished {
                break;
            }
            if py.check_signals().is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        worker.join()
    });
    match out {
        Ok(r) => r.map_err(|e| e.into_py(py)),
        Err(_) => Err(to_py(py, Error::Argument("worker thread died".into()))),
    }
}

fn guard_nopy<T>(f: impl FnOnce() -> crate::Result<T>) -> Result<T, Detached> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Detached::Core(e)),
        Err(p) => Err(Detached::Panic(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "unknown panic".into()),
        )),
    }
}

fn workload_from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> PyResult<Workload> {
    let mut w = Workload::default();
    for (k, v) in d.iter() {
        let key: String = k.extract()?;
        let bad = |what: &str| to_py(py, Error::Argument(format!("workload {key}: {what}")));
        let f = || v.extract::<f64>().map_err(|_| bad("expected a number"));
        let u = || {
            v.extract::<u64>()
                .map_err(|_| bad("expected a non-negative integer"))
        };
        match key.as_str() {
            "free" => w.free = f()?,
            "free_whole" => w.free_whole = f()?,
            "free_orders" => {
                w.free_orders = v.extract().map_err(|_| bad("expected a list of weights"))?;
            }
            "unmovable" => w.unmovable = f()?,
            "unmovable_clustered" => w.unmovable_clustered = f()?,
            "polluted_pageblocks" => w.polluted_pageblocks = f()?,
            "movable" => w.movable = f()?,
            "thp" => w.thp = f()?,
            "pinned" => w.pinned = f()?,
            "hugetlb" => w.hugetlb = f()?,
            "hugetlb_hstate" => w.hugetlb_hstate = u()?.min(255) as u8,
            "hugetlb_free" => w.hugetlb_free = f()?,
            "cma_pages" => w.cma_pages = u()?,
            "hwpoison_pages" => w.hwpoison_pages = u()?,
            "balloon_pages" => w.balloon_pages = u()?,
            "unmovable_spread" => w.unmovable_spread = f()?,
            "movable_node" => {
                w.movable_node = v.extract().map_err(|_| bad("expected a bool"))?;
            }
            _ => return Err(bad("unknown knob")),
        }
    }
    Ok(w)
}

/// Geometry overrides from a layout's `geometry` dict (keys checked) and the kernel whose
/// defaults apply.
fn geometry_overrides(
    geometry: &std::collections::HashMap<String, u64>,
    arch: Arch,
    kernel: Option<&str>,
) -> crate::Result<GeometryOverrides> {
    const KEYS: [&str; 5] = [
        "page_shift",
        "section_size_bits",
        "pageblock_order",
        "max_order",
        "block_size",
    ];
    if let Some(k) = geometry.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(Error::Geometry(format!("unknown geometry key {k:?}")));
    }
    let get = |k: &str| geometry.get(k).copied();
    Ok(GeometryOverrides {
        page_shift: get("page_shift").map(|v| v as u32),
        section_size_bits: get("section_size_bits").map(|v| v as u32),
        pageblock_order: get("pageblock_order").map(|v| v as u32),
        max_order: get("max_order").map(|v| v as u32),
        block_size: get("block_size"),
        kernel: kernel
            .map(|k| KernelProfile::parse(k, arch).map(|p| p.version))
            .transpose()?,
    })
}

/// The geometry an arch (and a kernel, where its defaults differ) gives a machine whose RAM
/// ends at `boot_mem_end`, with `geometry`'s overrides applied: the one home of the defaults.
#[pyfunction]
#[pyo3(signature = (arch, geometry=std::collections::HashMap::new(), boot_mem_end=0, kernel=None))]
fn default_geometry(
    py: Python<'_>,
    arch: &str,
    geometry: std::collections::HashMap<String, u64>,
    boot_mem_end: u64,
    kernel: Option<&str>,
) -> PyResult<std::collections::HashMap<&'static str, u64>> {
    let r = guard_nopy(|| {
        let arch = Arch::parse(arch)?;
        let g = Geometry::for_arch(
            arch,
            geometry_overrides(&geometry, arch, kernel)?,
            boot_mem_end,
        )?;
        Ok(std::collections::HashMap::from([
            ("page_shift", u64::from(g.page_shift)),
            ("section_size_bits", u64::from(g.section_size_bits)),
            ("pageblock_order", u64::from(g.pageblock_order)),
            ("max_order", u64::from(g.max_order)),
            ("block_size", g.block_size),
        ]))
    });
    r.map_err(|e| e.into_py(py))
}

/// A kernel profile as the core parses it: its fields and every named predicate the models
/// use, so Python reads behaviours from the one parser (memscan.kernel.Kernel).
#[pyfunction]
#[pyo3(signature = (spec, arch="x86_64"))]
fn kernel_profile<'py>(py: Python<'py>, spec: &str, arch: &str) -> PyResult<Bound<'py, PyDict>> {
    let p =
        guard_nopy(|| KernelProfile::parse(spec, Arch::parse(arch)?)).map_err(|e| e.into_py(py))?;
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

    /// x86_64 vmemmap base with 4-level paging and no KASLR (struct page of pfn N at
    /// base + 64 N): the one home of this constant for Rust and Python.
    #[pymodule_export]
    const X86_VMEMMAP_BASE: u64 = crate::kernel::pageinfo::X86_VMEMMAP_BASE;

    /// The package version: Cargo.toml's, the one home (pyproject.toml takes it dynamically).
    #[pymodule_export]
    const VERSION: &str = env!("CARGO_PKG_VERSION");
}

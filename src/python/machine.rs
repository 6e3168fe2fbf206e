//! `CoreMachine`: the native machine behind `memscan.Machine`. Each method converts its
//! arguments, takes the lock, calls one core function and converts the result; decisions and
//! per-block loops live in the core.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::convert::{
    fault_dict, fault_opt, geometry_overrides, scan_dict, set_columns, set_fields,
    workload_from_dict,
};
use super::errors::{argument, detached, guard, interruptible};
use crate::cost::ScanCost;
use crate::geometry::{Arch, Geometry};
use crate::kernel::offline::{self, Errno, OfflineOptions, OfflineWork};
use crate::kernel::profile::KernelProfile;
use crate::kernel::removable;
use crate::kpageflags::{self, ImportStats};
use crate::memmap::{self, MemmapStats};
use crate::page::ZoneType;
use crate::sysfs;
use crate::topology::{self, DeviceRange, Hstate, LayoutSpec, PfnRange, ZoneSpec};
use crate::workload;

/// (block, state, removable, valid_zones, nids, phys_device) as Python passes them.
type BlockFilesTuple = (u64, String, Option<String>, Option<String>, Vec<u16>, u64);

/// The native model. Use `memscan.Machine`, which wraps it.
/// The base object of a block view: holds the machine alive and the block's chunk pinned
/// (unshared, written in place) until the view is released.
#[pyclass(frozen, module = "memscan._core", name = "BlockPin")]
pub struct BlockPin {
    pins: crate::sections::PinTable,
    block: usize,
    _machine: Py<CoreMachine>,
}

impl Drop for BlockPin {
    fn drop(&mut self) {
        self.pins[self.block].fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[pyclass(frozen, module = "memscan._core", name = "CoreMachine")]
pub struct CoreMachine {
    inner: RwLock<topology::Machine>,
}

impl CoreMachine {
    fn new(m: topology::Machine) -> CoreMachine {
        CoreMachine {
            inner: RwLock::new(m),
        }
    }
    fn read(&self) -> RwLockReadGuard<'_, topology::Machine> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write(&self) -> RwLockWriteGuard<'_, topology::Machine> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
    fn profile(m: &topology::Machine, kernel: &str) -> crate::Result<KernelProfile> {
        KernelProfile::parse(kernel, m.geometry.arch)
    }
}

/// A contiguous slice of a numpy array, or an error naming what it should be.
fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    what: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| argument(format!("{what} must be a contiguous array")))
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
        geometry: HashMap<String, u64>,
        boot_mem_end: u64,
        ram: Vec<(u64, u64, u16)>,
        reserved: Vec<(u64, u64)>,
        device: Vec<(u64, u64, u16, u64)>,
        zones: Vec<(u16, String, u64, u64)>,
        offline_blocks: Vec<u64>,
        hstates: Vec<(u32, bool)>,
        kernel: Option<String>,
    ) -> PyResult<CoreMachine> {
        let m = detached(py, || {
            let arch = Arch::parse(arch)?;
            let ov = geometry_overrides(&geometry, arch, kernel.as_deref())?;
            let spec = LayoutSpec {
                geometry: Geometry::for_arch(arch, ov, boot_mem_end)?,
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
                zones: zones
                    .into_iter()
                    .map(|(nid, z, start, end)| {
                        Ok(ZoneSpec {
                            nid,
                            zone: ZoneType::parse_layout(&z)?,
                            start,
                            end,
                        })
                    })
                    .collect::<crate::Result<Vec<_>>>()?,
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
        })?;
        Ok(CoreMachine::new(m))
    }

    /// Geometry as a dict of ints (and the arch name).
    fn geometry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.read();
        let g = m.geometry;
        let d = PyDict::new(py);
        d.set_item("arch", g.arch.name())?;
        for (k, v) in crate::geometry::GeometryOverrides::values_of(&g) {
            d.set_item(k, v)?;
        }
        d.set_item("pages_per_section", g.pages_per_section())?;
        d.set_item("pageblock_nr_pages", g.pageblock_nr_pages())?;
        d.set_item("sections_per_block", g.sections_per_block())?;
        d.set_item("pages_per_block", g.pages_per_block())?;
        d.set_item("max_pfn", m.store.max_pfn)?;
        Ok(d)
    }

    /// Per-block state codes (memscan.BlockState).
    fn block_states<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u8>> {
        let m = self.read();
        m.blocks
            .iter()
            .map(|s| *s as u8)
            .collect::<Vec<_>>()
            .into_pyarray(py)
    }

    fn set_block_state(&self, block: u64, state: &str) -> PyResult<()> {
        guard(|| self.write().set_block_state_named(block, state))
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
        self.read()
            .zone_spans()
            .into_iter()
            .map(|(n, z, s, e)| (n, z.name(), s, e))
            .collect()
    }

    /// "System RAM" pfn ranges (the iomem resources `walk_system_ram_range()` walks).
    fn system_ram(&self) -> Vec<(u64, u64)> {
        self.read().system_ram.clone()
    }

    /// Driver-managed RAM: (start_pfn, end_pfn, driver) ranges, sorted.
    #[getter]
    fn driver_managed(&self) -> Vec<(u64, u64, String)> {
        self.read().driver_managed.clone()
    }

    /// Declare driver-managed RAM (iomem "System RAM (<driver>)"), replacing any before.
    fn set_driver_managed(&self, ranges: Vec<(u64, u64, String)>) -> PyResult<()> {
        guard(|| self.write().set_driver_managed(ranges))
    }

    /// Set the reserved pages (`resv_huge_pages`) of hstate `hstate`.
    fn set_hugetlb_reserved(&self, hstate: usize, pages: u64) -> PyResult<()> {
        guard(|| self.write().set_hugetlb_reserved(hstate, pages))
    }

    fn hugetlb_reserved(&self) -> Vec<u64> {
        self.read().hugetlb_resv.clone()
    }

    /// v6.1 `mem->zone` per block: (nid, zone name), or None (NULL).
    fn mem_zones(&self) -> Vec<Option<(u16, &'static str)>> {
        offline::mem_zones(&self.read())
            .into_iter()
            .map(|z| z.map(|(n, z)| (n, z.name())))
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

    #[setter]
    fn set_uninit_memmap(&self, value: &str) -> PyResult<()> {
        guard(|| self.write().set_uninit_memmap_named(value))
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
        self.write().set_user_min_free_kbytes(kbytes);
    }

    /// Transparent hugepages enabled (khugepaged raises min_free_kbytes).
    #[getter]
    fn thp_enabled(&self) -> bool {
        self.read().thp_enabled
    }

    #[setter]
    fn set_thp_enabled(&self, value: bool) {
        self.write().set_thp_enabled(value);
    }

    /// A block was onlined or offlined since boot (5.x then computes min_free_kbytes without
    /// khugepaged's raise).
    #[getter]
    fn hotplugged(&self) -> bool {
        self.read().hotplugged
    }

    #[setter]
    fn set_hotplugged(&self, value: bool) {
        self.write().set_hotplugged(value);
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

    fn page(&self, pfn: u64) -> PyResult<u8> {
        guard(|| self.read().page_checked(pfn))
    }

    /// A copy of `count` page bytes from `pfn`.
    fn page_bytes<'py>(
        &self,
        py: Python<'py>,
        pfn: u64,
        count: u64,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        Ok(guard(|| self.read().read_pages_checked(pfn, count))?.into_pyarray(py))
    }

    /// Read-only numpy view of a block's page bytes (no copy), pinning the block's chunk:
    /// its base object is a `BlockPin` that keeps this machine alive and unpins on release.
    fn block_view<'py>(slf: &Bound<'py, Self>, block: u64) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let (ptr, len, pins) = guard(|| {
            let mut m = slf.get().write();
            let s = m.pin_block_checked(block)?;
            let (ptr, len) = (s.as_ptr(), s.len());
            Ok((ptr, len, m.store.pin_table()))
        })?;
        let pin = Bound::new(
            slf.py(),
            BlockPin {
                pins,
                block: block as usize,
                _machine: slf.clone().unbind(),
            },
        )?;
        // SAFETY: a pinned chunk is never shared, replaced, freed or moved while its store
        // lives (sections.rs, module notes); the pin, the array's base object, holds the
        // machine (and so the store) alive and the pin until the array is gone.
        let view = unsafe { ArrayView1::from_shape_ptr(len, ptr) };
        let arr = unsafe { PyArray1::borrow_from_array(&view, pin.into_any()) };
        arr.readwrite().make_nonwriteable();
        Ok(arr)
    }

    fn set_pages(&self, pfn: u64, count: u64, value: u8) -> PyResult<()> {
        guard(|| self.write().set_pages_checked(pfn, count, value))
    }

    /// Write page bytes from a contiguous numpy array.
    fn write_pages(&self, pfn: u64, values: PyReadonlyArray1<'_, u8>) -> PyResult<()> {
        let vals = contiguous(&values, "values")?;
        guard(|| self.write().write_pages_checked(pfn, vals))
    }

    fn set_migratetype(&self, pfn: u64, mt: u8) -> PyResult<()> {
        guard(|| self.write().set_migratetype_checked(pfn, mt))
    }

    /// Per-pageblock bits (migratetype low nibble, zone high nibble), copied.
    fn pageblock_bits<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u8>> {
        self.read()
            .store
            .pageblock_bytes()
            .to_vec()
            .into_pyarray(py)
    }

    /// Fill online RAM from a workload (only `blocks`, when given); `progress(done, total)`
    /// (blocks) is called as it goes.
    #[pyo3(signature = (workload, seed, progress=None, blocks=None))]
    fn populate(
        &self,
        py: Python<'_>,
        workload: &Bound<'_, PyDict>,
        seed: u64,
        progress: Option<&Bound<'_, PyAny>>,
        blocks: Option<Vec<u64>>,
    ) -> PyResult<()> {
        let w = workload_from_dict(workload)?;
        interruptible(py, progress, |ctl| {
            workload::populate_cancellable(&mut self.write(), &w, seed, ctl, blocks.as_deref())
        })
    }

    fn kind_counts(&self) -> Vec<u64> {
        workload::kind_counts(&self.read()).to_vec()
    }

    fn memory_bytes(&self) -> u64 {
        self.read().store.memory_bytes()
    }

    /// Bytes `populate` (of `blocks`, when given) would allocate now, before it allocates.
    #[pyo3(signature = (blocks=None))]
    fn populate_bytes(&self, blocks: Option<Vec<u64>>) -> PyResult<u64> {
        guard(|| workload::populate_bytes(&self.read(), blocks.as_deref()))
    }

    /// Bytes of page chunks shared with copies (copy-on-write, not yet written by either).
    fn shared_bytes(&self) -> u64 {
        self.read().store.shared_bytes()
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
        let s = guard(|| removable::removable_show(&m, block, &Self::profile(&m, kernel)?))?;
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
        let res = detached(py, || {
            let m = self.read();
            removable::scan_blocks(&m, &blocks, &Self::profile(&m, kernel)?, parallel)
        })?;
        let g = self.read().geometry;
        let d = PyDict::new(py);
        let value: Vec<i8> = res
            .iter()
            .map(|s| s.value.map_or(-1, |v| v as i8))
            .collect();
        let scanned: Vec<bool> = res.iter().map(|s| s.scanned).collect();
        let faults = PyList::empty(py);
        let notes = PyList::empty(py);
        for s in &res {
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
        set_columns(&d, &ScanCost::FIELDS, &res, |s| &s.cost)?;
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
        let o = detached(py, || {
            if dry_run {
                // deciding reads only: a shared lock
                let m = self.read();
                let p = Self::profile(&m, kernel)?;
                return offline::decide_offline(&m, block, &p, patience_rounds).map(|(o, _)| o);
            }
            let mut m = self.write();
            let p = Self::profile(&m, kernel)?;
            let opts = OfflineOptions {
                dry_run,
                patience_rounds,
            };
            offline::offline_block(&mut m, block, &p, opts)
        })?;
        let g = self.read().geometry;
        let d = PyDict::new(py);
        d.set_item("block", o.block)?;
        d.set_item("errno", o.errno.map(Errno::name))?;
        d.set_item("reason", o.reason)?;
        d.set_item("pfn", o.pfn)?;
        d.set_item("detail", o.detail)?;
        d.set_item("fault", fault_opt(py, &g, o.fault.as_ref())?)?;
        d.set_item("applied", o.applied)?;
        set_fields(&d, &OfflineWork::FIELDS, &o.work)?;
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
        let outs = detached(py, || {
            // dry runs only decide: a shared lock, so readers run beside them
            let m = self.read();
            offline::decide_many(&m, &blocks, &Self::profile(&m, kernel)?, patience_rounds)
        })?;
        let g = self.read().geometry;
        let d = PyDict::new(py);
        d.set_item("block", blocks.into_pyarray(py))?;
        let errno: Vec<_> = outs.iter().map(|o| o.errno.map(Errno::name)).collect();
        d.set_item("errno", errno)?;
        d.set_item("reason", outs.iter().map(|o| o.reason).collect::<Vec<_>>())?;
        d.set_item("pfn", outs.iter().map(|o| o.pfn).collect::<Vec<_>>())?;
        let detail: Vec<_> = outs.iter().map(|o| o.detail.clone()).collect();
        d.set_item("detail", detail)?;
        let faults = outs
            .iter()
            .map(|o| fault_opt(py, &g, o.fault.as_ref()))
            .collect::<PyResult<Vec<_>>>()?;
        d.set_item("fault", faults)?;
        set_columns(&d, &OfflineWork::FIELDS, &outs, |o| &o.work)?;
        Ok(d)
    }

    /// An independent deep copy of the machine (page bytes, pageblock bits, block states).
    /// The allocation is fallible: a copy that does not fit is a ModelMemoryError.
    fn copy(&self, py: Python<'_>) -> PyResult<CoreMachine> {
        Ok(CoreMachine::new(detached(py, || self.read().try_clone())?))
    }

    /// Write a memory sysfs tree under `root` from per-block values (see memscan.sysfs).
    /// `link_limit` stands in for the file system's limit on links per inode (tests).
    #[staticmethod]
    /// `progress(done, total)` (blocks) is called as it goes.
    #[pyo3(signature = (root, block_size, blocks, link_limit=None, progress=None))]
    fn write_sysfs_tree(
        py: Python<'_>,
        root: String,
        block_size: u64,
        blocks: Vec<BlockFilesTuple>,
        link_limit: Option<u32>,
        progress: Option<&Bound<'_, PyAny>>,
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
        interruptible(py, progress, |ctl| {
            sysfs::write_tree(
                std::path::Path::new(&root),
                block_size,
                &files,
                link_limit,
                ctl,
            )
        })
    }

    /// ns per open + read + close of one attribute file (read-only; see memscan calibrate).
    #[staticmethod]
    fn time_attribute_reads(py: Python<'_>, path: String, reads: u32) -> PyResult<f64> {
        detached(py, || {
            sysfs::time_attribute_reads(std::path::Path::new(&path), reads)
        })
    }

    /// /proc/kpageflags words for `count` pfns from `start` (6.1 semantics).
    fn kpageflags_export<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        count: u64,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let v = detached(py, || {
            let m = self.read();
            m.check_pfn_range(start, count)?;
            Ok(kpageflags::export(&m, start, count))
        })?;
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
        let f = contiguous(&flags, "flags")?;
        let c = counts
            .as_ref()
            .map(|c| contiguous(c, "counts"))
            .transpose()?;
        let st = guard(|| kpageflags::import_checked(&mut self.write(), start, f, c))?;
        let d = PyDict::new(py);
        set_fields(&d, &ImportStats::FIELDS, &st)?;
        d.set_item("buddy_blocks", st.buddy_blocks.to_vec())?;
        Ok(d)
    }

    /// Page kinds from raw x86_64 struct pages (64 bytes per pfn from `start`; `vmemmap` is
    /// the base their compound_head pointers use; `nodes_shift`: the config's, where known,
    /// for the node/zone bits check).
    #[pyo3(signature = (start, raw, vmemmap, nodes_shift=None))]
    fn memmap_import<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        raw: PyReadonlyArray1<'_, u8>,
        vmemmap: u64,
        nodes_shift: Option<u32>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = contiguous(&raw, "struct pages")?;
        let st =
            guard(|| memmap::import_checked(&mut self.write(), start, r, vmemmap, nodes_shift))?;
        let d = PyDict::new(py);
        set_fields(&d, &MemmapStats::FIELDS, &st)?;
        d.set_item("layout_fits", st.layout_fits)?;
        Ok(d)
    }

    /// `echo <online_type> > memoryN/state`: None on success, else the errno name.
    fn online(&self, block: u64, online_type: &str) -> PyResult<Option<&'static str>> {
        guard(|| {
            offline::online_block(&mut self.write(), block, online_type).map(|e| e.map(Errno::name))
        })
    }

    /// `valid_zones` of many blocks in one call (None where the read faults).
    fn valid_zones_many(&self, blocks: Vec<u64>, kernel: &str) -> PyResult<Vec<Option<String>>> {
        let m = self.read();
        guard(|| offline::valid_zones_many(&m, &blocks, &Self::profile(&m, kernel)?))
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
        let r = guard(|| offline::valid_zones(&m, block, &Self::profile(&m, kernel)?))?;
        let d = PyDict::new(py);
        let (value, fault) = match r {
            Ok(v) => (Some(v), None),
            Err(f) => (None, Some(f)),
        };
        d.set_item("value", value)?;
        d.set_item("fault", fault_opt(py, &m.geometry, fault.as_ref())?)?;
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
        let (r, cost) = guard(|| {
            m.check_pfn_range(start_pfn, nr_pages)?;
            removable::is_mem_section_removable_call(
                &m,
                start_pfn,
                nr_pages,
                &Self::profile(&m, kernel)?,
            )
        })?;
        let d = PyDict::new(py);
        let (value, fault) = match r {
            Ok(v) => (Some(u8::from(v)), None),
            Err(f) => (None, Some(f)),
        };
        d.set_item("value", value)?;
        d.set_item("fault", fault_opt(py, &m.geometry, fault.as_ref())?)?;
        set_fields(&d, &ScanCost::FIELDS, &cost)?;
        Ok(d)
    }
}

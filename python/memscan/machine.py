"""``Machine``: the Python face of the native model."""

from __future__ import annotations

import operator
import os
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._core import X86_VMEMMAP_BASE, CoreMachine
from .errors import ArgumentError, LayoutError, NoSuchBlockError, ParseError, PfnRangeError
from .kernel import (
    MEMMAP_LAYOUTS,
    OFFLINE_KERNEL,
    POST_PATCH_KERNEL,
    Kernel,
    KernelLike,
    kernel_spec,
)
from .kinds import BlockState, MigrateType, PageKind, page_byte
from .progress import Progress
from .results import (
    Geometry,
    Offline,
    Origin,
    Prediction,
    Removable,
    ScanResult,
    ValidZones,
    _fault,
    offline_from_core,
    offlines_from_columns,
    removable_from_core,
    scan_from_core,
)
from .sizes import SizeLike, parse_size
from .sources import Layout, layout_from_iomem, load_layout, seed_layout, synthetic_layout
from .sources.layout import canonical_arch
from .workload import Workload


def _nodes_shift(value: Any) -> int:
    """A CONFIG_NODES_SHIFT for the struct page check: x86_64 configs give 0..10."""
    v = _nonneg(value, "nodes_shift", ArgumentError)
    if v > 10:
        raise ArgumentError(f"nodes_shift {v}: x86_64 configs give CONFIG_NODES_SHIFT 0..10")
    return v


def _nonneg(value: Any, what: str, error: type) -> int:
    """An integer argument (a Python or numpy integer: no float or string cast), >= 0."""
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentError(f"{what} {value!r}: want an integer") from None
    if v < 0:
        raise error(f"{what} {v}: negative")
    if v >= 1 << 64:
        raise error(f"{what} {v}: beyond any pfn or block id (2^64)")
    return v


def _pfn(value: Any, what: str = "pfn") -> int:
    return _nonneg(value, what, PfnRangeError)


def _block(value: Any) -> int:
    return _nonneg(value, "block", NoSuchBlockError)


def _str(value: Any, what: str) -> str:
    """A string argument (a kernel name, a state): anything else is refused, not cast."""
    if not isinstance(value, str):
        raise ArgumentError(f"{what} {value!r}: want a string")
    return value


#: Blocks per native call in ``scan``: between calls Ctrl-C is seen and progress advances.
SCAN_CHUNK = 512


def _build_core(layout: Layout) -> CoreMachine:
    """The native model of a layout: sources return plain data, only the facade builds."""
    pr = layout.pfn_ranges()
    if not pr["ram"]:
        raise LayoutError(f"{layout.name}: the layout has no RAM")
    geometry = {k: int(v) for k, v in layout.geometry.items()}
    if layout.block_size is not None:
        geometry["block_size"] = int(layout.block_size)
    zones = layout.zones if layout.zones is not None else layout.derived_zones(pr["ram"])
    core = CoreMachine.build(
        canonical_arch(layout.arch),
        geometry,
        layout.boot_mem_end(),
        [(s, e, n) for s, e, n, _ in pr["ram"]],
        [(s, e) for s, e, _, _ in pr["reserved"]],
        pr["device"],
        list(zones),
        list(layout.offline_blocks),
        list(layout.hstates),
        layout.kernel,
    )
    managed = layout.driver_managed_pfns()
    if managed:
        core.set_driver_managed(managed)
    return core


class _OriginField:
    """A Machine attribute that is a view of the same-named field of ``machine.origin``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        return self if obj is None else getattr(obj.origin, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj.origin, self.name, value)


class Machine:
    """A modeled machine: layout, page states, and the kernel functions that read them.

    Build one with ``Machine.seed()``, ``Machine.from_iomem()``, ``Machine.synthetic()`` or
    ``Machine.from_layout()``; fill its RAM with ``populate()``; ask ``removable()`` /
    ``scan()``. Methods that take a kernel accept "5.5", "5.5.10", "5.6-rc7", "5.6", "6.1",
    each optionally with "+debug" (DEBUG_VM and DEBUG_VM_PGFLAGS).
    """

    def __init__(
        self,
        core: Any,
        layout: Optional[Layout] = None,
        name: str = "machine",
        origin: Optional[Origin] = None,
    ):
        self._core = core
        self.layout = layout
        self.name = name
        #: where this machine came from and what its source told beyond the layout
        self.origin = origin if origin is not None else Origin(source=name)

    # The provenance attributes of earlier releases, read and written through ``origin``
    # (documented there).
    sysfs_removable = _OriginField()
    sysfs_tree = _OriginField()
    snapshot_info = _OriginField()
    storage_increment = _OriginField()

    def copy(self) -> Machine:
        """An independent copy: its pages, pageblock bits and block states change apart from
        this machine's. Copy-on-write: the two share each block's page bytes until either
        writes that block, which then takes its own copy of it (``shared_bytes``), so a copy
        of a populated 32 TiB machine costs its tables, not its 8 GiB of pages. A block with
        a live ``pages()`` view is copied at once instead: a view always shows its own
        machine's bytes, and writes never move them.

        Raises:
            ModelMemoryError: the copy's tables do not fit in memory.
        """
        import copy as _copy

        return Machine(self._core.copy(), self.layout, self.name, _copy.deepcopy(self.origin))

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def from_layout_object(cls, layout: Layout, origin: Optional[Origin] = None) -> Machine:
        """Build the native model of a ``Layout`` (the one place one is built)."""
        return cls(_build_core(layout), layout, layout.name, origin)

    @classmethod
    def seed(cls) -> Machine:
        """The embedded default: the machine of the March 2020 lsmem crash (see
        ``memscan.sources.embedded``)."""
        return cls.from_layout_object(seed_layout(), Origin("seed", "the March 2020 lsmem crash"))

    @classmethod
    def from_iomem(
        cls,
        text: str,
        arch: str = "x86_64",
        block_size: Optional[SizeLike] = None,
        source: str = "<iomem>",
    ) -> Machine:
        """From /proc/iomem text. ``block_size`` None applies the arch rule (x86:
        probe_memory_block_size on the end of System RAM).

        Raises:
            ParseError: a malformed line, bad nesting or overlap (names the line).
            GeometryError: an impossible block size.
        """
        bs = None if block_size is None else parse_size(block_size, "block_size")
        return cls.from_layout_object(
            layout_from_iomem(text, arch=arch, block_size=bs, source=source),
            Origin("iomem", source),
        )

    @classmethod
    def from_iomem_file(cls, path: Union[str, os.PathLike[str]], **kw: Any) -> Machine:
        p = os.fspath(path)
        try:
            with open(p, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            from .errors import ParseError

            raise ParseError(f"{p}: cannot read: {e.strerror}") from None
        return cls.from_iomem(text, source=p, **kw)

    @classmethod
    def synthetic(
        cls,
        total: SizeLike,
        arch: str = "x86_64",
        block_size: Optional[SizeLike] = None,
        nodes: int = 1,
        pmem: SizeLike = 0,
        page_size: Optional[str] = None,
        kernel: Optional[str] = None,
    ) -> Machine:
        """A synthetic machine of ``total`` bytes of RAM (e.g. "1T"), see
        ``memscan.sources.synthetic``. ``kernel`` picks the geometry defaults where kernel
        versions differ (arm64: 1 GiB sections before v5.12, 128 MiB with 4K/16K pages and
        512 MiB with 64K from v5.12, so "6.1" gives those); None takes v5.5's."""
        layout = synthetic_layout(total, arch, block_size, nodes, pmem, page_size, kernel)
        return cls.from_layout_object(layout, Origin("synthetic", layout.name))

    @classmethod
    def from_snapshot(
        cls, path: Union[str, os.PathLike[str]], progress: Optional[bool] = None
    ) -> Machine:
        """From a snapshot made by ``memscan capture`` (see memscan.sources.snapshot). What the
        snapshot could not tell is in ``machine.snapshot_info``.

        Raises:
            ParseError: a missing or malformed file in the snapshot (named in the message).
        """
        from .kpageflags import import_words
        from .sources.snapshot import OpenSnapshot

        with OpenSnapshot(path) as snap:
            t0 = time.perf_counter()
            tree = snap.tree
            origin = Origin(
                "snapshot", os.fspath(path), sysfs_removable=tree.removable(), sysfs_tree=tree
            )
            m = cls.from_layout_object(snap.layout, origin)
            if snap.uninit_memmap is not None:
                m.uninit_memmap = snap.uninit_memmap
            stats = None
            total = snap.kpageflags_pfns(m.geometry.max_pfn)
            with Progress(total, "kpageflags", enabled=progress, unit="pfn") as bar:
                for start, words, counts in snap.page_chunks(m.geometry.max_pfn):
                    stats = import_words(m, words, start, stats, counts)
                    bar.update(len(words))
            # 5.x drops khugepaged's raise at the first online or offline after boot (seen
            # on a real 5.4.59 guest after a runtime hot-add): the captured min_free_kbytes
            # says whether that happened, by the nearer of the two readings. Without the
            # raise the model's value is int_sqrt of its own lowmem estimate, which is a few
            # per cent above the kernel's (managed pages less the high watermarks,
            # nr_free_buffer_pages() in init_per_zone_wmark_min, 5.5-rc5; the model counts
            # present pages and no memblock reservations): the gap is reported, not hidden.
            cap = snap.captured_min_free_kbytes()
            if cap is not None and m.thp_enabled:
                raised = m.min_free_kbytes("5.5")
                m.hotplugged = True
                if abs(m.min_free_kbytes("5.5") - cap) >= abs(raised - cap):
                    m.hotplugged = False
            # the raw struct pages, where captured and decoded, over kpageflags' kinds
            mstats: Optional[Dict[str, Any]] = None
            total = snap.memmap_pfns(m.geometry.max_pfn)
            if total:
                assert snap.memmap is not None
                mstats = {}
                with Progress(total, "memmap", enabled=progress, unit="pfn") as bar:
                    for start, raw in snap.memmap_chunks(m.geometry.max_pfn):
                        got = m.import_memmap(
                            raw,
                            start,
                            layout=snap.memmap["layout"],
                            vmemmap=snap.memmap["vmemmap_base"],
                            nodes_shift=snap.memmap.get("nodes_shift"),
                        )
                        for k, v in got.items():
                            if k == "layout_fits":  # the widths every chunk so far fits
                                mstats[k] = [w for w in mstats.get(k, v) if w in v]
                            else:
                                mstats[k] = mstats.get(k, 0) + v
                        bar.update(len(raw) // 64)
            origin.snapshot_info = snap.describe(m, stats, time.perf_counter() - t0, mstats)
        return m

    @classmethod
    def live(cls, progress: Optional[bool] = None) -> Machine:
        """Capture this machine read-only (a temporary snapshot) and build its model."""
        import tempfile

        from .sources.snapshot import capture

        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "live.tar.gz")
            capture(out, progress=progress)
            return cls.from_snapshot(out, progress)

    @classmethod
    def from_sysfs(
        cls,
        src: Union[str, os.PathLike[str]] = "/",
        arch: str = "x86_64",
        page_size: Optional[str] = None,
    ) -> Machine:
        """From a memory sysfs tree: ``"/"`` reads the live ``/sys`` (read-only), a directory
        holding ``sys/devices/system/memory``, or a tarball of one. The kernel's own
        ``removable`` answers are kept in ``machine.sysfs_removable`` (block -> 0/1/None).
        ``page_size`` ("4K", "16K", "64K"): sysfs does not say it; the arch's default otherwise.

        Raises:
            ParseError: missing files, unparsable values, duplicate blocks, a block size that is
                not a power of two, tar members outside the archive root (named in the message).
        """
        from .sources.sysfs_tree import (
            layout_from_sysfs,
            read_sysfs_tree,
            storage_increment_from_sysfs,
        )

        tree = read_sysfs_tree(src)
        layout, removable = layout_from_sysfs(tree, arch, page_size)
        origin = Origin(
            "sysfs",
            os.fspath(src),
            sysfs_removable=removable,
            sysfs_tree=tree,
            storage_increment=storage_increment_from_sysfs(tree)
            if layout.arch == "s390x"
            else None,
        )
        m = cls.from_layout_object(layout, origin)
        for b in tree.blocks:
            if b.state == "going-offline":
                m.set_block_state(b.block, "going-offline")
        return m

    @classmethod
    def from_layout(cls, layout: Union[Dict[str, Any], str, os.PathLike[str]]) -> Machine:
        """From a declarative layout: a dict or a JSON file (see ``memscan.sources.layout``)."""
        source = "<dict>" if isinstance(layout, dict) else os.fspath(layout)
        return cls.from_layout_object(load_layout(layout), Origin("layout", source))

    # -- structure --------------------------------------------------------------------------
    @property
    def geometry(self) -> Geometry:
        return Geometry(**self._core.geometry())

    def block_states(self) -> np.ndarray:
        """State code per block id (see ``BlockState``)."""
        return self._core.block_states()

    def blocks(self) -> np.ndarray:
        """Ids of the blocks that have a memoryN directory."""
        return np.nonzero(self._core.block_states())[0].astype(np.uint64)

    def block_state(self, block: int) -> BlockState:
        block = _block(block)
        st = self._core.block_states()
        if not block < len(st):
            raise NoSuchBlockError(
                f"memory block {block} does not exist (the machine has block ids 0..{len(st)})"
            )
        return BlockState(int(st[block]))

    def set_block_state(self, block: int, state: str) -> None:
        """Set a block's state by its sysfs name (online, offline, going-offline)."""
        self._core.set_block_state(_block(block), _str(state, "state"))

    def block_range(self, block: int) -> tuple:
        """Physical [start, end] (inclusive) of a block."""
        bs = self.geometry.block_size
        return block * bs, (block + 1) * bs - 1

    def sections(self) -> Dict[str, np.ndarray]:
        """Per-section ``flags`` (1 present, 2 online, 4 early, 8 device) and ``nid``."""
        return self._core.sections()

    def zones(self) -> List[tuple]:
        """Zone spans: (nid, zone, start_pfn, end_pfn)."""
        return self._core.zones()

    def set_hugetlb_reserved(self, hstate: int, pages: int) -> None:
        """Set ``resv_huge_pages`` of an hstate: free pool pages promised to mappings, which
        offlining cannot dissolve ("failure to dissolve huge pages")."""
        self._core.set_hugetlb_reserved(int(hstate), int(pages))

    def hstates(self) -> List[tuple]:
        """hugetlb sizes: (order, migration supported)."""
        return self._core.hstates()

    # -- pages ------------------------------------------------------------------------------
    def populate(
        self,
        workload: Union[Workload, str, None] = None,
        seed: int = 0,
        progress: Optional[bool] = None,
        blocks: Optional[Iterable[int]] = None,
    ) -> Machine:
        """Fill online RAM with a workload (a ``Workload`` or a preset name). Deterministic:
        the same seed gives the same pages. A progress bar (blocks filled) shows on a
        terminal unless ``progress=False``; Ctrl-C stops it. Returns self.

        ``blocks`` fills only those memory blocks (a sparse machine, e.g.
        ``m.blocks()[::8]``); the others keep their pages and stay compact. A block's pages
        depend only on the seed and its pfns, so it gets the pages a full populate gives it,
        except for the machine-wide placements (gigantic hugetlb pages, CMA, hwpoison and
        balloon pages), which then draw among the chosen blocks.

        Raises:
            NoSuchBlockError: a block id past the machine's last block.
            ArgumentError: a block with no online RAM (offline, a hole, ZONE_DEVICE).
        """
        if workload is None:
            workload = Workload()
        if isinstance(workload, str):
            workload = Workload.preset(workload)
        if not isinstance(workload, Workload):
            raise ArgumentError(
                f"populate: expected a Workload or preset name, got {type(workload).__name__}"
            )
        if not isinstance(seed, int) or seed < 0:
            raise ArgumentError(f"populate: seed must be a non-negative int, got {seed!r}")
        only = None if blocks is None else [_block(b) for b in blocks]
        total = len(self.blocks()) if only is None else len(set(only))
        with Progress(total, "populate", enabled=progress, unit="block") as bar:
            self._core.populate(workload.to_dict(), seed, bar.callback, only)
        return self

    def pages(self, block: int) -> np.ndarray:
        """Read-only numpy view of a block's page bytes (no copy). It keeps this machine
        alive and shows its bytes as they change (the block is never shared with a copy
        while the view lives). Kind = ``v & 0xF``, field = ``v >> 4``."""
        return self._core.block_view(_block(block))

    def page(self, pfn: int) -> int:
        return self._core.page(_pfn(pfn))

    def page_bytes(self, pfn: int, count: int) -> np.ndarray:
        """A copy of ``count`` page bytes from ``pfn``."""
        return self._core.page_bytes(_pfn(pfn), _pfn(count, "count"))

    def set_pages(self, pfn: int, count: int, kind: Union[PageKind, int], field: int = 0) -> None:
        """Set ``count`` pages from ``pfn`` to ``kind`` (with its 4-bit field)."""
        try:
            k = PageKind(kind)
        except ValueError:
            raise ArgumentError(f"set_pages: {kind!r} is not a page kind") from None
        self._core.set_pages(
            _pfn(pfn), _pfn(count, "count"), page_byte(k, _nonneg(field, "field", ArgumentError))
        )

    def write_pages(self, pfn: int, values: np.ndarray) -> None:
        """Write raw page bytes from ``pfn``: a 1-D array of integers 0..255 (kind in the low
        4 bits, field in the high 4), written as uint8. Nothing is cast silently: floats,
        2-D arrays and values outside 0..255 are refused.

        Raises:
            ArgumentError: not a 1-D integer array, or a value outside 0..255.
            PfnRangeError: a negative ``pfn`` or a range outside the machine.
        """
        start = _pfn(pfn)
        arr = np.asarray(values)
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ArgumentError(
                f"write_pages: values has shape {arr.shape} and dtype {arr.dtype}; want a 1-D "
                "array of integers 0..255"
            )
        if arr.dtype != np.uint8 and len(arr) and (arr.min() < 0 or arr.max() > 255):
            bad = int(arr[(arr < 0) | (arr > 255)][0])
            raise ArgumentError(f"write_pages: value {bad} is not a page byte (0..255)")
        self._core.write_pages(start, np.ascontiguousarray(arr, dtype=np.uint8))

    def set_migratetype(self, pfn: int, mt: Union[MigrateType, int]) -> None:
        """Set the migratetype of the pageblock holding ``pfn``."""
        self._core.set_migratetype(_pfn(pfn), int(MigrateType(mt)))

    def kind_counts(self) -> Dict[str, int]:
        """Pages per kind over present sections."""
        return {PageKind(i).name: int(c) for i, c in enumerate(self._core.kind_counts())}

    @property
    def uninit_memmap(self) -> str:
        """What struct pages that were never initialised hold on a kernel without DEBUG_VM
        (with DEBUG_VM they are poisoned, whatever this says): ``"garbage"`` (real pmem
        media that held data, the seed's case: reads are undefined or oops) or ``"zero"``
        (fresh media, a QEMU guest: node 0, ZONE_DMA, flags 0, as a real 5.4.59 kernel read
        them). The kernel leaves this to the memory, so it is an input of the model."""
        return str(self._core.uninit_memmap)

    @uninit_memmap.setter
    def uninit_memmap(self, value: str) -> None:
        self._core.uninit_memmap = value

    def min_free_kbytes(self, kernel: KernelLike = OFFLINE_KERNEL) -> int:
        """``vm.min_free_kbytes`` as ``kernel`` sets it for this machine now: int_sqrt(lowmem
        KiB x 16) clamped to 128..65536 (5.x) or 128..262144 (6.1), a user setting kept where
        at least as large, raised by khugepaged for THP (``thp_enabled``; 5.x drops the raise
        after the first online or offline, 6.1 keeps it). Migration targets leave it free."""
        k = Kernel.parse(kernel, self.geometry.arch)
        v5, v61 = self._core.min_free_pages()
        pages = v61 if k.offline_path_6_1 else v5
        return int(pages) * (1 << self.geometry.page_shift) // 1024

    def set_min_free_kbytes(self, kbytes: Optional[int]) -> None:
        """``echo KB > /proc/sys/vm/min_free_kbytes`` (``None``: back to the computed value)."""
        if kbytes is not None:
            kbytes = _nonneg(kbytes, "min_free_kbytes", ArgumentError)
        self._core.set_min_free_kbytes(kbytes)

    @property
    def hotplugged(self) -> bool:
        """A block was onlined or offlined since boot: 5.x's init_per_zone_wmark_min() then
        recomputes min_free_kbytes without khugepaged's THP raise (6.1 reapplies it). The
        model's own onlines and offlines set it; a snapshot says it through its captured
        min_free_kbytes (``from_snapshot``)."""
        return bool(self._core.hotplugged)

    @hotplugged.setter
    def hotplugged(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ArgumentError(f"hotplugged {value!r}: want True or False")
        self._core.hotplugged = value

    @property
    def thp_enabled(self) -> bool:
        """Transparent hugepages enabled (always or madvise: khugepaged runs and raises
        min_free_kbytes, set_recommended_min_free_kbytes). Default True, as distributions
        ship; False for ``transparent_hugepage=never``."""
        return bool(self._core.thp_enabled)

    @thp_enabled.setter
    def thp_enabled(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ArgumentError(f"thp_enabled {value!r}: want True or False")
        self._core.thp_enabled = value

    @property
    def hugetlb_vmemmap_optimize(self) -> bool:
        """HugeTLB Vmemmap Optimization (boot parameter ``hugetlb_free_vmemmap=on``; off by
        default, CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON is ``default n`` in 6.1): a
        6.1 offline must restore a free huge page's vmemmap before dissolving it (7 pages for
        2 MiB, 4,095 for 1 GiB, from the page's node) and fails with ENOMEM without them."""
        return bool(self._core.hugetlb_vmemmap_optimized)

    @hugetlb_vmemmap_optimize.setter
    def hugetlb_vmemmap_optimize(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ArgumentError(f"hugetlb_vmemmap_optimize {value!r}: want True or False")
        self._core.hugetlb_vmemmap_optimized = value

    def memory_bytes(
        self, after_populate: bool = False, blocks: Optional[Iterable[int]] = None
    ) -> int:
        """Bytes the model itself holds; with ``after_populate``, what it would hold after
        ``populate(blocks=blocks)``, computed before anything is allocated (populate makes
        every block it fills dense: one byte per page). A machine too large for this host is
        then known in advance; populate itself refuses more than RAM plus swap with a
        ``ModelMemoryError`` and fails cleanly under a memory limit."""
        now = int(self._core.memory_bytes())
        if not after_populate:
            if blocks is not None:
                raise ArgumentError("memory_bytes: blocks= goes with after_populate=True")
            return now
        only = None if blocks is None else [_block(b) for b in blocks]
        return now + int(self._core.populate_bytes(only))

    def shared_bytes(self) -> int:
        """Bytes of page chunks this machine shares with its copies (``copy``), counted in
        ``memory_bytes`` of each and held once."""
        return int(self._core.shared_bytes())

    # -- kernel models ----------------------------------------------------------------------
    def removable(self, block: int, kernel: KernelLike = "5.5") -> Removable:
        """Read ``memory<block>/removable`` under ``kernel``.

        Raises:
            NoSuchBlockError: the block id is out of range or has no directory.
            ArgumentError: an unknown kernel.
        """
        kernel = kernel_spec(kernel)
        return removable_from_core(self._core.removable(_block(block), kernel), kernel)

    def scan(
        self,
        kernel: KernelLike = "5.5",
        blocks: Optional[Sequence[int]] = None,
        parallel: bool = False,
        progress: Optional[bool] = None,
    ) -> ScanResult:
        """``removable`` of every block (or ``blocks``) at once, as numpy columns. The GIL is
        released while Rust scans; Ctrl-C stops between chunks; a progress bar shows on a
        terminal unless ``progress=False``."""
        ids = self.blocks() if blocks is None else np.asarray(blocks, dtype=np.uint64)
        # refuse an unknown kernel even with no blocks
        kernel = kernel_spec(kernel)
        self._core.scan([], kernel, False)
        parts = []
        bar = Progress(len(ids), f"removable ({kernel})", enabled=progress)
        try:
            for i in range(0, len(ids), SCAN_CHUNK):
                chunk = [int(b) for b in ids[i : i + SCAN_CHUNK]]
                parts.append(self._core.scan(chunk, kernel, parallel))
                bar.update(len(chunk))
        finally:
            bar.close()

        return scan_from_core(parts, kernel)

    def offline(
        self,
        block: int,
        kernel: KernelLike = OFFLINE_KERNEL,
        dry_run: bool = True,
        patience_rounds: int = 1000,
    ) -> Offline:
        """Predict (``dry_run``) or perform ``echo offline > memory<block>/state``.

        Without dry run a success changes the model as the kernel would: migrated pages move to
        free memory of the allowed nodes (the kernel prefers other nodes), the block goes
        offline with its memmap uninitialised, zone spans shrink.

        Raises:
            NoSuchBlockError: no such memory block.
        """
        kernel = kernel_spec(kernel)
        d = self._core.offline(_block(block), kernel, bool(dry_run), int(patience_rounds))
        return offline_from_core(d, kernel)

    def offline_many(
        self,
        blocks: Optional[Sequence[int]] = None,
        kernel: KernelLike = OFFLINE_KERNEL,
        patience_rounds: int = 1000,
    ) -> List[Offline]:
        """Dry-run offline of every block (or ``blocks``) in one native call."""
        ids = [_block(b) for b in (self.blocks() if blocks is None else blocks)]
        kernel = kernel_spec(kernel)
        d = self._core.offline_many(ids, kernel, int(patience_rounds))
        return offlines_from_columns(ids, d, kernel)

    def export_sysfs(
        self,
        root: Union[str, os.PathLike[str]],
        kernel: KernelLike = "5.5",
        on_fault: str = "missing",
        values: str = "model",
        force: bool = False,
        progress: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Write ``root/sys/devices/system/memory`` as this kernel would show it; real
        ``lsmem --sysroot root`` reads it. See ``memscan.sysfs`` for ``on_fault``. ``root``
        must be empty; ``force=True`` replaces an earlier export in it whole.
        ``values="sysfs"`` writes ``removable`` and ``valid_zones`` as the imported tree had
        them (machines from ``from_sysfs``), so lsmem prints what it printed on the original."""
        from .sysfs import export_sysfs

        return export_sysfs(self, root, kernel, on_fault, values, force, progress=progress)

    def export_kpageflags(
        self,
        path: Union[str, os.PathLike[str]],
        progress: Optional[bool] = None,
        force: bool = False,
    ) -> Dict[str, int]:
        """Write the model's pages as a /proc/kpageflags file (6.1 semantics), readable by
        the kernel's page-types -F and other kpageflags tools: 8 bytes per pfn, so more than
        1 GiB (a 512 GiB machine) needs ``force``. Returns ``{"pfns", "bytes",
        "sparse_bytes"}`` (kpageflags.export_kpageflags)."""
        from .kpageflags import export_kpageflags

        return export_kpageflags(self, path, progress, force)

    def import_kpageflags(
        self,
        path: Union[str, os.PathLike[str], np.ndarray],
        progress: Optional[bool] = None,
        start_pfn: int = 0,
        count: Optional[int] = None,
        kpagecount: Union[str, os.PathLike[str], np.ndarray, None] = None,
    ) -> Dict[str, Any]:
        """Set page kinds from kpageflags (a file or an array of words; a pfn range of it)
        over this machine's layout, with kpagecount telling free hugetlb pool pages from
        mapped ones; returns what could not be told apart (see memscan.kpageflags)."""
        from .kpageflags import import_kpageflags

        return import_kpageflags(self, path, progress, start_pfn, count, kpagecount)

    def import_memmap(
        self,
        data: Union[bytes, np.ndarray, str, os.PathLike[str]],
        start_pfn: int,
        layout: str = "5.4-x86_64",
        vmemmap: Optional[int] = None,
        nodes_shift: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Set page kinds from raw struct pages (64 bytes per pfn from ``start_pfn``): a vmemmap
        range read from /proc/kcore, a vmcore (crash/drgn) or a ground-truth run. What each
        kind comes from is in src/memmap.rs; the memmap tells what kpageflags cannot (per-CPU
        free pages by their refcount 0, LRU pages still in a pagevec, compound destructors).
        Only pfns of online sections are written. Returns counts of what was found.

        ``layout``: "5.4-x86_64" (read in 5.4.59) or "6.1-x86_64" (read in v6.1-rc7: the
        fields memscan decodes sit at the same offsets and bits). ``vmemmap``: the vmemmap base
        the struct pages' compound_head pointers use (the 4-level x86_64 default; a kernel with
        RANDOMIZE_MEMORY or 5-level paging has its own, in its ``vmemmap_base`` variable).

        The node and zone bits at the top of each initialised, unreserved page's flags are
        checked against the machine's node and zone for that pfn first: ``nodes_shift`` is the
        kernel's CONFIG_NODES_SHIFT where known (6 in our 5.4.59 builds, 10 in Debian's 6.1);
        without it any x86_64 width is tried, and ``layout_fits`` in the result says which
        fit. Pages that fit none are refused before any page is written: another kernel's
        layout, or another machine's struct pages.

        Raises:
            ArgumentError: a struct page layout memscan does not decode, or node/zone bits
                this machine and layout do not explain.
            ParseError: data that is not a whole number of 64-byte struct pages.
            PfnRangeError: a range outside the machine.
        """
        if layout not in MEMMAP_LAYOUTS.values():
            raise ArgumentError(
                f"struct page layout {layout!r} is not decoded (known: "
                f"{', '.join(MEMMAP_LAYOUTS.values())}); decoding another kernel's struct pages with it would be "
                "silently wrong"
            )
        where = "struct pages"
        if isinstance(data, (str, os.PathLike)):
            where = os.fspath(data)
            try:
                with open(where, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise ParseError(f"{where}: cannot read struct pages: {e.strerror}") from None
        arr = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 1:
            raise ArgumentError(f"{where}: want bytes or a 1-D uint8 array of struct pages")
        if len(arr) % 64:
            raise ParseError(
                f"{where}: {len(arr)} bytes is not a whole number of 64-byte struct pages "
                "(truncated?)"
            )
        return dict(
            self._core.memmap_import(
                int(start_pfn),
                np.ascontiguousarray(arr),
                X86_VMEMMAP_BASE if vmemmap is None else int(vmemmap),
                None if nodes_shift is None else _nodes_shift(nodes_shift),
            )
        )

    def online(self, block: int, online_type: str = "online") -> Optional[str]:
        """``echo <online_type> > memory<block>/state`` (online, online_kernel, online_movable).
        Returns None on success, or the errno name the write returns."""
        return self._core.online(_block(block), _str(online_type, "online_type"))

    def valid_zones(self, block: int, kernel: KernelLike = OFFLINE_KERNEL) -> Optional[str]:
        """The text of ``memory<block>/valid_zones`` (without the newline), or None where the
        read faults (``valid_zones_read`` says how)."""
        return self.valid_zones_read(block, kernel).value

    def valid_zones_read(self, block: int, kernel: KernelLike = OFFLINE_KERNEL) -> ValidZones:
        """Read ``memory<block>/valid_zones`` under ``kernel``: the text, or the fault that
        kills the reader (5.4/5.5 ``test_pages_in_a_zone`` reads ``page_zone()`` of one
        struct page per MAX_ORDER_NR_PAGES: a poisoned one BUGs on a debug kernel, as a real
        5.4.59 kernel does on the seed's shape)."""
        d = self._core.valid_zones(_block(block), kernel_spec(kernel))
        return ValidZones(
            block=int(block), kernel=kernel_spec(kernel), value=d["value"], fault=_fault(d["fault"])
        )

    def valid_zones_many(
        self, blocks: Sequence[int], kernel: KernelLike = OFFLINE_KERNEL
    ) -> List[Optional[str]]:
        """``valid_zones`` text of many blocks in one native call (None where a read faults;
        ``valid_zones_read`` says how)."""
        return list(self._core.valid_zones_many([_block(b) for b in blocks], kernel_spec(kernel)))

    def kpageflags_words(self, start_pfn: int, count: int) -> np.ndarray:
        """/proc/kpageflags words (6.1 semantics) of ``count`` pfns from ``start_pfn``."""
        return self._core.kpageflags_export(_pfn(start_pfn), _pfn(count, "count"))

    def set_pages_from_kpageflags(
        self, start_pfn: int, words: np.ndarray, counts: Optional[np.ndarray] = None
    ) -> Dict[str, Any]:
        """Set the page kinds of ``len(words)`` pfns from ``start_pfn`` from kpageflags words
        (and kpagecount ``counts``, the same pfns); returns what could not be told apart
        (src/kpageflags.rs). ``import_kpageflags`` reads whole files with it."""
        w = np.ascontiguousarray(words, dtype=np.uint64)
        c = None if counts is None else np.ascontiguousarray(counts, dtype=np.uint64)
        return dict(self._core.kpageflags_import(_pfn(start_pfn), w, c))

    def write_sysfs_blocks(
        self,
        root: str,
        rows: List[Tuple[int, str, Optional[str], Optional[str], List[int], int]],
        link_limit: Optional[int] = None,
        progress: Optional[bool] = None,
    ) -> None:
        """Write ``root/sys/devices/system/memory`` from rows of (block, state, removable,
        valid_zones, node ids, phys_device) at this machine's block size: the writer behind
        ``export_sysfs``, which decides the rows and checks the target."""
        with Progress(len(rows), "sysfs export", enabled=progress, unit="block") as bar:
            self._core.write_sysfs_tree(
                root, self.geometry.block_size, rows, link_limit, bar.callback
            )

    def model_state(self) -> Dict[str, Any]:
        """The model's whole state as plain data (copies): every page byte, section flags and
        nodes, pageblock bits, zones, nodes online, hstates, block states, System RAM,
        standby blocks, hugetlb reservations, the uninitialised memmap's content, 6.1's
        mem->zone per block, HVO and the min_free_kbytes inputs. What the reference model
        (memscan.reference) and other independent readers start from."""
        core, g = self._core, self.geometry
        secs = core.sections()
        return {
            "pages": core.page_bytes(0, g.max_pfn),
            "section_flags": secs["flags"],
            "section_nid": secs["nid"],
            "pageblock_bits": core.pageblock_bits(),
            "zones": list(core.zones()),
            "nodes_online": list(core.nodes_online()),
            "hstates": list(core.hstates()),
            "block_states": core.block_states(),
            "system_ram": list(core.system_ram()),
            "driver_managed": list(core.driver_managed),
            "standby_blocks": list(core.standby_blocks()),
            "hugetlb_reserved": list(core.hugetlb_reserved()),
            "uninit_memmap": core.uninit_memmap,
            "mem_zones": list(core.mem_zones()),
            "hvo": bool(core.hugetlb_vmemmap_optimized),
            "min_free_inputs": tuple(core.min_free_inputs()),
        }

    def predict(
        self,
        kernel: KernelLike = "5.5",
        post_kernel: KernelLike = POST_PATCH_KERNEL,
        offline_kernel: Optional[KernelLike] = None,
        patience_rounds: int = 1000,
        progress: Optional[bool] = False,
    ) -> Prediction:
        """For every block: pre-patch and post-patch ``removable`` and the dry-run offline
        outcome under ``offline_kernel`` (default: ``kernel`` without +debug). ``progress``
        draws a bar for the pre-patch scan (off by default). The scans and the dry runs use
        every core (the answers do not depend on it)."""
        ok = (
            kernel_spec(offline_kernel)
            if offline_kernel is not None
            else Kernel.parse(kernel, self.geometry.arch).without_debug().name
        )
        kernel, post_kernel = kernel_spec(kernel), kernel_spec(post_kernel)
        pre = self.scan(kernel, parallel=True, progress=progress)
        post = self.scan(post_kernel, parallel=True, progress=False)
        outs = self.offline_many(pre.block.tolist(), ok, patience_rounds)
        return Prediction(
            kernel, post_kernel, ok, pre.block, pre.value, post.value, outs, pre, post
        )

    def is_mem_section_removable(
        self, start_pfn: int, nr_pages: int, kernel: KernelLike = "5.5"
    ) -> Dict[str, Any]:
        """``is_mem_section_removable()`` called directly with any range (as powerpc's
        ``lmb_is_removable()`` did up to 5.6); an unaligned start reaches
        ``next_active_pageblock``'s BUG_ON. Without CONFIG_MEMORY_HOTREMOVE (arm64 before
        5.7) it is the stub that answers 0 without a scan.

        Raises:
            ArgumentError: a kernel that has no such function (6.1).
        """
        d = dict(
            self._core.is_mem_section_removable(
                _pfn(start_pfn, "start_pfn"), _pfn(nr_pages, "nr_pages"), kernel_spec(kernel)
            )
        )
        d["fault"] = _fault(d["fault"])
        return d

    def __repr__(self) -> str:
        g = self.geometry
        return f"<memscan.Machine {self.name!r} {g.arch} blocks={len(self.blocks())} block_size={g.block_size:#x}>"

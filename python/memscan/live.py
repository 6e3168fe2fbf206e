"""A live memory sysfs: the model behind ``sys/devices/system/memory``, computed on demand the
way kernfs computes sysfs, so unmodified tools (lsmem, chmem, hotplug agents) run against a
modeled machine.

``LiveSysfs`` is a FUSE file system (mfusepy, a maintained ctypes binding of libfuse3: the
model's calls are Python calls already, no compiled FUSE code is needed, and libfuse3 mounts
directly when run as root). It presents the tree ``export_sysfs`` writes, but live:

- reading ``removable`` runs the profile's ``removable`` at that moment (the pre-patch scan on
  5.4/5.5, "1" after the patch), ``valid_zones`` is read from the current state; a read the
  kernel would never return from (memory96 of the seed on a debug kernel) has its splat go to
  ``memscan/dmesg`` and, inside a ``run`` sandbox, kills the reader with SIGSEGV as the
  kernel's oops does (``on_fault="kill"``, the default there; the reader is named by FUSE and
  must descend from the sandbox), or fails with EIO (``on_fault="eio"``, and always under
  ``mount``);
- writing ``state`` (offline / online / online_kernel / online_movable) or ``online`` (a
  boolean, kstrtobool) runs the modeled ``offline_pages`` / ``online_pages`` for real
  (dry_run=False) and hands the writer the kernel's errno (drivers/base/memory.c
  state_store(): an already-offline block is EINVAL, bad strings EINVAL); a write to a
  read-only attribute fails to open with EACCES, as kernfs_fop_open() refuses it;
- every operation is logged with its modeled kernel work and time (``memscan/log``, JSON lines;
  ``LiveSysfs.ops``).

The loop is single-threaded (``nothreads``): operations are serialised, as the kernel's
device_hotplug_lock serialises state changes.

``run(machine, kernel, argv)`` mounts it on a fresh directory and runs ``argv`` in a private
mount namespace (``unshare --mount --propagation private``) in which the live tree is
bind-mounted over /sys/devices/system/memory and /sys/devices/system/node. Before exec the
sandbox checks /proc/self/mountinfo: those two paths must be this FUSE mount (type
fuse.memscan), else it refuses to run the command. It never falls back to the real /sys.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from .errors import ArgumentError, MemscanError
from .kinds import SEC_DEVICE, SEC_PRESENT, BlockState
from .studies.clients import valid_zones_struct_pages
from .studies.cost import CostModel

FSNAME = "memscan"
MEMORY = "/sys/devices/system/memory"
NODE = "/sys/devices/system/node"
_BLOCK = re.compile(r"^memory(\d+)$")
_NODE = re.compile(r"^node(\d+)$")
#: attribute -> mode, as drivers/base/memory.c and drivers/base/core.c (online) declare them
ATTRS = {
    "phys_index": 0o444,
    "state": 0o644,
    "online": 0o644,
    "removable": 0o444,
    "phys_device": 0o444,
    "valid_zones": 0o444,
}
#: kstrtobool() (lib/kstrtox.c), as online_store() parses a write to ``online``
_TRUE, _FALSE = {"1", "y", "Y", "on", "On", "ON"}, {"0", "n", "N", "off", "Off", "OFF"}
#: what a read the kernel would oops on does to the reader (LiveSysfs.on_fault)
ON_FAULT = ("kill", "eio")
#: what a read of a sysfs file reports as its size (kernfs: PAGE_SIZE)
_SIZE = 4096


def _fuse():
    try:
        import mfusepy
    except ImportError:  # pragma: no cover - depends on the environment
        raise ArgumentError(
            "the live sysfs needs mfusepy (pip install 'memscan[live]') and libfuse3"
        ) from None
    return mfusepy


class _Err(Exception):
    def __init__(self, code: int):
        self.code = code


class LiveSysfs:
    """The FUSE operations (see the module docstring). ``machine`` changes as writers write."""

    use_ns = True

    def __init__(
        self,
        machine: Any,
        kernel: str = "5.5",
        cost: Optional[CostModel] = None,
        kernel_time: bool = False,
        on_fault: str = "eio",
    ):
        if on_fault not in ON_FAULT:
            raise ArgumentError(f"on_fault {on_fault!r}: want one of {', '.join(ON_FAULT)}")
        self.m = machine
        self.kernel = kernel
        #: "kill": a read the kernel would oops or BUG on kills the reader with SIGSEGV, as
        #: the kernel's oops does (do_exit(SIGSEGV)), when the reader descends from the
        #: process named by ``sandbox_root`` (set by ``run``: its own sandbox only); "eio":
        #: the read fails with EIO. Either way the splat goes to memscan/dmesg.
        self.on_fault = on_fault
        self.sandbox_root: Optional[int] = None
        self.cost = cost or CostModel()
        self.kernel_time = kernel_time
        self.ops: List[Dict[str, Any]] = []
        self.dmesg: List[str] = []
        self._files: Dict[int, bytes] = {}
        self._next_fh = 1
        self._t0 = time.time()
        g = machine.geometry
        self._bs = g.block_size
        self._spb = g.sections_per_block
        self._blocks = {int(b) for b in machine.blocks()}
        secs = machine.sections()
        self._flags, self._nid = secs["flags"], secs["nid"]
        #: struct pages a valid_zones read touches, per block (the present sections counted
        #: once: hot-add is not modeled here, so they do not change)
        self._vz_pages = valid_zones_struct_pages(machine, kernel)
        self._has_zones = True
        try:
            if self._blocks:
                machine.valid_zones_read(min(self._blocks), kernel)
        except ArgumentError:
            self._has_zones = False  # no CONFIG_MEMORY_HOTREMOVE: no valid_zones file
        self._rzm = getattr(machine, "storage_increment", None) if g.arch == "s390x" else None
        self._nodes: Optional[List[int]] = None

    # -- the tree ------------------------------------------------------------------------------
    def _nids(self, block: int) -> List[int]:
        lo, hi = block * self._spb, (block + 1) * self._spb
        return sorted(
            {
                int(self._nid[s])
                for s in range(lo, min(hi, len(self._flags)))
                if self._flags[s] & SEC_PRESENT and not self._flags[s] & SEC_DEVICE
            }
        )

    def _node_ids(self) -> List[int]:
        # sections keep their node, so this is computed once (on first use: startup stays
        # independent of the machine's size)
        if self._nodes is None:
            self._nodes = sorted({n for b in self._blocks for n in self._nids(b)})
        return self._nodes

    def _resolve(self, path: str) -> tuple:
        """(kind, block, name) for a path; kind is dir/file/link; raises ENOENT."""
        p = path.rstrip("/") or "/"
        dirs = {"/", "/sys", "/sys/devices", "/sys/devices/system", MEMORY, NODE, "/memscan"}
        if p in dirs:
            return ("dir", None, p)
        if p == MEMORY + "/block_size_bytes":
            return ("file", None, "block_size_bytes")
        if p in ("/memscan/log", "/memscan/dmesg"):
            return ("file", None, p)
        parts = p.split("/")
        if p.startswith(MEMORY + "/") and len(parts) in (6, 7):
            m = _BLOCK.match(parts[5])
            if not m or int(m.group(1)) not in self._blocks:
                raise _Err(errno.ENOENT)
            b = int(m.group(1))
            if len(parts) == 6:
                return ("dir", b, parts[5])
            name = parts[6]
            n = _NODE.match(name)
            if n and int(n.group(1)) in self._nids(b):
                return ("link", b, name)
            if name in ATTRS and (name != "valid_zones" or self._has_zones):
                return ("file", b, name)
            raise _Err(errno.ENOENT)
        if p.startswith(NODE + "/") and len(parts) in (6, 7):
            n = _NODE.match(parts[5])
            if not n or int(n.group(1)) not in self._node_ids():
                raise _Err(errno.ENOENT)
            if len(parts) == 6:
                return ("dir", int(n.group(1)), parts[5])
            m = _BLOCK.match(parts[6])
            if (
                m
                and int(m.group(1)) in self._blocks
                and int(n.group(1)) in self._nids(int(m.group(1)))
            ):
                return ("link", int(m.group(1)), parts[6])
        raise _Err(errno.ENOENT)

    def getattr(self, path: str, fh: Optional[int] = None) -> Dict[str, Any]:
        try:
            kind, block, name = self._resolve(path)
        except _Err as e:
            raise self._os(e.code) from None
        now = int(self._t0 * 1e9)
        st = {"st_uid": 0, "st_gid": 0, "st_atime": now, "st_mtime": now, "st_ctime": now}
        if kind == "dir":
            st.update(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        elif kind == "link":
            st.update(st_mode=stat.S_IFLNK | 0o777, st_nlink=1, st_size=len(self._link(path)))
        else:
            mode = ATTRS.get(name, 0o444)
            st.update(st_mode=stat.S_IFREG | mode, st_nlink=1, st_size=_SIZE)
        return st

    def readdir(self, path: str, fh: int) -> List[str]:
        p = path.rstrip("/") or "/"
        fixed = {
            "/": ["sys", "memscan"],
            "/sys": ["devices"],
            "/sys/devices": ["system"],
            "/sys/devices/system": ["memory", "node"],
            "/memscan": ["log", "dmesg"],
        }
        if p in fixed:
            return [".", "..", *fixed[p]]
        if p == MEMORY:
            return [".", "..", "block_size_bytes", *(f"memory{b}" for b in sorted(self._blocks))]
        if p == NODE:
            return [".", "..", *(f"node{n}" for n in self._node_ids())]
        try:
            kind, block, name = self._resolve(p)
        except _Err as e:
            raise self._os(e.code) from None
        if kind == "dir" and p.startswith(MEMORY):
            # a block directory's listing (lsmem reads it for the node link): a syscall
            self._log("readdir", block, None, 0, self.cost.ns_per_syscall)
            attrs = [a for a in ATTRS if a != "valid_zones" or self._has_zones]
            return [".", "..", *attrs, *(f"node{n}" for n in self._nids(block))]
        if kind == "dir" and p.startswith(NODE):
            return [
                ".",
                "..",
                *(f"memory{b}" for b in sorted(self._blocks) if block in self._nids(b)),
            ]
        raise self._os(errno.ENOTDIR)

    def _link(self, path: str) -> str:
        name = path.rstrip("/").rsplit("/", 1)[1]
        if path.startswith(MEMORY):
            return f"../../node/{name}"
        return f"../../memory/{name}"

    def readlink(self, path: str) -> str:
        try:
            kind, _, _ = self._resolve(path)
        except _Err as e:
            raise self._os(e.code) from None
        if kind != "link":
            raise self._os(errno.EINVAL)
        return self._link(path)

    # -- reads and writes ----------------------------------------------------------------------
    def open(self, path: str, fi: Any) -> int:
        """Each open computes the attribute once (a read at any offset sees that content), and
        is direct I/O: no page cache between the reader and the model, and a store's errno
        reaches the writer as it is (through the page cache FUSE reports EIO)."""
        fi.fh = self._open(path, fi.flags)
        fi.direct_io = 1
        return 0

    def _open(self, path: str, flags: int) -> int:
        try:
            kind, block, name = self._resolve(path)
        except _Err as e:
            raise self._os(e.code) from None
        if kind != "file":
            raise self._os(errno.EISDIR)
        writing = flags & (os.O_WRONLY | os.O_RDWR)
        if writing and ATTRS.get(name, 0o444) & 0o200 == 0:
            raise self._os(errno.EACCES)  # kernfs_fop_open(): no store for this attribute
        fh = self._next_fh
        self._next_fh += 1
        if writing:
            self._files[fh] = b""
        else:
            try:
                self._files[fh] = self._show(block, name).encode()
            except _Err as e:
                raise self._os(e.code) from None
        return fh

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        data = self._files.get(fi.fh, b"")
        return data[offset : offset + size]

    def release(self, path: str, fi: Any) -> int:
        self._files.pop(fi.fh, None)
        return 0

    def truncate(self, path: str, length: int, fh: Optional[int] = None) -> int:
        return 0  # `echo x > state` opens with O_TRUNC: sysfs ignores it

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        try:
            kind, block, name = self._resolve(path)
        except _Err as e:
            raise self._os(e.code) from None
        try:
            self._store(block, name, data.decode("ascii", errors="replace"))
        except _Err as e:
            raise self._os(e.code) from None
        return len(data)

    def statfs(self, path: str) -> Dict[str, int]:
        return {"f_bsize": 4096, "f_namemax": 255}

    # -- the kernel's show/store ---------------------------------------------------------------
    def _show(self, block: Optional[int], name: str) -> str:
        if block is None:
            if name == "block_size_bytes":
                return f"{self._bs:x}\n"
            if name == "/memscan/log":
                return "".join(json.dumps(o, sort_keys=True) + "\n" for o in self.ops)
            return "".join(self.dmesg)
        if name in ("phys_index", "state", "online", "phys_device"):
            # attributes that read no page: a syscall's cost each, logged like the rest
            self._log("read", block, name, 0, self.cost.ns_per_syscall)
        if name == "phys_index":
            return f"{block:08x}\n"
        if name == "state":
            return BlockState(self.m.block_state(block)).sysfs + "\n"
        if name == "online":
            return "1\n" if self.m.block_state(block) == BlockState.ONLINE else "0\n"
        if name == "phys_device":
            return f"{(block * self._bs) // self._rzm if self._rzm else 0}\n"
        if name == "removable":
            r = self.m.removable(block, self.kernel)
            ns = self.cost.removable_read_ns(r.struct_pages_read)
            self._log("read", block, name, r.struct_pages_read, ns, fault=r.fault)
            if r.fault is not None and r.fault.kind in ("bug", "oops"):
                self._splat(block, name, r.fault)
                raise _Err(errno.EIO)  # the kernel killed the reader; a file can only fail
            return f"{r.value}\n"
        if name == "valid_zones":
            v = self.m.valid_zones_read(block, self.kernel)
            pages = int(self._vz_pages[block])
            self._log(
                "read",
                block,
                name,
                pages,
                self.cost.ns_per_syscall + pages * self.cost.ns_per_struct_page,
                fault=v.fault,
            )
            if v.fault is not None:
                self._splat(block, name, v.fault)
                raise _Err(errno.EIO)
            return f"{v.value}\n"
        raise _Err(errno.ENOENT)

    def _store(self, block: Optional[int], name: str, text: str) -> None:
        if block is None or name not in ("state", "online"):
            raise _Err(errno.EACCES)
        word = text.strip()  # sysfs_streq(): a trailing newline is ignored
        if name == "online":
            if word in _TRUE:
                word = "online"
            elif word in _FALSE:
                word = "offline"
            else:
                raise _Err(errno.EINVAL)
        if word == "offline":
            o = self.m.offline(block, self.kernel, dry_run=False)
            ns = self.cost.offline_ns(o)
            self._log(
                "offline",
                block,
                name,
                o.struct_pages_read,
                ns,
                errno_=o.errno,
                fault=o.fault,
                reason=o.reason,
                migrated=o.pages_migrated,
            )
            if o.fault is not None:
                self._splat(block, name, o.fault)
                raise _Err(errno.EIO)
            if o.errno:
                raise _Err(getattr(errno, o.errno))
            return
        if word in ("online", "online_kernel", "online_movable"):
            r = self.m.online(block, word)
            self._log("online", block, name, 0, self.cost.ns_per_syscall, errno_=r, wrote=word)
            if r:
                raise _Err(getattr(errno, r))
            return
        raise _Err(errno.EINVAL)  # state_store(): mhp_online_type_from_str() < 0

    def _log(self, op, block, attr, struct_pages, ns, errno_=None, fault=None, **extra) -> None:
        if self.kernel_time:
            time.sleep(ns / 1e9)
        self.ops.append(
            {
                "op": op,
                "block": block,
                "attr": attr,
                "kernel": self.kernel,
                "errno": errno_,
                "fault": None if fault is None else fault.kind,
                "struct_pages_read": int(struct_pages),
                "modeled_ns": round(ns),
                **extra,
            }
        )

    def _splat(self, block: int, attr: str, fault: Any) -> None:
        self.dmesg.append(f"memory{block}/{attr}: {fault.function}: {fault.message}\n")
        if self.on_fault == "kill" and fault.kind in ("bug", "oops"):
            pid = _fuse().fuse_get_context()[2]
            if self.sandbox_root is not None and _descends(pid, self.sandbox_root):
                os.kill(pid, signal.SIGSEGV)
                self.dmesg.append(f"memscan: killed the reader, pid {pid}, with SIGSEGV\n")
                self.ops[-1]["killed"] = pid

    @staticmethod
    def _os(code: int) -> Exception:
        return _fuse().FuseOSError(code)

    def summary(self) -> Dict[str, Any]:
        by: Dict[str, int] = {}
        for o in self.ops:
            by[o["op"]] = by.get(o["op"], 0) + 1
        return {
            "kernel": self.kernel,
            "operations": by,
            "struct_pages_read": sum(o["struct_pages_read"] for o in self.ops),
            "modeled_kernel_ms": sum(o["modeled_ns"] for o in self.ops) / 1e6,
            "faults": sum(o["fault"] is not None for o in self.ops),
            "errors": sorted({o["errno"] for o in self.ops if o["errno"]}),
        }


def _descends(pid: int, root: int) -> bool:
    """Whether process ``pid`` is a descendant of ``root`` (not ``root`` itself), by the PPid
    chain in /proc (read only)."""
    seen = 0
    p = pid
    while p > 1 and seen < 4096:
        try:
            with open(f"/proc/{p}/status") as f:
                ppid = next(int(x.split()[1]) for x in f if x.startswith("PPid:"))
        except (OSError, StopIteration, ValueError):
            return False
        if ppid == root:
            return p != root
        p, seen = ppid, seen + 1
    return False


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def unmount(path: str) -> None:
    """Detach a mount (umount2 MNT_DETACH; as root, no fusermount3 needed)."""
    if shutil.which("fusermount3") and os.geteuid() != 0:
        subprocess.run(["fusermount3", "-u", "-z", path], check=False, capture_output=True)
        return
    _libc().umount2(os.fsencode(path), 2)


def _fuse_mounted_at(path: str) -> bool:
    """Whether ``path`` is a fuse.memscan mount in this process's namespace (mountinfo)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            if len(fields) > 4 and fields[4] == path and post.split()[0] == f"fuse.{FSNAME}":
                return True
    return False


def _check_mountpoint(mountpoint: str) -> None:
    if not os.path.isdir(mountpoint) or os.path.islink(mountpoint):
        raise ArgumentError(f"{mountpoint}: not a directory")
    if os.listdir(mountpoint):
        raise ArgumentError(f"{mountpoint}: not empty")
    if os.path.ismount(mountpoint):
        raise ArgumentError(f"{mountpoint}: something is mounted there already")
    if not os.path.exists("/dev/fuse"):
        raise ArgumentError("/dev/fuse is missing: FUSE is not available here")


def serve(ops: LiveSysfs, mountpoint: str, on_ready=None) -> None:
    """Mount ``ops`` on ``mountpoint`` and serve until it is unmounted (blocks). ``on_ready``
    is called from a thread once the mount answers."""
    fuse = _fuse()
    _check_mountpoint(mountpoint)
    if on_ready is not None:

        def wait() -> None:
            for _ in range(2000):
                if _fuse_mounted_at(os.path.realpath(mountpoint)):
                    on_ready()
                    return
                time.sleep(0.005)

        threading.Thread(target=wait, daemon=True).start()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fuse.FUSE(
            ops,
            mountpoint,
            raw_fi=True,
            foreground=True,
            nothreads=True,
            fsname=FSNAME,
            subtype=FSNAME,
            default_permissions=True,
        )


def run(
    machine: Any,
    kernel: str,
    argv: Sequence[str],
    kernel_time: bool = False,
    cost: Optional[CostModel] = None,
    capture: bool = True,
    on_fault: str = "kill",
) -> Dict[str, Any]:
    """Run ``argv`` against the live view of ``machine`` (see the module docstring). Returns
    the command's exit code (and, with ``capture``, its output), the operations log and its
    summary. Without ``capture`` the command shares this process's stdin/stdout/stderr.
    ``on_fault="kill"`` (the default: what the kernel does) kills a reader whose read the
    kernel would oops on with SIGSEGV (the exit code is then -11); ``"eio"`` fails the read."""
    if not argv:
        raise ArgumentError("run: no command")
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        raise ArgumentError(f"run: {argv[0]}: command not found")
    if shutil.which("unshare") is None:
        raise ArgumentError("run: util-linux unshare is needed for the private mount namespace")
    ops = LiveSysfs(machine, kernel, cost=cost, kernel_time=kernel_time, on_fault=on_fault)
    # the sandbox is this process's child: only its descendants may be killed
    ops.sandbox_root = os.getpid()
    mnt = tempfile.mkdtemp(prefix="memscan-live-")
    out: Dict[str, Any] = {}

    def go() -> None:
        try:
            p = subprocess.run(
                sandbox_argv(mnt, argv),
                capture_output=capture,
                text=True,
            )
            out.update(returncode=p.returncode, stdout=p.stdout, stderr=p.stderr)
        finally:
            unmount(mnt)

    try:
        serve(ops, mnt, on_ready=lambda: threading.Thread(target=go, daemon=True).start())
    finally:
        if os.path.ismount(mnt):
            unmount(mnt)
        try:
            os.rmdir(mnt)
        except OSError:
            pass
    if "returncode" not in out:
        raise MemscanError("run: the command did not run (the live mount never came up)")
    out.update(ops=ops.ops, dmesg="".join(ops.dmesg), summary=ops.summary())
    return out


def sandbox_argv(mnt: str, argv: Sequence[str]) -> List[str]:
    """The command line that runs ``argv`` in a private mount namespace with the live view at
    ``mnt`` bound over the real paths (``_sandbox`` below does the binding and the checks)."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        sys.executable,
        "-m",
        "memscan.live",
        mnt,
        "--",
        *argv,
    ]


def _sandbox(mnt: str, argv: List[str]) -> int:
    """Inside the private namespace: bind the live tree over the real paths, check that what
    the command will see is the FUSE mount, then exec it. Refuses rather than falls back."""
    if not _fuse_mounted_at(mnt):
        print(f"memscan sandbox: {mnt} is not a memscan FUSE mount; refusing", file=sys.stderr)
        return 125
    import ctypes

    libc = _libc()
    MS_BIND = 4096
    for real in (MEMORY, NODE):
        src = os.fsencode(mnt + real)
        if libc.mount(src, os.fsencode(real), None, MS_BIND, None) != 0:
            e = ctypes.get_errno()
            print(
                f"memscan sandbox: bind {mnt + real} over {real}: {os.strerror(e)}", file=sys.stderr
            )
            return 125
    for real in (MEMORY, NODE):
        if not _fuse_mounted_at(real):
            print(f"memscan sandbox: {real} is not the live view; refusing", file=sys.stderr)
            return 125
    os.execvp(argv[0], argv)
    return 127  # pragma: no cover


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m memscan.live MOUNTPOINT -- CMD ARGS...", file=sys.stderr)
        sys.exit(2)
    sys.exit(_sandbox(args[0], args[2:]))

"""Boot a real kernel under QEMU (TCG) with a scenario and record what it did.

A run directory holds:

- ``snapshot.tar.gz``: a memscan snapshot (``Machine.from_snapshot`` reads it) taken in the
  guest right before the attempts: proc/iomem, zoneinfo, buddyinfo, pagetypeinfo, meminfo,
  min_free_kbytes, kpageflags, kpagecount, the block sysfs values that do not scan, and
  ``memmap/blockN`` raw struct pages read from /proc/kcore;
- ``record.json``: the scenario, the kernel image (path, sha256, the config facts read from
  the ``config`` file beside it), the guest's ``uname -r``, the QEMU command, the wall time,
  the status (``ok``, ``timeout``, ``panic``, ``incomplete``) and every attempt in order:
  attribute, block, value, errno, the reader's exit signal, the syscall's duration on the
  guest's clock (ns) and the kernel log lines it caused (the splat of a faulting read);
- ``console.log``: the serial console, whole.

Only the guest writes memory-hotplug state; the host's /sys and /proc are never written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
from typing import Any, Dict, List, Optional

from .guest import (
    STRUCT_PAGE,
    HarnessError,
    attempt_half,
    attempt_slot,
    build_initramfs,
    need_tool,
)
from .scenario import Scenario

RECORD_FORMAT = "memscan-groundtruth-1"
_MSREC = re.compile(r"MSREC (\{.*\})\s*$")
_MARK = re.compile(r"MSMARK (\S+)")


def shared_kernel(name: str) -> Optional[str]:
    """``bzImage`` of a kernel in the team's shared kernels directory: $MEMSCAN_KERNELS, or
    ../shared/kernels beside the checkout (None if it is not there)."""
    roots = [os.environ.get("MEMSCAN_KERNELS")]
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(3, 7):
        roots.append(os.path.join(here, *[".."] * up, "shared", "kernels"))
    for r in roots:
        if r:
            p = os.path.normpath(os.path.join(r, name, "bzImage"))
            if os.path.isfile(p):
                return p
    return None


def config_beside(image: str) -> Optional[str]:
    """The kernel config beside an image: ``config`` (../shared/kernels) or ``config-*``
    (a Debian /boot)."""
    d = os.path.dirname(os.path.abspath(image))
    for name in ["config"] + sorted(n for n in os.listdir(d) if n.startswith("config-")):
        if os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    return None


def kernel_config(path: Optional[str]) -> Dict[str, str]:
    """CONFIG_* values of a kernel config file ({} if there is none)."""
    out: Dict[str, str] = {}
    if path is None:
        return out
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"^(CONFIG_\w+)=(.*)$", line.strip())
                if m:
                    out[m.group(1)] = m.group(2)
                m = re.match(r"^# (CONFIG_\w+) is not set$", line.strip())
                if m:
                    out[m.group(1)] = "n"
    except OSError:
        pass
    return out


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def qemu_command(
    sc: Scenario,
    image: str,
    initrd: str,
    disk: str,
    console: str,
    attempts_disk: str,
    qmp: Optional[str] = None,
) -> List[str]:
    qemu = need_tool("qemu-system-x86_64", "qemu-system-x86")
    mem = f"{sc.memory >> 20}M"
    dimm_args: List[str] = []
    for i, size in enumerate(sc.dimms):
        dimm_args += [
            "-object", f"memory-backend-ram,id=dimm{i},size={size >> 20}M,reserve=off",
            "-device", f"pc-dimm,id=pcdimm{i},memdev=dimm{i}",
        ]  # fmt: skip
    if sc.virtio_mem:
        # virtio-mem (QEMU 5.1+): a memory device the guest's driver plugs in 2 MiB blocks, up
        # to requested-size; its region sits above the DIMMs in the device memory area
        dimm_args += [
            "-object", f"memory-backend-ram,id=vmem0,size={sc.virtio_mem >> 20}M,reserve=off",
            "-device", f"virtio-mem-pci,id=vm0,memdev=vmem0,node=0,"
                       f"requested-size={sc.virtio_mem_requested >> 20}M",
        ]  # fmt: skip
    maxmem = sc.memory + sum(sc.dimms) + sum(sc.hotadd) + sc.virtio_mem
    if sc.dimms or sc.hotadd or sc.virtio_mem:
        slots = f",slots={max(1, len(sc.dimms) + len(sc.hotadd))},maxmem={maxmem >> 20}M"
    else:
        slots = ""
    append = f"console=ttyS0 loglevel=4 panic=-1 nokaslr {sc.append}".strip()
    if sc.offline:
        # __offline_pages() says why it failed with pr_debug: "failed due to <reason>"
        append += ' dyndbg="file mm/memory_hotplug.c +p"'
    return [
        qemu,
        "-accel", "tcg", "-cpu", "max", "-smp", str(sc.smp), "-m", mem + slots,
        # guest RAM is touched lazily: a 67 GiB guest starts on a 24 GiB host
        "-object", f"memory-backend-ram,id=m0,size={mem},reserve=off",
        "-machine", "memory-backend=m0",
        *dimm_args,
        "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", image, "-initrd", initrd,
        "-serial", f"file:{console}",
        "-drive", f"file={disk},format=raw,if=virtio",
        "-drive", f"file={attempts_disk},format=raw,if=virtio",
        "-append", append,
        # the monitor the runner adds hotadd DIMMs through (QMP on a unix socket)
        *(["-qmp", f"unix:{qmp},server=on,wait=off"] if qmp else []),
    ]  # fmt: skip


def _hot_add(
    sc: Scenario, console: str, sock: str, proc: subprocess.Popen[bytes], deadline: float
) -> List[Dict[str, Any]]:
    """Add the scenario's ``hotadd`` DIMMs over QMP once the guest says it waits for them
    (``hotadd_wait`` on the console): per DIMM a memory-backend-ram (reserve=off, so the host
    commits nothing) and a pc-dimm on it, which QEMU signals to the guest through ACPI. Returns
    what QMP answered per DIMM; an error is recorded, and the guest's wait then times out."""
    try:
        from qemu.qmp import QMPError
        from qemu.qmp.legacy import QEMUMonitorProtocol
    except ImportError:
        proc.kill()
        raise HarnessError(
            f"scenario {sc.name} hot-adds DIMMs over QMP, which needs the qemu.qmp package "
            "(pip install 'memscan[groundtruth]')"
        ) from None
    while '"type":"hotadd_wait"' not in _read(console):
        if proc.poll() is not None or time.monotonic() > deadline:
            return [{"error": "the guest never asked for its DIMMs (no hotadd_wait)"}]
        time.sleep(0.2)
    out: List[Dict[str, Any]] = []
    mon = QEMUMonitorProtocol(sock)
    try:
        mon.connect()
        for i, size in enumerate(sc.hotadd):
            steps = (
                ("object-add", {"qom-type": "memory-backend-ram", "id": f"hot{i}", "size": size,
                                "reserve": False}),
                ("device_add", {"driver": "pc-dimm", "id": f"hotdimm{i}", "memdev": f"hot{i}"}),
            )  # fmt: skip
            rec: Dict[str, Any] = {"size": size, "t": round(time.monotonic(), 3)}
            for name, args in steps:
                r = mon.cmd_raw(name, args)
                if "error" in r:
                    rec["error"] = f"{name}: {r['error'].get('desc', r['error'])}"
                    break
            out.append(rec)
    except (OSError, QMPError) as e:
        out.append({"error": f"QMP at {sock}: {e}"})
    finally:
        mon.close()
    return out


def parse_console(text: str) -> List[Dict[str, Any]]:
    recs = []
    for line in text.splitlines():
        m = _MSREC.search(line)
        if m:
            try:
                recs.append(json.loads(m.group(1)))
            except json.JSONDecodeError:
                # a line cut by a kernel message on the same console: kept as such
                recs.append({"type": "garbled", "line": line})
    return recs


def run(
    scenario: Scenario,
    kernel: str,
    out_dir: str,
    timeout: Optional[float] = None,
) -> Dict[str, Any]:
    """Run ``scenario`` on ``kernel`` (a bzImage path, or ``"debian-6.1"``: Debian's 6.1 cloud
    kernel, downloaded and unpacked into the cache) and write the run directory ``out_dir``
    (created; refused if it exists and is not empty). Returns the record."""
    modules: List[str] = []
    if kernel == "debian-6.1":
        from .debian import debian_61

        k = debian_61(["virtio_mem"] if scenario.virtio_mem else [])
        kernel, config, modules = k.image, k.config, k.modules
    else:
        if not os.path.isfile(kernel):
            raise HarnessError(f"kernel image {kernel!r} does not exist")
        config = config_beside(kernel)
    if scenario.virtio_mem:
        # virtio-mem exists from v5.8; a kernel of our own must have it built in (only the
        # Debian kernel's modules are put into the guest)
        have = kernel_config(config).get("CONFIG_VIRTIO_MEM", "n")
        if have != "y" and not (have == "m" and modules):
            raise HarnessError(
                f"scenario {scenario.name} needs virtio-mem, but {kernel} has "
                f"CONFIG_VIRTIO_MEM={have} (want y, or m with --kernel debian-6.1)"
            )
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise HarnessError(f"{out_dir}: the run directory exists and is not empty")
    os.makedirs(out_dir, exist_ok=True)
    console = os.path.join(out_dir, "console.log")
    with tempfile.TemporaryDirectory(prefix="memscan-gt-") as tmp:
        initrd = os.path.join(tmp, "initrd.cpio.gz")
        build_initramfs(scenario, initrd, modules)
        disk = os.path.join(tmp, "out.img")
        adisk = os.path.join(tmp, "attempts.img")
        for path in (disk, adisk):
            with open(path, "wb") as f:
                f.truncate(64 << 30)  # sparse: only what the guest writes takes space
        qmp = os.path.join(tmp, "qmp.sock") if scenario.hotadd else None
        cmd = qemu_command(scenario, kernel, initrd, disk, console, adisk, qmp)
        t0 = time.monotonic()
        limit = timeout or scenario.timeout
        status = "ok"
        hotadd: List[Dict[str, Any]] = []
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as p:
            try:
                if qmp:
                    hotadd = _hot_add(scenario, console, qmp, p, t0 + limit)
                _, err = p.communicate(timeout=max(1.0, t0 + limit - time.monotonic()))
                if p.returncode:
                    raise HarnessError(
                        f"qemu exited with {p.returncode}: {err.decode(errors='replace')[-1000:]}"
                    )
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                status = "timeout"
        wall = time.monotonic() - t0
        text = _read(console)
        recs = parse_console(text)
        if status == "ok" and not any(r.get("type") == "done" for r in recs):
            status = "panic" if "Kernel panic" in text else "incomplete"
        files = _untar_disk(disk) if status == "ok" else {}
        if files:
            _read_attempt_slots(scenario, recs, adisk, files)
    boot_log = files.pop("dmesg.boot", b"").decode(errors="replace").splitlines()
    end_log = files.pop("dmesg.end", b"").decode(errors="replace")
    attempts = []
    for r in recs:
        if r.get("type") not in ("read", "write"):
            continue
        k = len(attempts) + 1
        # attempts/k/kmsg holds only this attempt's lines (the log is cleared after each);
        # its marker may be gone when the attempt flooded the log ring
        kmsg = files.pop(f"snap/attempts/{k}/kmsg", b"").decode(errors="replace")
        own = [line for line in kmsg.splitlines() if not _MARK.search(line)]
        attr, _, block = r["tag"].partition(":")
        a = {
            "op": r["type"],
            "attr": attr,
            "block": int(block),
            "value": r.get("value", "").strip() if "value" in r else None,
            "rc": r.get("rc"),
            "errno": r.get("errno"),
            "signal": r.get("signal", 0),
            "ns": r.get("ns"),
            "kernel_log": own,
        }
        if "pre" in r:
            # the block's pages copied right before this attempt: snapshot member prefix
            pre = dict(r["pre"])
            pre.pop("dir")
            pre["member"] = f"attempts/{k}"
            a["pre"] = pre
        if "after" in r:
            # the same pages right after the write returned: what it migrated, freed, offlined
            a["after"] = {"member": f"attempts/{k}/after", "memmap": bool(r["pre"]["memmap"])}
        attempts.append(a)
    clients = []
    for r in recs:
        if r.get("type") != "client":
            continue
        i, _, cmd = r["tag"].partition(":")
        out = files.pop(f"clients/{i}", b"").decode(errors="replace")
        clients.append(
            {
                "client": cmd,
                "ns": r.get("ns"),
                "exit": r.get("exit"),
                "signal": r.get("signal", 0),
                "output": out[-4000:],
            }
        )
    boot = next((r for r in recs if r.get("type") == "boot"), {})
    cfg = kernel_config(config)
    record: Dict[str, Any] = {
        "format": RECORD_FORMAT,
        "scenario": scenario.name,
        "scenario_file": scenario.source,
        "status": status,
        "wall_seconds": round(wall, 2),
        "kernel_image": os.path.abspath(kernel),
        "kernel_sha256": _sha256(kernel),
        "kernel_config_file": config,
        "modules": [os.path.basename(m) for m in modules],
        "kernel_config": {
            k: cfg.get(k, "unknown")
            for k in (
                "CONFIG_DEBUG_VM",
                "CONFIG_DEBUG_VM_PGFLAGS",
                "CONFIG_MEMORY_HOTREMOVE",
                "CONFIG_NODES_SHIFT",
                "CONFIG_SPARSEMEM_VMEMMAP",
            )
        },
        "uname": boot.get("uname"),
        "cmdline": boot.get("cmdline"),
        "qemu": cmd,
        "events": [r for r in recs if r.get("type") not in ("read", "write", "client")],
        "attempts": attempts,
        "clients": clients,
        "hotadd": hotadd,
        "boot_log_tail": boot_log[-40:],
        "end_log_tail": end_log.splitlines()[-40:],
    }
    if files:
        _write_snapshot(os.path.join(out_dir, "snapshot.tar.gz"), files, record)
    with open(os.path.join(out_dir, "record.json"), "w") as f:
        json.dump(record, f, indent=1)
    return record


def _read_attempt_slots(
    sc: Scenario, recs: List[Dict[str, Any]], adisk: str, files: Dict[str, bytes]
) -> None:
    """Each attempt's pre-attempt copy, from its slot of the attempts disk, as snapshot members
    attempts/k/{kpageflags,kpagecount,memmap}, and an offline write's post-attempt copy, from
    the slot's second half, as attempts/k/after/{...}."""
    k = 0
    with open(adisk, "rb") as f:
        for r in recs:
            if r.get("type") not in ("read", "write"):
                continue
            k += 1
            pre = r.get("pre")
            if not pre:
                continue
            npfn = int(pre["npfn"])
            want = f"/dev/vdb@{(k - 1) * attempt_slot(sc, npfn)}"
            if pre.get("dir") != want or pre.get("rc"):
                raise HarnessError(
                    f"attempt {k} ({r['tag']}): its copy went to {pre.get('dir')} with rc "
                    f"{pre.get('rc')}, expected {want} with rc 0"
                )
            copies = [((k - 1) * attempt_slot(sc, npfn), f"snap/attempts/{k}")]
            after = r.get("after")
            if after is not None:
                at = (k - 1) * attempt_slot(sc, npfn) + attempt_half(sc, npfn)
                if after.get("dir") != f"/dev/vdb@{at}" or after.get("rc"):
                    raise HarnessError(
                        f"attempt {k} ({r['tag']}): its post-attempt copy went to "
                        f"{after.get('dir')} with rc {after.get('rc')}, expected "
                        f"/dev/vdb@{at} with rc 0"
                    )
                copies.append((at, f"snap/attempts/{k}/after"))
            for at, member in copies:
                f.seek(at)
                files[f"{member}/kpageflags"] = f.read(npfn * 8)
                files[f"{member}/kpagecount"] = f.read(npfn * 8)
                if pre.get("memmap"):
                    files[f"{member}/memmap"] = f.read(npfn * STRUCT_PAGE)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _untar_disk(disk: str) -> Dict[str, bytes]:
    """The files the guest tarred onto its output disk (regular files and symlinks)."""
    out: Dict[str, bytes] = {}
    try:
        with tarfile.open(disk, "r:") as t:
            for m in t:
                name = os.path.normpath(m.name)
                if name.startswith(("/", "..")):
                    raise HarnessError(f"guest output: member {m.name!r} escapes the archive")
                if m.isfile():
                    f = t.extractfile(m)
                    out[name] = f.read() if f else b""
                elif m.issym():
                    out["@link:" + name] = m.linkname.encode()
    except tarfile.TarError as e:
        raise HarnessError(f"the guest's output disk holds no readable tar: {e}") from None
    return out


def _write_snapshot(path: str, files: Dict[str, bytes], record: Dict[str, Any]) -> None:
    """The guest's /out as a memscan snapshot (capture format plus memmap/ members)."""
    meta = {
        "format": "memscan-snapshot-1",
        "kernel_release": record["uname"],
        "arch": "x86_64",
        "page_size": 4096,
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": f"groundtruth {record['scenario']} (QEMU TCG guest)",
        # QEMU's guest RAM (legacy pmem included) starts zeroed; a DEBUG_VM kernel poisons
        # the memmap over it, which the kernel profile models
        "uninit_memmap": "zero",
        "missing": [],
    }
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:
        for name in sorted(files):
            if name.startswith("@link:"):
                rel = name[len("@link:") :]
                if not rel.startswith("snap/"):
                    continue
                info = tarfile.TarInfo(rel[len("snap/") :])
                info.type = tarfile.SYMTYPE
                info.linkname = files[name].decode()
                tar.addfile(info)
                continue
            rel = name[len("snap/") :] if name.startswith("snap/") else name
            info = tarfile.TarInfo(rel)
            info.size = len(files[name])
            tar.addfile(info, io.BytesIO(files[name]))
        data = json.dumps(meta, indent=1).encode()
        info = tarfile.TarInfo("meta.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

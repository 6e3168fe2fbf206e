"""The guest side of a ground-truth run: the /init script a scenario becomes, and the initramfs.

The guest is busybox (static, from Debian's busybox-static) plus ``mshelper``, our own small C
program compiled static on the host (guest/mshelper.c). /init mounts proc/sys/dev, sets the
machine up as the scenario says (legacy pmem to fsdax, workload hogs), captures a memscan
snapshot (proc files, the block sysfs values that do not scan, kpageflags, kpagecount, raw
struct pages of chosen blocks from /proc/kcore), then makes each timed attempt in a child
(a read of ``memoryN/removable`` that hits a kernel BUG kills only that child), writes a marker
into the kernel log before each attempt so every splat can be tied to its attempt, and tars
``/out`` onto the output disk. Results are ``MSREC {json}`` lines on the serial console.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shlex
import shutil
import subprocess
from typing import List, Sequence

from .._core import X86_VMEMMAP_BASE
from ..errors import MemscanError
from ..kinds import STRUCT_PAGE_BYTES
from .scenario import Scenario

HELPER_SRC = os.path.join(os.path.dirname(__file__), "guest", "mshelper.c")
#: x86_64 vmemmap base, 4-level paging without KASLR (a guest's own base is read at run time)
VMEMMAP_BASE = X86_VMEMMAP_BASE
STRUCT_PAGE = STRUCT_PAGE_BYTES


class HarnessError(MemscanError, RuntimeError):
    """The harness cannot run: a tool, the kernel image or the guest is missing or failed."""


def cache_dir() -> str:
    d = os.environ.get("MEMSCAN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "memscan", "groundtruth"
    )
    os.makedirs(d, exist_ok=True)
    return d


def need_tool(name: str, package: str) -> str:
    p = shutil.which(name)
    if p is None:
        raise HarnessError(
            f"{name} not found: install Debian's {package} (apt-get install {package})"
        )
    return p


def busybox_static() -> str:
    """The host's busybox binary, which must be static (busybox-static), for the guest."""
    p = need_tool("busybox", "busybox-static")
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    # a dynamic ELF names its interpreter in a PT_INTERP segment: "/lib64/ld-linux..."
    if b"/lib64/ld-linux" in head or b"/lib/ld-linux" in head:
        raise HarnessError(f"{p} is dynamically linked: the guest needs busybox-static")
    return p


def build_helper() -> str:
    """Compile mshelper.c statically (cached by source hash) and return the binary's path."""
    with open(HELPER_SRC, "rb") as f:
        src = f.read()
    out = os.path.join(cache_dir(), f"mshelper-{hashlib.sha256(src).hexdigest()[:16]}")
    if not os.path.exists(out):
        cc = need_tool("gcc", "gcc")
        tmp = out + ".tmp"
        r = subprocess.run(
            [cc, "-static", "-O2", "-Wall", "-o", tmp, HELPER_SRC], capture_output=True, text=True
        )
        if r.returncode:
            raise HarnessError(
                f"compiling {HELPER_SRC} failed (a static build needs libc6-dev):\n{r.stderr[-2000:]}"
            )
        os.replace(tmp, out)
    return out


def attempt_slot_bytes_per_pfn(sc: Scenario) -> int:
    """Bytes per pfn of one pre-attempt copy: kpageflags and kpagecount words, struct pages."""
    return 16 + (STRUCT_PAGE if sc.attempt_memmap else 0)


def attempt_half(sc: Scenario, npfn: int) -> int:
    """Size of one copy of a block on the attempts disk (whole MiB, as /init computes it)."""
    mib = 1 << 20
    return -(-npfn * attempt_slot_bytes_per_pfn(sc) // mib) * mib


def attempt_slot(sc: Scenario, npfn: int) -> int:
    """Size of one attempt's slot: the pre-attempt copy, then (``attempt_after``) the
    post-attempt copy of an offline write at ``attempt_half`` into it."""
    return attempt_half(sc, npfn) * (2 if sc.attempt_after else 1)


def init_script(sc: Scenario, modules: Sequence[str] = ()) -> str:
    """The guest's /init for a scenario (busybox sh); ``modules`` are .ko names under
    /lib/modules, loaded first in this order."""
    q = shlex.quote
    lines: List[str] = [
        "#!/bin/busybox sh",
        "/bin/busybox --install -s /bin",
        "export PATH=/bin",
        "mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev",
        *[f"insmod /lib/modules/{q(m)}" for m in modules],
        # the virtio disks appear once their driver probes
        "i=0; while [ ! -b /dev/vdb ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done",
        "M=/sys/devices/system/memory",
        # where struct pages are: the kernel's vmemmap_base (KASLR, 5-level paging) or default
        "export MSH_VMEMMAP=$(/bin/mshelper vmemmap 2>/dev/console)",
        'rec() { echo "MSREC $1"; }',
        'mark() { echo "MSMARK $1" > /dev/kmsg; }',
        # the command line may hold quotes (dyndbg="..."): escaped for JSON
        "cl=$(sed 's/[\\\\\"]/\\\\&/g' /proc/cmdline)",
        'rec "{\\"type\\":\\"boot\\",\\"uname\\":\\"$(uname -r)\\",\\"cmdline\\":\\"$cl\\"}"',
    ]
    if sc.pmem_fsdax:
        # legacy pmem namespace -> fsdax with its memmap on the device, through sysfs, as
        # `ndctl create-namespace -m fsdax --map=dev` does (see ../shared/kernels/README.md)
        lines += [
            "ns=$(ls -d /sys/bus/nd/devices/namespace*.* 2>/dev/null | head -1); ns=${ns##*/}",
            "reg=$(ls -d /sys/bus/nd/devices/region* 2>/dev/null | head -1)",
            'if [ -n "$ns" ] && [ -n "$reg" ]; then',
            "  pfn=$(cat $reg/pfn_seed)",
            "  echo $ns > /sys/bus/nd/drivers/nd_pmem/unbind",
            "  cat /proc/sys/kernel/random/uuid > /sys/bus/nd/devices/$pfn/uuid",
            "  echo pmem > /sys/bus/nd/devices/$pfn/mode",
            f"  echo {sc.pmem_align} > /sys/bus/nd/devices/$pfn/align",
            "  echo $ns > /sys/bus/nd/devices/$pfn/namespace",
            "  echo $pfn > /sys/bus/nd/drivers/nd_pmem/bind; r=$?",
            '  rec "{\\"type\\":\\"fsdax\\",\\"namespace\\":\\"$ns\\",\\"pfn\\":\\"$pfn\\",\\"rc\\":$r}"',
            "else",
            '  rec "{\\"type\\":\\"fsdax\\",\\"error\\":\\"no legacy pmem namespace\\"}"',
            "fi",
        ]
    lines.append("nb() { ls -d $M/memory[0-9]* | wc -l; }")
    if sc.hotadd:
        # the host adds the DIMMs over QMP once it reads hotadd_wait on the console; ACPI
        # then adds each as memory blocks (offline: neither kernel auto-onlines): wait until
        # the block count has grown and holds still for a second (at most 60 s)
        lines += [
            "nb0=$(nb)",
            'rec "{\\"type\\":\\"hotadd_wait\\",\\"blocks\\":$nb0}"',
            "last=$nb0; same=0; i=0",
            "while [ $same -lt 10 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); c=$(nb)",
            '  if [ "$c" = "$last" ] && [ "$c" -gt "$nb0" ]; then same=$((same+1));'
            " else same=0; last=$c; fi",
            "done",
            'rec "{\\"type\\":\\"hotadd\\",\\"blocks_before\\":$nb0,\\"blocks\\":$(nb)}"',
        ]
    if sc.virtio_mem:
        # the virtio-mem driver plugs from its workqueue after probe, one memory block at a
        # time: wait until the block count holds still for a second (at most 30 s)
        lines += [
            "last=0; same=0; i=0",
            "while [ $same -lt 2 ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); c=$(nb)",
            '  if [ "$c" = "$last" ] && grep -q virtio_mem /proc/iomem; then same=$((same+1));'
            " else same=0; last=$c; fi",
            "done",
            'rec "{\\"type\\":\\"virtio_mem\\",\\"blocks\\":$(nb),'
            '\\"ranges\\":$(grep -c virtio_mem /proc/iomem)}"',
        ]
    if sc.online:
        # hot-added memory (coldplugged DIMMs) comes up offline: online it as the scenario says
        lines += [
            "for d in $M/memory[0-9]*; do",
            f'  [ "$(cat $d/state)" = offline ] && echo {sc.online} > $d/state',
            "done",
        ]
    if sc.hugepages:
        lines.append(f"echo {int(sc.hugepages)} > /proc/sys/vm/nr_hugepages")
    if sc.tmpfs_mb:
        lines.append(f"dd if=/dev/zero of=/tmp/cache bs=1M count={int(sc.tmpfs_mb)} 2>/dev/null")
    for w in sc.workload:
        lines.append(f"/bin/mshelper hog {q(w.kind)} {int(w.mb)} &")
    if sc.workload:
        # wait until every hog has touched its memory (each prints one MSREC line)
        lines += [
            "sleep 1",
            f"while [ $(pidof mshelper | wc -w) -lt {len(sc.workload)} ]; do sleep 1; done",
            f"sleep {max(1, sum(int(w.mb) for w in sc.workload) // 256)}",
        ]
    lines += [
        "sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null",
        "S=/out/snap; mkdir -p $S/proc $S$M /out/memmap",
        "for f in iomem zoneinfo buddyinfo pagetypeinfo meminfo; do cat /proc/$f > $S/proc/$f; done",
        "cat /proc/sys/vm/min_free_kbytes > $S/proc/min_free_kbytes",
        "cat $M/block_size_bytes > $S$M/block_size_bytes",
        # values that do not scan the memmap (removable and valid_zones are attempts, below)
        "for d in $M/memory[0-9]*; do b=${d##*/}; mkdir -p $S$M/$b",
        "  for f in phys_index state online phys_device; do cat $d/$f > $S$M/$b/$f 2>/dev/null; done",
        "  for n in $d/node[0-9]*; do [ -e $n ] && ln -s ../../node/${n##*/} $S$M/$b/${n##*/}; done",
        "done",
        "cat /proc/kpageflags > $S/proc/kpageflags; cat /proc/kpagecount > $S/proc/kpagecount",
        # kcore's ELF headers and vmemmap_base's kallsyms line: the host checks its own kcore
        # reader (memscan capture --memmap) against the real kernel's headers
        "head -c 65536 /proc/kcore > $S/proc/kcore.head 2>/dev/null",
        "grep -w vmemmap_base /proc/kallsyms > $S/proc/kallsyms 2>/dev/null",
    ]
    for b in sc.memmap_blocks:
        lines.append(
            f"bs=$(( 0x$(cat $M/block_size_bytes) )); s=$(( {int(b)} * bs / 4096 )); n=$(( bs / 4096 ))"
        )
        lines.append(
            f"/bin/mshelper kcore $(( MSH_VMEMMAP + s * {STRUCT_PAGE} )) $(( n * {STRUCT_PAGE} )) /out/memmap/block{int(b)}"
        )
    lines.append('rec "{\\"type\\":\\"snapshot\\"}"')
    # attempts: every online block's removable (and valid_zones), in block order
    # removable reads copy the block's kpageflags/kpagecount (and struct pages) right before
    # the read, so each is compared with the state the kernel scanned, not the boot snapshot
    # Attempt k (k-th read/write record) keeps its files in attempts/k: the kernel log it
    # caused (read and cleared right after it, so a later flood cannot overwrite it) and,
    # before removable reads and offline writes, the block's pages.
    # The pre-attempt copies go to the attempts disk (/dev/vdb), one slot per attempt, with
    # O_DIRECT: a copy written to the guest's own tmpfs allocates page cache in the very
    # blocks it describes (a real kernel then reported those pages as unmovable).
    mm = " memmap" if sc.attempt_memmap else ""
    # and, right after an offline write, the same copy to the slot's second half
    after = " after=/dev/vdb@$(((n - 1) * slot + half))" if sc.attempt_after else ""
    lines += [
        "n=0; bs=$(( 0x$(cat $M/block_size_bytes) / 4096 ))",
        f"half=$(( (bs * {attempt_slot_bytes_per_pfn(sc)} + 1048575) / 1048576 * 1048576 ))",
        f"slot=$(( half * {2 if sc.attempt_after else 1} ))",
        "dmesg -c > /out/dmesg.boot",
    ]

    def reads(attr: str, d: str, b: str, indent: str) -> List[str]:
        """Every online block's ``attr``, as timed attempts (removable with its pre-read copy);
        ``d``/``b``: the shell variables for the block's directory and number."""
        read = (
            f"/bin/mshelper attempt {attr}:${b} ${d}/{attr} $(({b} * bs)) $bs /dev/vdb@$(((n - 1) * slot)){mm}"
            if attr == "removable"
            else f"/bin/mshelper read {attr}:${b} ${d}/{attr}"
        )
        body = [
            f'[ "$(cat ${d}/state)" = online ] || continue',
            f"n=$((n+1)); a=$S/attempts/$n; mkdir -p $a; mark {attr}:${b}",
            read,
            "dmesg -c > $a/kmsg",
        ]
        head = f"for {d} in $M/memory[0-9]*; do {b}=${{{d}##*/memory}}"
        return [indent + head, *(indent + "  " + x for x in body), indent + "done"]

    for attr in sc.reads:
        lines += reads(attr, "d", "b", "")
    if sc.offline:
        # offline attempts, each after a copy of the block's pages; the kernel's reason comes
        # from dynamic debug (dyndbg on the command line, see runner.qemu_command)
        blocks = (
            "$(ls -d $M/memory[0-9]* | sed 's/.*memory//' | sort -n)"
            if sc.offline == "all"
            else " ".join(str(int(b)) for b in sc.offline)
        )
        lines += [
            f"for b in {blocks}; do d=$M/memory$b",
            '  [ "$(cat $d/state 2>/dev/null)" = online ] || continue',
            "  n=$((n+1)); a=$S/attempts/$n; mkdir -p $a; mark offline:$b",
            f"  /bin/mshelper owrite offline:$b $d/state offline $((b * bs)) $bs /dev/vdb@$(((n - 1) * slot)) {int(sc.offline_timeout)}{mm}{after}",
            "  dmesg -c > $a/kmsg",
        ]
        if sc.reread:
            # every online block's removable again, as the first reads were: the answer
            # and the scan's time after the memory this write moved
            lines += reads("removable", "e", "c", "  ")
        lines.append("done")
    if sc.clients:
        lines += _client_lines(sc)
    lines += [
        "dmesg > /out/dmesg.end",
        'rec "{\\"type\\":\\"done\\"}"',
        "cd /out && tar -cf /dev/vda . && sync",
        "poweroff -f",
    ]
    return "\n".join(lines) + "\n"


#: a drmgr-like agent and a blind one, in busybox sh: a deterministic shuffle (awk srand), the
#: hint agent reads every block's removable first (as drmgr's LMB scan does), then both
#: write "offline" until N blocks went offline; each prints what it tried
AGENT = r"""
agent() { mode=$1; want=$2; seed=$3; got=0
  order=$(ls -d $M/memory[0-9]* | sed 's/.*memory//' |
    awk -v s=$seed 'BEGIN{srand(s)} {printf "%.9f %s\n", rand(), $1}' | sort -n | cut -d" " -f2)
  echo "order $order" | tr '
' ' '; echo
  hint=""
  if [ $mode = hint ]; then
    for b in $order; do r=$(cat $M/memory$b/removable 2>/dev/null) || r=x; hint="$hint $b:$r"; done
    echo "removable$hint"
  fi
  for b in $order; do
    [ $got -ge $want ] && break
    [ "$(cat $M/memory$b/state)" = online ] || continue
    if [ $mode = hint ]; then case " $hint " in *" $b:1 "*) ;; *) continue;; esac; fi
    if echo offline > $M/memory$b/state 2>/dev/null; then got=$((got+1)); echo "try $b ok"
    else echo "try $b fail"; fi
  done
  echo "offlined $got of $want"; [ $got -ge $want ]
}
"""


def _client_lines(sc: Scenario) -> List[str]:
    q = shlex.quote
    lines = ["mkdir -p /out/clients"]
    for i, c in enumerate(sc.clients, 1):
        argv = c.split()
        if argv[0] in ("agent-hint", "agent-blind"):
            mode = argv[0].split("-")[1]
            n, seed = (argv[1:] + ["1", "0"])[:2]
            cmd = f"/bin/sh -c {q(f'. /bin/agent.sh; agent {mode} {int(n)} {int(seed)}')}"
        else:
            cmd = " ".join(q(a) for a in ["/usr/bin/" + argv[0], *argv[1:]])
        lines.append(f"/bin/mshelper run {q(f'{i}:{c}')} /out/clients/{i} {cmd}")
    return lines


def host_tool_files(sc: Scenario) -> List[str]:
    """The host binaries the scenario's clients need and their shared libraries (from ldd)."""
    from .scenario import HOST_TOOLS

    out: List[str] = []
    for c in sc.clients:
        tool = HOST_TOOLS.get(c.split()[0])
        if tool is None:
            continue
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin")
        if path is None:
            raise HarnessError(f"{tool} not found: install util-linux (chmem: util-linux-extra)")
        out.append(path)
        r = subprocess.run(["ldd", path], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            parts = line.split()
            for p in parts:
                if p.startswith("/") and os.path.exists(p):
                    out.append(p)
    return sorted(set(out))


def build_initramfs(sc: Scenario, out_path: str, modules: Sequence[str] = ()) -> None:
    """Write a gzip'd newc cpio with /init, busybox, mshelper and the kernel modules to load
    (paths, in load order); the cpio is made by busybox itself."""
    import tempfile

    bb = busybox_static()
    helper = build_helper()
    with tempfile.TemporaryDirectory() as root:
        for d in ("bin", "proc", "sys", "dev", "out", "tmp", "lib/modules"):
            os.makedirs(os.path.join(root, d))
        shutil.copy(bb, os.path.join(root, "bin", "busybox"))
        shutil.copy(helper, os.path.join(root, "bin", "mshelper"))
        for ko in modules:
            shutil.copy(ko, os.path.join(root, "lib", "modules", os.path.basename(ko)))
        for f in host_tool_files(sc):
            # clients by name under /usr/bin; libraries at their own paths (ld.so finds them)
            dst = (
                os.path.join(root, "usr", "bin", os.path.basename(f))
                if os.path.basename(f) in ("lsmem", "chmem")
                else os.path.join(root, f.lstrip("/"))
            )
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(f, dst)
        with open(os.path.join(root, "bin", "agent.sh"), "w") as f:
            f.write("M=/sys/devices/system/memory\n" + AGENT)
        init = os.path.join(root, "init")
        with open(init, "w") as f:
            f.write(init_script(sc, [os.path.basename(k) for k in modules]))
        os.chmod(init, 0o755)
        names = []
        for dirpath, dirnames, filenames in os.walk(root):
            for n in sorted(dirnames) + sorted(filenames):
                names.append(os.path.relpath(os.path.join(dirpath, n), root))
        r = subprocess.run(
            [bb, "cpio", "-o", "-H", "newc"],
            input="\n".join(names).encode() + b"\n",
            cwd=root,
            capture_output=True,
        )
        if r.returncode:
            raise HarnessError(f"busybox cpio failed: {r.stderr.decode(errors='replace')[-500:]}")
        with gzip.open(out_path, "wb", compresslevel=1) as f:
            f.write(r.stdout)

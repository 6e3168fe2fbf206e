"""Debian's 6.1 cloud kernel as a ground-truth target: downloaded with ``apt-get download``
and unpacked with ``dpkg -x`` into memscan's cache, never installed. Its virtio drivers are
modules (no modules.dep in the package): the ones the harness needs are put into the
initramfs in dependency order, read from each module's own ``depends=`` field."""

from __future__ import annotations

import glob
import os
import subprocess
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

from .guest import HarnessError, cache_dir, need_tool

META_PACKAGE = "linux-image-cloud-amd64"
#: what the harness's guest needs: the two virtio-blk disks
NEEDED_MODULES = ("virtio_blk", "virtio_pci")


@dataclass(frozen=True)
class KernelImage:
    image: str
    config: str
    release: str
    modules: List[str] = field(default_factory=list)  # .ko paths in load order


def _depends(ko: str) -> List[str]:
    with open(ko, "rb") as f:
        data = f.read()
    i = data.find(b"depends=")
    if i < 0:
        return []
    end = data.find(b"\0", i)
    deps = data[i + len("depends=") : end].decode(errors="replace")
    return [d for d in deps.split(",") if d]


def module_order(root: str, wanted: List[str]) -> List[str]:
    """Paths of ``wanted`` modules and their dependencies, dependencies first."""
    by_name: Dict[str, str] = {}
    for ko in glob.glob(os.path.join(root, "**", "*.ko"), recursive=True):
        by_name[os.path.basename(ko)[:-3].replace("-", "_")] = ko
    out: List[str] = []
    seen: set = set()

    def visit(name: str, chain: tuple) -> None:
        if name in seen:
            return
        if name in chain:
            raise HarnessError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        ko = by_name.get(name)
        if ko is None:
            raise HarnessError(f"module {name} is not in {root} (a kernel without it built in)")
        for d in _depends(ko):
            visit(d, chain + (name,))
        seen.add(name)
        out.append(ko)

    for w in wanted:
        visit(w, ())
    return out


def debian_61(extra_modules: Sequence[str] = ()) -> KernelImage:
    """The newest linux-image-*-cloud-amd64 that Debian's archive offers, unpacked in the
    cache (downloaded once); its modules the harness needs, then ``extra_modules`` (e.g.
    virtio_mem), with their dependencies, in load order."""
    apt_cache = need_tool("apt-cache", "apt")
    r = subprocess.run([apt_cache, "depends", META_PACKAGE], capture_output=True, text=True)
    pkgs = [
        ln.split()[-1]
        for ln in r.stdout.splitlines()
        if ln.strip().startswith("Depends:") and "linux-image-" in ln
    ]
    if r.returncode or not pkgs:
        raise HarnessError(
            f"apt-cache depends {META_PACKAGE} found no kernel package (run apt-get update?): "
            f"{r.stderr.strip()[-300:]}"
        )
    pkg = pkgs[0]
    base = os.path.join(cache_dir(), pkg)
    tree = os.path.join(base, "tree")
    if not os.path.isdir(os.path.join(tree, "boot")):
        os.makedirs(base, exist_ok=True)
        apt_get = need_tool("apt-get", "apt")
        r = subprocess.run([apt_get, "download", pkg], cwd=base, capture_output=True, text=True)
        debs = glob.glob(os.path.join(base, f"{pkg}_*.deb"))
        if not debs:
            raise HarnessError(f"apt-get download {pkg} failed: {r.stderr.strip()[-500:]}")
        dpkg = need_tool("dpkg", "dpkg")
        r = subprocess.run([dpkg, "-x", debs[0], tree + ".tmp"], capture_output=True, text=True)
        if r.returncode:
            raise HarnessError(f"dpkg -x {debs[0]} failed: {r.stderr.strip()[-500:]}")
        os.replace(tree + ".tmp", tree)
    images = glob.glob(os.path.join(tree, "boot", "vmlinuz-*"))
    configs = glob.glob(os.path.join(tree, "boot", "config-*"))
    if not images or not configs:
        raise HarnessError(f"{tree}: no boot/vmlinuz-* and boot/config-* in {pkg}")
    release = os.path.basename(images[0])[len("vmlinuz-") :]
    mods = module_order(
        os.path.join(tree, "lib", "modules", release), [*NEEDED_MODULES, *extra_modules]
    )
    return KernelImage(images[0], configs[0], release, mods)

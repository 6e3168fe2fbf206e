"""The ``memscan`` command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional

from .errors import ArgumentError, MemscanError
from .kernel import POST_PATCH_KERNEL, SEED_KERNEL
from .machine import Machine
from .progress import Progress
from .report import (
    COLUMNS,
    DEFAULT_COLUMNS,
    SCHEMA,
    SPLIT_COLUMNS,
    SUMMARY_WHEN,
    TableOptions,
    build_report,
    format_report,
    format_summary,
    format_table,
    parse_columns,
    parse_split,
)
from .workload import PRESETS


def _progress(args: argparse.Namespace) -> Optional[bool]:
    """Progress bars: quiet under --json; otherwise drawn when stderr is a terminal."""
    return False if getattr(args, "json", False) else None


def _populate(m: Machine, args: argparse.Namespace) -> None:
    """Apply --workload: fragmented by default; a captured machine keeps its own pages."""
    if args.workload is None:
        args.workload = "none" if (args.live or args.snapshot) else "fragmented"
    if args.workload != "none":
        m.populate(args.workload, seed=args.seed, progress=_progress(args))


def _machine(args: argparse.Namespace) -> Machine:
    if getattr(args, "live", False):
        return Machine.live(progress=_progress(args))
    if getattr(args, "snapshot", None):
        return Machine.from_snapshot(args.snapshot, progress=_progress(args))
    if args.iomem:
        return Machine.from_iomem_file(
            args.iomem, arch=args.arch or "x86_64", block_size=args.block_size
        )
    if args.layout:
        return Machine.from_layout(args.layout)
    if args.synthetic:
        return Machine.synthetic(
            args.synthetic, arch=args.arch or "x86_64", block_size=args.block_size, nodes=args.nodes
        )
    if args.arch and args.arch not in ("x86_64", "amd64"):
        raise MemscanError(
            f"--arch {args.arch}: the seed machine is x86_64; give --iomem FILE, --layout FILE or "
            "--synthetic SIZE for another arch"
        )
    if args.block_size:
        layout_machine = Machine.seed()
        if layout_machine.layout is None:  # pragma: no cover
            raise MemscanError("seed layout missing")
        from .sizes import parse_size

        lay = layout_machine.layout
        lay.block_size = parse_size(args.block_size, "--block-size")
        return Machine.from_layout_object(lay)
    return Machine.seed()


def _table_options(args: argparse.Namespace) -> TableOptions:
    """The table options of ``report`` (lsmem's), checked before any work is done."""
    table_args = [
        name
        for name, given in (
            ("-o", args.output is not None),
            ("--split", args.split is not None),
            ("-b", args.bytes),
            ("-n", args.noheadings),
            ("-a", args.all),
            ("--summary", args.summary is not None),
        )
        if given
    ]
    if args.json and table_args:
        raise ArgumentError(
            "--json is memscan's whole report (every block, sizes in bytes): the table "
            f"options ({', '.join(table_args)}) do not apply to it; use them with the text "
            "table, -r or -J"
        )
    columns = tuple(parse_columns(args.output))
    split = None if args.split is None else parse_split(args.split, columns)
    return TableOptions(
        columns=columns,
        split=split,
        all_blocks=args.all,
        in_bytes=args.bytes,
        headings=not args.noheadings,
        mode="json"
        if args.lsmem_json
        else "raw"
        if args.raw
        else "pairs"
        if args.pairs
        else "text",
        summary=args.summary or "auto",
    )


def _warn_patch_roles(pre: str, post: str, arch: str) -> None:
    """Say so when the "pre-patch" kernel does not scan removable (5.6 and later print 1) or
    the "post-patch" one still does: the two columns then do not compare the patch."""
    from .kernel import Kernel

    k_pre, k_post = Kernel.parse(pre, arch), Kernel.parse(post, arch)
    if not k_pre.removable_scans:
        print(
            f"memscan: warning: the pre-patch kernel {k_pre} has 53cdc1cb29e8 (removable is "
            "always 1, no scan); the pre and post columns are the same kernel behaviour",
            file=sys.stderr,
        )
    if k_post.removable_scans:
        print(
            f"memscan: warning: the post-patch kernel {k_post} still scans removable (it "
            "predates 53cdc1cb29e8); POST is a pre-patch answer",
            file=sys.stderr,
        )


def cmd_report(args: argparse.Namespace) -> int:
    table = _table_options(args)
    m = _machine(args)
    _populate(m, args)
    quiet = args.json or table.mode != "text" or not sys.stderr.isatty()
    if args.kernel is None:
        # a captured machine is modeled under its own kernel (uname -r, read as the profile
        # parser reads release strings); anything else under the seed's 5.5+debug
        release = ((m.snapshot_info or {}).get("meta") or {}).get("kernel_release")
        args.kernel = release or SEED_KERNEL
        if release:
            try:
                m.scan(release, blocks=[], progress=False)
            except MemscanError as e:
                raise MemscanError(
                    f"the captured machine runs {release}, which memscan does not model ({e}); "
                    "give --kernel to model it as a modeled kernel (6.1: today's offline path)"
                ) from None
            if not args.json:
                print(f"memscan: modeling the captured machine's kernel {release}", file=sys.stderr)
    _warn_patch_roles(args.kernel, args.post_kernel, m.geometry.arch)
    r = build_report(
        m,
        kernel=args.kernel,
        post_kernel=args.post_kernel,
        workload=args.workload,
        seed=args.seed,
        progress=None if not quiet else False,
    )
    if args.json:
        json.dump(r.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif table.mode != "text":
        # -r, -P and -J: the table alone, as lsmem prints them (the summary after a blank
        # line only with --summary=always)
        print(format_table(r, table))
        if table.shows_summary():
            print("\n" + "\n".join(format_summary(r, table.in_bytes)))
    else:
        print(format_report(r, table=table))
    return 0


def cmd_sysfs_export(args: argparse.Namespace) -> int:
    m = _machine(args)
    _populate(m, args)
    info = m.export_sysfs(
        args.dir,
        kernel=args.kernel,
        on_fault=args.on_fault,
        force=args.force,
        progress=_progress(args),
    )
    return _result(
        args,
        info,
        f"wrote {info['blocks']} memory blocks under {args.dir}/sys/devices/system/memory "
        f"(kernel {args.kernel}); read it with: lsmem --sysroot {args.dir}",
    )


def _result(args: argparse.Namespace, info: Dict[str, Any], text: str) -> int:
    """An export's outcome: ``info`` as one JSON line under --json, else ``text``."""
    if args.json:
        json.dump(info, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(text)
    return 0


def cmd_kpageflags_export(args: argparse.Namespace) -> int:
    from .kpageflags import check_export
    from .sizes import human

    m = _machine(args)
    check_export(m, args.file, args.force)  # before the populate, which can take a minute
    _populate(m, args)
    info = m.export_kpageflags(args.file, progress=_progress(args), force=args.force)
    return _result(
        args,
        info,
        f"wrote {info['pfns']:#x} pfns ({human(info['bytes'])}, {human(info['sparse_bytes'])} "
        f"of it left as file holes) to {args.file}; read it with: page-types -F {args.file} "
        "or memscan.Machine.import_kpageflags",
    )


def _add_source_args(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("machine (default: the embedded seed machine)")
    src.add_argument(
        "--live",
        action="store_true",
        help="this machine, captured read-only (kpageflags needs root)",
    )
    src.add_argument("--snapshot", metavar="FILE", help="a snapshot made by 'memscan capture'")
    src.add_argument("--iomem", metavar="FILE", help="build from a /proc/iomem copy")
    src.add_argument("--layout", metavar="FILE", help="build from a JSON layout")
    src.add_argument(
        "--synthetic", metavar="SIZE", help="a synthetic machine of SIZE RAM (e.g. 1T)"
    )
    src.add_argument("--nodes", type=int, default=1, help="NUMA nodes of a synthetic machine")
    src.add_argument("--arch", help="x86_64, arm64, ppc64, s390x (with --iomem / --synthetic)")
    src.add_argument("--block-size", help="memory block size (e.g. 2G); default: the arch rule")
    p.add_argument(
        "--workload",
        default=None,
        choices=sorted(PRESETS) + ["none"],
        help="workload preset (default: fragmented; none for --live and --snapshot, which bring their pages)",
    )
    p.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")


def live_on_fault() -> tuple:
    """The live view's fault modes, "kill" first (memscan.live.ON_FAULT; imported late: the
    live view needs mfusepy only when used)."""
    from .live import ON_FAULT

    return ON_FAULT


def cmd_run(args: argparse.Namespace) -> int:
    from . import live

    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise MemscanError("run: give the command after --, e.g. memscan run -- lsmem")
    m = _machine(args)
    _populate(m, args)
    r = live.run(
        m, args.kernel, cmd, kernel_time=args.kernel_time, capture=False, on_fault=args.on_fault
    )
    if args.log:
        with open(args.log, "w") as f:
            for o in r["ops"]:
                f.write(json.dumps(o, sort_keys=True) + "\n")
    s = r["summary"]
    ops = ", ".join(f"{n} {k}" for k, n in sorted(s["operations"].items())) or "none"
    print(
        f"memscan run: {cmd[0]} exited {r['returncode']}; kernel {s['kernel']}: {ops}; "
        f"{s['struct_pages_read']:,} struct pages read, modeled kernel time "
        f"{s['modeled_kernel_ms']:.3f} ms, {s['faults']} faults"
        + (f", errors {' '.join(s['errors'])}" if s["errors"] else ""),
        file=sys.stderr,
    )
    if r["dmesg"]:
        print("modeled kernel log:\n" + r["dmesg"].rstrip(), file=sys.stderr)
    return int(r["returncode"])


def cmd_mount(args: argparse.Namespace) -> int:
    from . import live

    m = _machine(args)
    _populate(m, args)
    ops = live.LiveSysfs(m, args.kernel, kernel_time=args.kernel_time)
    print(
        f"serving the live memory sysfs of {m!r} (kernel {args.kernel}) on {args.mountpoint}; "
        f"read it with: lsmem --sysroot {args.mountpoint}; Ctrl-C or umount to stop",
        file=sys.stderr,
    )
    live.serve(ops, args.mountpoint)
    print(json.dumps(ops.summary()), file=sys.stderr)
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    from .kernel import memmap_layout
    from .sources.snapshot import capture

    meta = capture(args.out, progress=_progress(args), memmap=args.memmap)
    if args.json:
        json.dump(meta, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"captured {meta['kernel_release']} ({meta['arch']}) read-only into {args.out}")
        for miss in meta["missing"]:
            print(f"  not captured: {miss}")
        mm = meta.get("memmap")
        if mm:
            print(
                f"  struct pages of {sum(e - s for s, e in mm['ranges'])} pfns from /proc/kcore "
                f"(vmemmap base {mm['vmemmap_base']:#x}, {mm['vmemmap_source']})"
            )
            if memmap_layout(meta["kernel_release"], meta["arch"]) is None:
                print(
                    f"  note: memscan does not decode {meta['kernel_release']}'s struct pages; "
                    "models from this snapshot take page kinds from kpageflags"
                )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .studies.cost import CostModel, calibrate

    c = calibrate()
    if args.groundtruth:
        return _calibrate_groundtruth(args, c)
    if args.json:
        json.dump({"measured": c, "model": CostModel().to_dict()}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        d = CostModel()
        print(f"measured on {c['machine']}:")
        print(
            f"  ns per struct page read (memmap emulation, scan order): {c['ns_per_struct_page']:.2f}"
            f"  (default {d.ns_per_struct_page})"
        )
        print(
            f"  ns per 4 KiB page copy:                                 {c['ns_per_page_copy']:.1f}"
            f"  (default {d.ns_per_page_copy})"
        )
        if c["ns_per_syscall"] is not None:
            print(
                f"  ns per sysfs attribute read ({c['syscall_probe']}):"
                f"  {c['ns_per_syscall']:.0f}  (default {d.ns_per_syscall})"
            )
        print(f"  defaults measured on: {d.source}; {c['note']}")
    return 0


def _calibrate_groundtruth(args: argparse.Namespace, host: Dict[str, Any]) -> int:
    from .groundtruth.fit import cost_fields, fit_cost
    from .studies.cost import CostModel

    fit = fit_cost(args.groundtruth, host=host)
    fields = cost_fields(fit)
    fields["source"] = (
        f"calibrate --groundtruth ({fit['kernel']}, {fit['attempts']} attempts) on "
        f"{host['machine']}"
    )
    if args.json:
        json.dump({"groundtruth_fit": fit, "cost": fields}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    d = CostModel()
    r2 = "-" if fit["r2"] is None else f"{fit['r2']:.3f}"
    print(
        f"fitted from {fit['attempts']} offline attempts of {len(fit['runs'])} {fit['kernel']} "
        f"run(s) (r2 {r2}); TCG inflation {fit['inflation'] or float('nan'):.1f}x "
        f"(ns per struct page under TCG {fit['tcg_ns_per_struct_page']:.1f}, from "
        f"{fit['inflation_from']}; here {host['ns_per_struct_page']:.2f})"
    )
    print(f"{'CONSTANT':<32} {'TCG ns':>12} {'HERE ns':>12} {'DEFAULT':>10}  SOURCE")
    for name, e in fit["constants"].items():
        here = "-" if e["host_ns"] is None else f"{e['host_ns']:.1f}"
        print(f"{name:<32} {e['tcg_ns']:>12.1f} {here:>12} {e['default']:>10.1f}  {e['source']}")
    print("\nas cost-model fields (memscan tradeoff --cost FILE takes the --json output):")
    for k, v in fields.items():
        if k not in ("origins", "source"):
            print(f"  {k:<32} {v:>12.1f}  (default {getattr(d, k)})")
    print(
        "TCG inflates every absolute time; the ratios carry over, so each constant is scaled "
        "by the inflation of the struct-page read, measured both ways."
    )
    return 0


def cmd_tradeoff(args: argparse.Namespace) -> int:
    import functools

    from .studies.cost import CostModel
    from .studies.tradeoff import Case, break_even, break_even_blocks, plot, tradeoff

    if args.plot and args.workload is not None:
        raise ArgumentError("--plot draws against the fragmentation level: not with --workload")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise MemscanError(
                "--plot needs matplotlib: pip install 'memscan[plot]' (checked before the sweep)"
            ) from None
    if args.real_clients:
        from .studies import real

        why = real.missing()
        if why:
            raise MemscanError(f"--real-clients: {why} (checked before the sweep)")
    cost = CostModel.from_file(args.cost) if args.cost else CostModel()
    # picklable cases (no lambdas), so a process pool can run them
    cases = [] if args.no_seed_machine else [Case("seed", Machine.seed)]
    for size in args.synthetic or ["4G", "16G", "64G"]:
        cases.append(
            Case(
                f"synthetic {size}/{args.block_size}",
                functools.partial(Machine.synthetic, size, block_size=args.block_size),
            )
        )
    if args.workload is not None:
        if args.levels is not None:
            raise ArgumentError("--workload studies presets instead of --levels: give one")
        levels: List[Any] = [w.strip() for w in args.workload.split(",") if w.strip()]
        bad = [w for w in levels if w not in PRESETS]
        if bad or not levels:
            raise ArgumentError(
                f"--workload {args.workload!r}: presets are {', '.join(sorted(PRESETS))}"
            )
    else:
        levels = [float(x) for x in (args.levels or "0,0.25,0.5,0.75,1").split(",")]
    pins = [float(x) for x in args.pins.split(",")] if args.pins else None
    started = time.perf_counter()
    recs = tradeoff(
        cases,
        levels=levels,
        request_fraction=args.request,
        pre=args.kernel,
        post=args.post_kernel,
        pins=pins,
        seed=args.seed,
        cost=cost,
        progress=_progress(args),
    )
    if args.real_clients:
        bar = Progress(len(recs), "real clients", enabled=_progress(args), unit="case")
        real.real_clients(
            recs, cases, args.kernel, args.post_kernel, args.seed, cost, lambda: bar.update(1)
        )
        bar.close()
    wall = time.perf_counter() - started
    be = break_even(recs)
    be_blocks = break_even_blocks(recs)
    if args.plot:
        plot(recs, args.plot)
    if args.json:
        json.dump(
            {
                "records": recs,
                "break_even": be,
                "break_even_blocks": {str(k): v for k, v in be_blocks.items()},
                "cost": {
                    k: {"ns": v, "origin": cost.origin(k)} for k, v in cost.constants().items()
                },
                "memscan_seconds": wall,
            },
            sys.stdout,
            indent=1,
        )
        sys.stdout.write("\n")
        return 0
    fw = max([4] + [len(_level(r)) for r in recs])
    hdr = (
        f"{'MACHINE':<26} {'FRAG':>{fw}} {'PINNED':>7} {'OK BLKS':>7} {'PREC':>5} {'RECALL':>6} {'LSMEM PRE ms':>12} "
        f"{'DRMGR+HINT ms':>13} {'BLIND ms':>9} {'CHMEM ms':>9} {'SAVED ms':>9}  MET hint/blind/chmem"
    )
    print(hdr)
    for r in recs:
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        d, b, c = r["drmgr_pre"], r["blind_post"], r["chmem_post"]
        print(
            f"{r['machine']:<26} {_level(r):>{fw}} {r['pinned']:>7.1e} "
            f"{r['offlineable_blocks']:>7} "
            f"{f(r['removable_precision']):>5} {f(r['removable_recall']):>6} "
            f"{r['lsmem_pre']['kernel_ns'] / 1e6:>12.2f} {d['kernel_ns'] / 1e6:>13.2f} {b['kernel_ns'] / 1e6:>9.2f} "
            f"{c['kernel_ns'] / 1e6:>9.2f} "
            + ("   killed" if r["hint_saves_ns"] is None else f"{r['hint_saves_ns'] / 1e6:>9.2f}")
            + "  "
            f"{'y' if d['met'] else 'n'}/{'y' if b['met'] else 'n'}/{'y' if c['met'] else 'n'}"
            + (f"  ({d['message'][:60]})" if d["message"] else "")
        )
    if args.real_clients:
        _print_real_clients(recs)
    print(
        "\nbreak-even (lowest fragmentation where the hint pays: drmgr with it meets the "
        "request in less kernel time than the blind agent):"
        if args.workload is None
        else "\nbreak-even (the first workload, in the order given, where the hint pays: drmgr "
        "with it meets the request in less kernel time than the blind agent):"
    )
    for k, v in be.items():
        print(f"  {k}: {'never in this sweep' if v is None else v}")
    print("smallest machine (memory blocks) where the hint pays, per level:")
    for k, v in be_blocks.items():
        name = k if isinstance(k, str) else f"fragmentation {k:g}"
        print(f"  {name}: {'none in this sweep' if v is None else v}")
    print("\nModeled kernel time (memscan.studies.cost.CostModel), not memscan's own run time;")
    print("its constants, and where each came from:")
    for k, v in cost.constants().items():
        print(f"  {k:<32} {v:>12.1f} ns  {cost.origin(k)}")
    print(f"memscan's own run time for this sweep: {wall:.1f} s")
    return 0


def _level(r: Dict[str, Any]) -> str:
    """A record's FRAG cell: its fragmentation level, or its workload preset."""
    f = r.get("fragmentation")
    return r["workload"] if f is None else f"{f:.2f}"


def _print_real_clients(recs: List[Dict[str, Any]]) -> None:
    """The real clients beside their emulations, a row per record."""
    fw = max([4] + [len(_level(r)) for r in recs])
    print(
        "\nreal util-linux clients through the live sysfs (real | emulated):\n"
        f"{'MACHINE':<26} {'FRAG':>{fw}} {'LSMEM READS':>13} {'STRUCT PAGES':>21} {'KILLED':>7} "
        f"{'CHMEM ATTEMPTS':>15} {'OFFLINED':>9} {'MET':>5}  AGREE lsmem/chmem"
    )
    for r in recs:
        ls, ch = r["real_lsmem_pre"], r["real_chmem_post"]
        le, ce = ls["emulated"], ch["emulated"]
        yn = lambda v: "y" if v else "n"  # noqa: E731
        print(
            f"{r['machine']:<26} {_level(r):>{fw}} "
            f"{ls['syscalls']:>6}|{le['syscalls']:<6} "
            f"{ls['struct_pages_read']:>10}|{le['struct_pages_read']:<10} "
            f"{yn(ls['killed'])}|{yn(le['killed_at'] is not None):<5} "
            f"{ch['attempts']:>7}|{ce['attempts']:<7} "
            f"{ch['offlined_blocks']:>4}|{ce['offlined_blocks']:<4} "
            f"{yn(ch['met'])}|{yn(ce['met']):<3}  {yn(ls['agrees'])}/{yn(ch['agrees'])}"
        )


def _default_kernel_image() -> Optional[str]:
    from .groundtruth.runner import shared_kernel

    return shared_kernel("linux-5.4.59-prepatch")


def cmd_groundtruth_run(args: argparse.Namespace) -> int:
    from .groundtruth.runner import run
    from .groundtruth.scenario import Scenario

    sc = Scenario.load(args.scenario)
    image = args.kernel or _default_kernel_image()
    if image is None:
        raise MemscanError(
            "no --kernel given and no ../shared/kernels/linux-5.4.59-prepatch/bzImage found"
        )
    if not args.json:
        print(f"booting {image} under QEMU (TCG) with scenario {sc.name} ...", file=sys.stderr)
    rec = run(sc, image, args.out, timeout=args.timeout)
    if args.json:
        print(json.dumps({k: rec[k] for k in ("scenario", "status", "wall_seconds", "uname")}))
    else:
        killed = sum(1 for a in rec["attempts"] if a["signal"])
        print(
            f"{rec['status']}: {len(rec['attempts'])} attempts ({killed} readers killed by the "
            f"kernel) in {rec['wall_seconds']} s; run directory {args.out}"
        )
    return 0 if rec["status"] == "ok" else 1


def cmd_groundtruth_agree(args: argparse.Namespace) -> int:
    from .groundtruth.agree import CLIENT_TIE, MODEL_THIN, agree
    from .studies.cost import CostModel

    a = agree(args.dir, kernel=args.kernel, source=args.source)
    cost_model = CostModel.from_file(args.cost) if args.cost else None
    if args.json:
        d = a.as_dict()
        d["offline_cost_tcg"] = a.offline_cost(cost_model)
        print(json.dumps(d, indent=1))
        return 0
    print(
        f"{args.dir}: model {a.kernel} (pages from {a.source}) against the recorded kernel, "
        "attempt by attempt"
    )
    rows = []
    for r in a.rows:
        kv = "killed" if r.kernel_fault else str(r.kernel_value)
        mv = (
            r.model_fault["kind"] if r.model_fault and r.model_value is None else str(r.model_value)
        )
        why = r.why + (
            f" [uncertain: {r.alternative!r} with its no-flag pages read otherwise]"
            if r.uncertain
            else ""
        )
        rows.append((r.attr, str(r.block), kv, mv, "yes" if r.agree else "NO", why))
    head = ("ATTR", "BLOCK", "KERNEL", "MODEL", "AGREE", "WHY")
    w = [max(len(x[i]) for x in [head, *rows]) for i in range(5)]
    for x in [head, *rows]:
        print(
            f"{x[0]:<{w[0]}}  {x[1]:>{w[1]}}  {x[2]:<{w[2]}}  {x[3]:<{w[3]}}  {x[4]:<{w[4]}}  {x[5]}"
        )
    for attr in sorted({r.attr for r in a.rows}):
        c = a.count(attr)
        unc = (
            f" ({c['uncertain']} decided by pages kpageflags cannot tell apart, "
            f"{c['uncertain_agree']} of them agree)"
            if c["uncertain"]
            else ""
        )
        print(f"{attr}: {c['agree']}/{c['attempts']} attempts agree{unc}")
    cost = a.scan_cost()
    if cost and "ns_per_struct_page" in cost:
        print(
            f"removable read time on the guest (TCG): {cost['ns_fixed'] / 1e3:.0f} us fixed + "
            f"{cost['ns_per_struct_page']:.1f} ns per struct page read (r={cost['r']:.2f}, "
            f"{cost['reads']} reads); TCG inflates absolute times, ratios carry over"
        )
    oc = a.offline_cost(cost_model)
    if oc:
        print("offline time on the guest (TCG) beside the cost model's, attempts that agree:")
        for cls, v in oc["by_outcome"].items():
            print(
                f"  {cls:<7} {v['attempts']:>3} attempts  kernel median {v['kernel_ms_median']:9.2f} ms "
                f"({v['kernel_ms_min']:.2f}-{v['kernel_ms_max']:.2f})  model median "
                f"{v['model_ms_median']:9.3f} ms"
            )
        if oc.get("spearman") is not None:
            print(
                f"  ranking ({oc['ranked']} attempts, EINTR left out): Spearman rho "
                f"{oc['spearman']:.2f}; of {oc['pairs']} pairs {oc['concordant']:.0%} ordered as "
                f"the kernel's times, {oc['discordant']:.0%} the other way, "
                f"{oc['model_ties']:.0%} tied in the model"
            )
    af = a.after_summary()
    if af:
        print(
            f"right after each offline write ({af['attempts']} attempts): "
            f"{af['same_class'] / af['pages']:.1%} of {af['pages']} pages in the same class "
            "in the kernel's copy and the model; pages per class, kernel / model:"
        )
        for cls, v in af["by_outcome"].items():
            cells = "  ".join(f"{c} {v['kernel'][c]}/{v['model'][c]}" for c in v["kernel"])
            print(f"  {cls:<7} {v['attempts']:>3} attempts  {cells}")
    cr = a.client_ranking()
    if cr:
        print("real clients: measured wall time (guest, TCG) beside memscan's modeled kernel time:")
        for c in sorted(cr["clients"], key=lambda c: c["kernel_ms"]):
            print(
                f"  {c['client']:<12} {c['kernel_ms']:9.1f} ms measured  {c['model_ms']:9.3f} ms modeled"
            )
        print(
            f"  {cr['same_order']} of {cr['pairs']} pairs (measured times more than "
            f"{CLIENT_TIE:.0%} apart) in the same order"
        )
        if cr["thin"]:
            print(
                f"  modeled within {MODEL_THIN:.0%} of each other (a thin margin, not evidence): "
                + ", ".join(cr["thin"])
            )
    return 0


_REPORT_EPILOG = (
    "output columns (-o; lsmem's first, then memscan's own):\n"
    + "".join(f"  {name:>12}  {col.help}\n" for name, col in COLUMNS.items())
    + f"""
--json is memscan's whole report ({SCHEMA}, docs/report-schema.json: every block,
every fault, the offline outcomes; wall-clock times only under "run"). -J is lsmem -J:
the table's rows as {{"memory": [...]}} with lsmem's keys and types (removable a boolean,
null where the read faults). Empty table cells are values lsmem leaves empty.

examples:
  memscan report -o +NODE,ZONES,OFFLINE     the default table, NUMA node, zones, dry-run offline
  memscan report --kernel 5.6 -o RANGE,SIZE,STATE,REMOVABLE,BLOCK
                                            what `lsmem` prints on the post-patch kernel (the
                                            same as `memscan sysfs export DIR --kernel 5.6 &&
                                            lsmem --sysroot DIR`)
  memscan report -J -b | jq '.memory[] | select(.removable == null)'
                                            the ranges whose removable read faults
  memscan report --json | jq 'del(.run)'    the whole report; two runs differ only in .run
"""
)

#: report's defaults for the shared machine options (other subcommands keep their help)
_REPORT_SOURCE_DEFAULTS = {
    "live": " (default: off)",
    "snapshot": " (default: none)",
    "iomem": " (default: none)",
    "layout": " (default: none)",
    "synthetic": " (default: none)",
    "nodes": " (default 1)",
    "arch": " (default x86_64, the seed's)",
}


def _add_report_args(r: argparse.ArgumentParser) -> None:
    _add_source_args(r)
    for action in r._actions:
        extra = _REPORT_SOURCE_DEFAULTS.get(action.dest)
        if extra and action.help and "default" not in action.help:
            action.help += extra
    r.add_argument(
        "--kernel",
        default=None,
        help="pre-patch kernel: 5.4[.N], 5.5[.N], 5.6-rcN, 5.6, 6.1 or a `uname -r` string such "
        "as 6.1.0-18-amd64, each optionally +debug (default: a captured machine's own kernel, "
        "else 5.5+debug, the seed's)",
    )
    r.add_argument(
        "--post-kernel",
        default=POST_PATCH_KERNEL,
        help=f"post-patch kernel (default {POST_PATCH_KERNEL})",
    )
    fmt = r.add_argument_group("output (default: the text table, lsmem's summary, findings)")
    one = fmt.add_mutually_exclusive_group()
    one.add_argument(
        "--json",
        action="store_true",
        help=f"memscan's whole report as JSON, schema {SCHEMA} (docs/report-schema.json); "
        "not lsmem's shape, see -J; the table options do not apply (default: off)",
    )
    one.add_argument(
        "-J",
        "--lsmem-json",
        action="store_true",
        help='the table as lsmem -J prints it: {"memory": [...]}, lsmem\'s keys and types, '
        "no summary (default: off)",
    )
    one.add_argument(
        "-r",
        "--raw",
        action="store_true",
        help="the table as lsmem -r prints it: unaligned, one space apart, no summary "
        "(default: off)",
    )
    one.add_argument(
        "-P",
        "--pairs",
        action="store_true",
        help='the table as lsmem -P prints it: NAME="value" pairs, a line per row, no summary '
        "(memscan's STRUCT-PAGES spelled STRUCT_PAGES, a shell variable name) (default: off)",
    )
    fmt.add_argument(
        "--summary",
        nargs="?",
        const="only",  # lsmem 2.38.1: a bare --summary drops the table
        choices=SUMMARY_WHEN[1:],
        metavar="WHEN",
        help="lsmem's summary: never, always, or only (no table; what a bare --summary means, "
        "as in lsmem; not with -r/-J/-P) (default: after the text table, not with -r/-J/-P)",
    )
    fmt.add_argument(
        "-o",
        "--output",
        metavar="LIST",
        default=None,
        help="table columns, comma separated, any case; +LIST appends to the defaults, as in "
        f"lsmem (default {','.join(DEFAULT_COLUMNS)})",
    )
    fmt.add_argument(
        "-S",
        "--split",
        metavar="LIST",
        default=None,
        help=f"columns whose values split ranges ({', '.join(SPLIT_COLUMNS)}), or none "
        "(default, as lsmem: the shown ones among them)",
    )
    fmt.add_argument(
        "-b",
        "--bytes",
        action="store_true",
        help="SIZE and the summary in bytes (default: lsmem's 2G, 3.8G)",
    )
    fmt.add_argument(
        "-n",
        "--noheadings",
        action="store_true",
        help="no table header line (default: one)",
    )
    fmt.add_argument(
        "-a",
        "--all",
        action="store_true",
        help="one row per block, as lsmem -a (default: merged ranges)",
    )


#: examples shown under each subcommand's --help (report has its own epilog)
EXAMPLES = {
    ("sysfs", "export"): [
        "memscan sysfs export /tmp/seed && lsmem --sysroot /tmp/seed",
        "memscan sysfs export --synthetic 1T --kernel 6.1 --force /tmp/big",
    ],
    ("kpageflags", "export"): [
        "memscan kpageflags export --synthetic 16G /tmp/kpf && page-types -F /tmp/kpf -l",
        "memscan kpageflags export --synthetic 1T --workload idle --force /tmp/kpf1t",
    ],
    ("run",): [
        "memscan run --kernel 5.5+debug -- lsmem   # lsmem is killed at memory96, as in 2020",
        "memscan run --synthetic 64G --kernel 6.1 --log ops.jsonl -- chmem -d 4G",
    ],
    ("mount",): ["memscan mount /tmp/live --kernel 6.1 &  lsmem --sysroot /tmp/live"],
    ("capture",): [
        "sudo memscan capture host.tar.gz && memscan report --snapshot host.tar.gz",
        "sudo memscan capture --memmap host.tar.gz   # struct pages too, from /proc/kcore",
    ],
    ("calibrate",): [
        "memscan calibrate --json > cost.json && memscan tradeoff --cost cost.json",
        "memscan calibrate --groundtruth tests/groundtruth/*-5.4-nodebug --json > fit.json && "
        "memscan tradeoff --cost fit.json",
    ],
    ("tradeoff",): [
        "memscan tradeoff",
        "memscan tradeoff --synthetic 1T --seed 3 --plot tradeoff.png",
    ],
    ("groundtruth", "run"): [
        "memscan groundtruth run seed-5.4 --out /tmp/seed-run",
        "memscan groundtruth run offline-6.1 --kernel debian-6.1 --out /tmp/run61",
    ],
    ("groundtruth", "agree"): [
        "memscan groundtruth agree tests/groundtruth/offline-6.1-debian",
        "memscan groundtruth agree /tmp/seed-run --source kpageflags --json",
        "memscan groundtruth agree tests/groundtruth/offline-5.4-nodebug --cost fit.json",
    ],
}


def _add_examples(p: argparse.ArgumentParser) -> None:
    """Put EXAMPLES under each subcommand's --help."""

    def subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
        for a in parser._actions:  # argparse keeps subcommands only here
            if isinstance(a, argparse._SubParsersAction):
                return dict(a.choices)
        return {}

    for path, lines in EXAMPLES.items():
        q = p
        for name in path:
            q = subparsers(q)[name]
        q.epilog = "examples:\n" + "\n".join("  " + x for x in lines)
        q.formatter_class = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memscan", description="Model Linux memory hot-unplug.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"memscan {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "report",
        help="what lsmem would show: pre-patch removable, faults, scan cost",
        description="The memory blocks of a modeled machine as util-linux lsmem lists them,\n"
        "with the pre-patch removable of each (FAULT where the read never returns), the\n"
        "post-patch one and the struct pages the read touches; then memscan's findings.\n"
        "The text output starts with what lsmem prints for the same columns, line for line.",
        epilog=_REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        conflict_handler="resolve",  # its --json replaces the shared one, to say what it is
    )
    _add_report_args(r)
    r.set_defaults(func=cmd_report)
    sy = sub.add_parser("sysfs", help="sysfs trees")
    sysub = sy.add_subparsers(dest="sysfs_command", required=True)
    ex = sysub.add_parser(
        "export", help="write DIR/sys/devices/system/memory for lsmem --sysroot DIR"
    )
    ex.add_argument("dir", metavar="DIR")
    _add_source_args(ex)
    ex.add_argument(
        "--kernel",
        default=SEED_KERNEL,
        help=f"kernel whose sysfs is written (default {SEED_KERNEL})",
    )
    ex.add_argument(
        "--on-fault",
        default="missing",
        choices=["missing", "0", "1"],
        help="removable of a block whose read faults: no file (lsmem says 'no'), or this value",
    )
    ex.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier export in DIR whole (default: DIR must be empty or missing)",
    )
    ex.set_defaults(func=cmd_sysfs_export)
    kp = sub.add_parser("kpageflags", help="/proc/kpageflags files")
    kpsub = kp.add_subparsers(dest="kpageflags_command", required=True)
    kx = kpsub.add_parser(
        "export",
        help="write FILE as /proc/kpageflags reads on this machine (6.1 flags, 8 bytes a pfn)",
    )
    kx.add_argument("file", metavar="FILE")
    _add_source_args(kx)
    kx.add_argument(
        "--force",
        action="store_true",
        help="write a file larger than 1 GiB (a machine past 512 GiB) (default: refuse it)",
    )
    kx.set_defaults(func=cmd_kpageflags_export)
    for name, helptext in (
        (
            "run",
            "run a command (lsmem, chmem, an agent) against the live modeled sysfs, in a "
            "private mount namespace: memscan run [machine] --kernel K -- CMD ARGS",
        ),
        ("mount", "serve the live modeled sysfs on MOUNTPOINT (lsmem --sysroot MOUNTPOINT)"),
    ):
        lp = sub.add_parser(name, help=helptext)
        if name == "mount":
            lp.add_argument("mountpoint", metavar="MOUNTPOINT", help="an empty directory")
        _add_source_args(lp)
        lp.add_argument(
            "--kernel", default=SEED_KERNEL, help=f"modeled kernel (default {SEED_KERNEL})"
        )
        lp.add_argument(
            "--kernel-time",
            action="store_true",
            help="each operation also takes its modeled kernel time in wall time",
        )
        if name == "run":
            lp.add_argument("--log", metavar="FILE", help="write the operations log (JSON lines)")
            lp.add_argument(
                "--on-fault",
                choices=live_on_fault(),
                default=live_on_fault()[0],
                help="a read the kernel would oops on: kill the reader with SIGSEGV, as the "
                f"kernel does, or fail it with EIO (default {live_on_fault()[0]})",
            )
            lp.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
            lp.set_defaults(func=cmd_run)
        else:
            lp.set_defaults(func=cmd_mount)
    cp = sub.add_parser("capture", help="save a read-only snapshot of this machine (one .tar.gz)")
    cp.add_argument("out", metavar="OUT")
    cp.add_argument("--json", action="store_true", help="print the snapshot's meta record as JSON")
    cp.add_argument(
        "--memmap",
        action="store_true",
        help="also the raw struct pages of all System RAM, read-only from /proc/kcore (root; "
        "1/64 of RAM before compression): per-CPU free pages, pins and pagevec pages, which "
        "kpageflags cannot show",
    )
    cp.set_defaults(func=cmd_capture)
    ca = sub.add_parser(
        "calibrate",
        help="measure the cost model's struct-page, page-copy and sysfs-read constants here (read-only)",
    )
    ca.add_argument("--json", action="store_true")
    ca.add_argument(
        "--groundtruth",
        nargs="+",
        metavar="DIR",
        help="also fit the assumed constants (per-attempt overhead, isolation, migration, "
        "rounds, drains) from recorded real-kernel runs of one kernel profile, scaled to this "
        "host by the TCG inflation (needs scipy; default: measure only)",
    )
    ca.set_defaults(func=cmd_calibrate)
    tr = sub.add_parser(
        "tradeoff", help="what removable costs, what it saves, how often it is wrong"
    )
    tr.add_argument(
        "--synthetic",
        action="append",
        metavar="SIZE",
        help="synthetic machines to sweep, repeatable (default 4G, 16G and 64G)",
    )
    tr.add_argument(
        "--block-size", default="128M", help="block size of the synthetic machines (default 128M)"
    )
    tr.add_argument(
        "--levels",
        default=None,
        help="fragmentation levels, comma separated (default 0,0.25,0.5,0.75,1)",
    )
    tr.add_argument(
        "--workload",
        metavar="PRESET[,PRESET...]",
        help=f"workload presets to study instead of the fragmentation levels ({', '.join(sorted(PRESETS))}; "
        "no plot: its x axis is the level) (default: the levels)",
    )
    tr.add_argument(
        "--request",
        type=float,
        default=0.25,
        help="unplug request as a share of blocks (default 0.25)",
    )
    tr.add_argument(
        "--pins",
        metavar="P,P,...",
        help="sweep the share of long-term pinned LRU pages too (e.g. 0,1e-5,1e-4); "
        "default: each level's own (2e-6 x level)",
    )
    tr.add_argument("--kernel", default="5.5", help="pre-patch kernel (default 5.5)")
    tr.add_argument(
        "--post-kernel",
        default=POST_PATCH_KERNEL,
        help=f"post-patch kernel (default {POST_PATCH_KERNEL})",
    )
    tr.add_argument(
        "--plot", metavar="FILE.png", help="draw the trade-off to FILE.png (default: no plot)"
    )
    tr.add_argument(
        "--json", action="store_true", help="the records as JSON (default: the text table)"
    )
    tr.add_argument(
        "--cost",
        metavar="FILE",
        help="cost constants: the output of `memscan calibrate --json` (its measured "
        "constants over the defaults), of `memscan calibrate --groundtruth --json`, or a JSON "
        "object of CostModel fields (default: the built-in constants)",
    )
    tr.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    tr.add_argument(
        "--no-seed-machine",
        action="store_true",
        help="leave the embedded seed machine out (default: in)",
    )
    tr.add_argument(
        "--real-clients",
        action="store_true",
        help="also run real util-linux lsmem (pre-patch kernel) and chmem -d SIZE (post-patch) "
        "on each case through the live sysfs, beside their emulations (root, /dev/fuse, "
        "chmem; checked before the sweep) (default: emulations only)",
    )
    tr.set_defaults(func=cmd_tradeoff)
    gt = sub.add_parser(
        "groundtruth", help="real kernels under QEMU: run a scenario, compare the model with it"
    )
    gsub = gt.add_subparsers(dest="groundtruth_command", required=True)
    gr = gsub.add_parser("run", help="boot a kernel under QEMU (TCG) with a scenario, record it")
    gr.add_argument("scenario", help="a scenario .toml or a shipped name (seed-5.4, small-5.4)")
    gr.add_argument(
        "--kernel",
        metavar="BZIMAGE",
        help="kernel image, or debian-6.1 (Debian's cloud kernel, fetched with apt-get "
        "download; default ../shared/kernels/linux-5.4.59-prepatch/bzImage)",
    )
    gr.add_argument("--out", required=True, metavar="DIR", help="run directory (new or empty)")
    gr.add_argument("--timeout", type=float, help="seconds (default: the scenario's)")
    gr.add_argument("--json", action="store_true")
    gr.set_defaults(func=cmd_groundtruth_run)
    ga = gsub.add_parser("agree", help="the model against a run directory, attempt by attempt")
    ga.add_argument("dir", metavar="DIR")
    ga.add_argument("--kernel", help="model profile (default: from the record, e.g. 5.4+debug)")
    ga.add_argument(
        "--source",
        default="auto",
        choices=["auto", "kpageflags", "memmap"],
        help="pages before each attempt from kpageflags only, or struct pages too (auto: "
        "struct pages where the run copied them)",
    )
    ga.add_argument(
        "--cost",
        metavar="FILE",
        help="cost constants for the offline time ranking (memscan calibrate [--groundtruth] "
        "--json output; default: the built-in constants)",
    )
    ga.add_argument("--json", action="store_true")
    ga.set_defaults(func=cmd_groundtruth_agree)
    _add_examples(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MemscanError as e:
        print(f"memscan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memscan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `memscan report -a | head`: the reader left; say nothing more, as cat does
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

//! Criterion benches of the Rust core: the worst-case removable scan (every page LRU in a
//! Normal zone, dense) and the fragmented scan, grouped by size, with byte throughput.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use memscan::geometry::{Arch, Geometry, GeometryOverrides};
use memscan::kernel::profile::KernelProfile;
use memscan::kernel::removable::scan_blocks;
use memscan::page::{kind, ZoneType};
use memscan::sections::RunView;
use memscan::topology::{BlockState, LayoutSpec, Machine, PfnRange, ZoneSpec};
use memscan::workload::{populate, Workload};

fn machine(pages: u64) -> Machine {
    let g = Geometry::for_arch(
        Arch::X86_64,
        GeometryOverrides {
            block_size: Some(128 << 20),
            ..Default::default()
        },
        0,
    )
    .unwrap();
    let start = 1 << 20; // 4 GiB: one Normal zone
    let spec = LayoutSpec {
        geometry: g,
        ram: vec![PfnRange {
            start,
            end: start + pages,
            nid: 0,
        }],
        reserved: vec![],
        device: vec![],
        zones: vec![ZoneSpec {
            nid: 0,
            zone: ZoneType::Normal,
            start,
            end: start + pages,
        }],
        offline_blocks: vec![],
        hstates: vec![],
    };
    Machine::build(&spec).unwrap()
}

/// The baseline a scan is measured against: one plain read of the same page bytes, section
/// by section as the scan takes them (an OR over each, which the compiler vectorises).
fn plain_read(m: &Machine, blocks: &[u64]) -> u8 {
    let pps = m.geometry.pages_per_section();
    let mut acc = 0u8;
    for &b in blocks {
        let first = m.geometry.block_to_pfn(b);
        for s in 0..m.geometry.sections_per_block() {
            if let RunView::Dense(bytes) = m.store.run(first + s * pps, pps as usize) {
                acc |= bytes.iter().fold(0u8, |a, &x| a | x);
            }
        }
    }
    acc
}

fn bench(c: &mut Criterion) {
    let profile = KernelProfile::parse("5.5", Arch::X86_64).unwrap();
    let mut group = c.benchmark_group("removable_worst_case");
    group.sample_size(10);
    for shift in [15u32, 20, 24, 26] {
        let pages = 1u64 << shift;
        let mut m = machine(pages);
        let blocks: Vec<u64> = (0..m.nr_blocks())
            .filter(|&b| m.blocks[b as usize] != BlockState::Absent)
            .collect();
        for &b in &blocks {
            m.store.block_pages_mut(b).fill(kind::LRU);
        }
        group.throughput(Throughput::Bytes(pages));
        group.bench_with_input(BenchmarkId::from_parameter(pages), &m, |bch, m| {
            bch.iter(|| scan_blocks(m, &blocks, &profile, false).unwrap());
        });
        // the same bytes read plainly, in the same group and run: the ratio is the figure
        group.bench_with_input(BenchmarkId::new("plain_read", pages), &m, |bch, m| {
            bch.iter(|| criterion::black_box(plain_read(m, &blocks)));
        });
        if shift == 26 {
            // both on every thread (rayon's pool: the machine's cores), block by block
            group.bench_with_input(BenchmarkId::new("parallel", pages), &m, |bch, m| {
                bch.iter(|| scan_blocks(m, &blocks, &profile, true).unwrap());
            });
            group.bench_with_input(
                BenchmarkId::new("plain_read_parallel", pages),
                &m,
                |bch, m| {
                    use rayon::prelude::*;
                    bch.iter(|| {
                        blocks
                            .par_iter()
                            .map(|&b| plain_read(m, &[b]))
                            .reduce(|| 0, |a, b| a | b)
                    });
                },
            );
        }
    }
    group.finish();
    let mut group = c.benchmark_group("removable_fragmented");
    group.sample_size(10);
    for shift in [15u32, 20, 24] {
        let pages = 1u64 << shift;
        let mut m = machine(pages);
        populate(&mut m, &Workload::default(), 7).unwrap();
        let blocks: Vec<u64> = (0..m.nr_blocks())
            .filter(|&b| m.blocks[b as usize] != BlockState::Absent)
            .collect();
        group.throughput(Throughput::Bytes(pages));
        group.bench_with_input(BenchmarkId::from_parameter(pages), &m, |bch, m| {
            bch.iter(|| scan_blocks(m, &blocks, &profile, false).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Writing a memory sysfs tree (the files lsmem reads), many blocks in parallel. The values
//! come from the caller; this only lays them out with the kernel's formats
//! (drivers/base/memory.c: `phys_index` "%08lx", `state`, `online`, `removable`,
//! `phys_device`, `valid_zones`, `nodeX` links both ways).

use std::collections::HashMap;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use rayon::prelude::*;
use rustix::fs::{
    linkat, mkdirat, openat, statat, symlinkat, AtFlags, FileType, Mode, OFlags, CWD,
};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// One block's attribute values.
#[derive(Debug, Clone)]
pub struct BlockFiles {
    pub block: u64,
    pub state: String,
    pub removable: Option<String>,
    pub valid_zones: Option<String>,
    pub nids: Vec<u16>,
    /// `phys_device` ("%d"): 0 but on s390x, where it is the storage increment number.
    pub phys_device: u64,
}

fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::Argument(format!("{}: {e}", path.display()))
}

fn at_err(dir: &Path, name: &str, e: rustix::io::Errno) -> Error {
    io_err(&dir.join(name), &std::io::Error::from(e))
}

/// A directory of the tree held open, so every entry is made relative to its fd
/// (`mkdirat`, `linkat`, `symlinkat`, `openat`): one short lookup per call instead of a walk
/// of the whole path from `/`.
struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Create (if need be) and open `root/rel` one component at a time, each made and
    /// opened relative to its parent without following symlinks: a symlink planted in the
    /// tree (say `sys` pointing elsewhere) is refused before anything is written through it.
    fn open(root: &Path, rel: &str) -> Result<Dir> {
        fs::create_dir_all(root).map_err(|e| io_err(root, &e))?;
        let mut dir = Dir {
            fd: openat(
                CWD,
                root,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(root, &e.into()))?,
            path: root.to_path_buf(),
        };
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            dir.mkdir(comp)?;
            let fd = openat(
                &dir.fd,
                comp,
                OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| at_err(&dir.path, comp, e))?;
            dir = Dir {
                fd,
                path: dir.path.join(comp),
            };
        }
        Ok(dir)
    }

    /// A directory entry (`root` and its parents may exist; the caller checked that the
    /// tree below is new); a symlink in its place is refused, so nothing is written outside
    /// the root.
    fn mkdir(&self, name: &str) -> Result<()> {
        match mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let st = statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| at_err(&self.path, name, e))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    Ok(())
                } else {
                    Err(Error::Argument(format!(
                        "{}: exists and is not a directory",
                        self.path.join(name).display()
                    )))
                }
            }
            Err(e) => Err(at_err(&self.path, name, e)),
        }
    }

    /// A new regular file with `text` and the attribute's `mode`: `O_CREAT|O_EXCL`, so an
    /// entry already there (a planted hard link, FIFO or symlink) is an error and nothing
    /// reached through a pre-existing inode is ever written.
    fn write(&self, name: &str, text: &str, mode: u32) -> Result<()> {
        let fd = openat(
            &self.fd,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| at_err(&self.path, name, e))?;
        let n = rustix::io::write(&fd, text.as_bytes()).map_err(|e| at_err(&self.path, name, e))?;
        if n == text.len() {
            Ok(())
        } else {
            Err(Error::Argument(format!(
                "{}: short write",
                self.path.join(name).display()
            )))
        }
    }

    /// Hard link `src` (in `from`) as `name` (a new entry).
    fn link(&self, from: &Dir, src: &str, name: &str) -> rustix::io::Result<()> {
        linkat(&from.fd, src, &self.fd, name, AtFlags::empty())
    }

    /// A new symlink.
    fn symlink(&self, target: &str, name: &str) -> Result<()> {
        symlinkat(target, &self.fd, name).map_err(|e| at_err(&self.path, name, e))
    }
}

/// Read-only attributes whose content repeats across blocks (removable, phys_device,
/// valid_zones: 0444 in drivers/base/memory.c, DEVICE_ATTR_RO) are hard links to one 0444
/// file per distinct value, kept in `root/.memscan-values` (outside `sys/`): one `linkat()`
/// per attribute instead of create, write and close. Readers see ordinary files with the
/// kernel's content. The writable ones (state, online: 0644, DEVICE_ATTR_RW) are each
/// block's own file, so a write to one block's `state` changes that block only.
///
/// Each worker thread links to its own copy of each value file: `linkat()` locks the inode it
/// links to (vfs_link), so one shared inode per value would make the threads queue on it.
/// A file system's limit on links per inode (ext4: 65,000) starts a new copy when reached.
/// What a value inode holds: a read-only file's text, or a symlink's target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Value {
    Text(String),
    Symlink(String),
}

struct Values {
    dir: Dir,
    /// Per slot, what its inodes hold.
    held: Vec<Value>,
    index: HashMap<Value, usize>,
    copies: usize,
    /// Per value and copy: the file now being linked to, and how many files it has had.
    current: Vec<Vec<RwLock<(String, u32)>>>,
    /// A limit on links per value file below the file system's (None: the file system's
    /// own, seen as EMLINK), so the rotation can be tested on any file system.
    link_limit: Option<u32>,
}

impl Values {
    fn new(dir: Dir, copies: usize, link_limit: Option<u32>) -> Values {
        Values {
            dir,
            held: Vec::new(),
            index: HashMap::new(),
            copies: copies.max(1),
            current: Vec::new(),
            link_limit,
        }
    }

    /// A fresh inode holding `value`: a read-only file, or a symlink.
    fn create(&self, name: &str, value: &Value) -> Result<()> {
        match value {
            Value::Text(text) => self.dir.write(name, text, RO),
            Value::Symlink(target) => self.dir.symlink(target, name),
        }
    }

    /// The slot of the value files holding `text`, written on first use (serial part).
    fn slot(&mut self, text: &str) -> Result<usize> {
        self.slot_of(Value::Text(text.to_string()))
    }

    /// The slot of symlinks to `target`: `linkat()` without AT_SYMLINK_FOLLOW links the
    /// symlink itself, so the blocks' `nodeN` links to one node share an inode.
    fn symlink_slot(&mut self, target: &str) -> Result<usize> {
        self.slot_of(Value::Symlink(target.to_string()))
    }

    fn slot_of(&mut self, value: Value) -> Result<usize> {
        if let Some(&k) = self.index.get(&value) {
            return Ok(k);
        }
        let k = self.held.len();
        let mut copies = Vec::with_capacity(self.copies);
        for c in 0..self.copies {
            let name = format!("v{k}.{c}");
            self.create(&name, &value)?;
            copies.push(RwLock::new((name, 0)));
        }
        self.held.push(value.clone());
        self.index.insert(value, k);
        self.current.push(copies);
        Ok(k)
    }

    /// Link value `k` as `name` in `dir` (parallel part), through the calling thread's copy.
    fn link(&self, k: usize, dir: &Dir, name: &str) -> Result<()> {
        let c = rayon::current_thread_index().unwrap_or(0) % self.copies;
        let copy = &self.current[k][c];
        loop {
            let src = copy
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .clone();
            let linked = match self.link_limit {
                // as the file system counts: every name of the inode, its own included (ext4
                // refuses a link when i_nlink has reached EXT4_LINK_MAX); each copy is linked
                // by one worker thread, so the check and the link do not race
                Some(limit) => {
                    match statat(&self.dir.fd, src.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if st.st_nlink >= u64::from(limit) => Err(Errno::MLINK),
                        Ok(_) => dir.link(&self.dir, &src, name),
                        Err(e) => Err(e),
                    }
                }
                None => dir.link(&self.dir, &src, name),
            };
            match linked {
                Ok(()) => return Ok(()),
                Err(Errno::MLINK) => {
                    // The file system's limit on links per inode (ext4: 65,000): the first
                    // thread to see it starts the next file for this copy.
                    let mut cur = copy.write().unwrap_or_else(PoisonError::into_inner);
                    if cur.0 == src {
                        cur.1 += 1;
                        let next = format!("v{k}.{c}-{}", cur.1);
                        self.create(&next, &self.held[k])?;
                        cur.0 = next;
                    }
                }
                Err(e) => return Err(at_err(&dir.path, name, e)),
            }
        }
    }
}

/// Modes of the kernel's attributes (drivers/base/memory.c, drivers/base/core.c `online`):
/// read-only ones 0444, `state` and `online` 0644.
const RO: u32 = 0o444;
const RW: u32 = 0o644;

/// Blocks per step of the pipeline in `write_tree`.
const CHUNK: usize = 4096;

/// Write `root/sys/devices/system/memory` (and `node/`) for `blocks`.
///
/// `root` must not hold a tree already (the Python caller refuses a non-empty target or
/// removes an earlier export whole): every entry is created new, and one already there is an
/// error, never written through.
///
/// Every block costs one `mkdirat`, three files written (`phys_index`, and the writable
/// `state` and `online`), one `linkat` per repeated read-only attribute and per node link
/// from the block, one `symlinkat` per node link to the block; the value file names are
/// resolved once per distinct value before the parallel part starts.
///
/// The entries made in shared directories (`memoryN` in `memory/`, `memoryN` in
/// `node/nodeX/`) lock that directory's inode, so two threads making them would queue on
/// one another. They are made by one task, a chunk ahead, while the other threads fill the
/// previous chunk's block directories (each its own directory, no shared lock).
pub fn write_tree(
    root: &Path,
    block_size: u64,
    blocks: &[BlockFiles],
    link_limit: Option<u32>,
    ctl: &crate::control::Control,
) -> Result<()> {
    ctl.set_total(blocks.len() as u64);
    let mem = Dir::open(root, "sys/devices/system/memory")?;
    let mut values = Values::new(
        Dir::open(root, ".memscan-values")?,
        rayon::current_num_threads(),
        link_limit,
    );
    mem.write("block_size_bytes", &format!("{block_size:x}\n"), RO)?;
    let mut nids: Vec<u16> = blocks.iter().flat_map(|b| b.nids.iter().copied()).collect();
    nids.sort_unstable();
    nids.dedup();
    let mut nodes: HashMap<u16, Dir> = HashMap::new();
    for n in nids {
        nodes.insert(
            n,
            Dir::open(root, &format!("sys/devices/system/node/node{n}"))?,
        );
    }
    let phys_device = values.slot("0\n")?;
    // memoryN/nodeX -> ../../node/nodeX, one shared symlink inode per node
    let mut node_links: HashMap<u16, usize> = HashMap::new();
    for &n in nodes.keys() {
        node_links.insert(n, values.symlink_slot(&format!("../../node/node{n}"))?);
    }
    // Value slots per block, resolved serially (few distinct values; no lock later).
    let mut slots: Vec<[Option<usize>; 2]> = Vec::with_capacity(blocks.len());
    for b in blocks {
        slots.push([
            b.removable
                .as_ref()
                .map(|r| values.slot(&format!("{r}\n")))
                .transpose()?,
            b.valid_zones
                .as_ref()
                .map(|z| values.slot(&format!("{z}\n")))
                .transpose()?,
        ]);
    }
    let values = &values;
    // shared directories: the block's directory and its link from each node
    let make_dirs = |chunk: &[BlockFiles]| -> Result<()> {
        for b in chunk {
            let d = format!("memory{}", b.block);
            mem.mkdir(&d)?;
            for n in &b.nids {
                nodes[n].symlink(&format!("../../memory/{d}"), &d)?;
            }
        }
        Ok(())
    };
    // inside the block's own directory
    let fill = |(b, [removable, zones]): (&BlockFiles, &[Option<usize>; 2])| -> Result<()> {
        let d = format!("memory{}", b.block);
        mem.write(
            &format!("{d}/phys_index"),
            &format!("{:08x}\n", b.block),
            RO,
        )?;
        mem.write(&format!("{d}/state"), &format!("{}\n", b.state), RW)?;
        let online = if b.state == "online" { "1\n" } else { "0\n" };
        mem.write(&format!("{d}/online"), online, RW)?;
        if b.phys_device != 0 {
            mem.write(
                &format!("{d}/phys_device"),
                &format!("{}\n", b.phys_device),
                RO,
            )?;
        }
        for (slot, attr) in [
            ((b.phys_device == 0).then_some(phys_device), "phys_device"),
            (*removable, "removable"),
            (*zones, "valid_zones"),
        ] {
            if let Some(k) = slot {
                values.link(k, &mem, &format!("{d}/{attr}"))?;
            }
        }
        for n in &b.nids {
            values.link(node_links[n], &mem, &format!("{d}/node{n}"))?;
        }
        Ok(())
    };
    let chunks: Vec<&[BlockFiles]> = blocks.chunks(CHUNK).collect();
    let chunk_slots: Vec<&[[Option<usize>; 2]]> = slots.chunks(CHUNK).collect();
    if let Some(first) = chunks.first() {
        make_dirs(first)?;
    }
    for (c, (chunk, their_slots)) in chunks.iter().zip(&chunk_slots).enumerate() {
        // between chunks of CHUNK blocks: Ctrl-C stops the export (the tree is left partial)
        if ctl.cancelled() {
            return Err(Error::Interrupted);
        }
        let (ahead, filled) = rayon::join(
            || chunks.get(c + 1).map_or(Ok(()), |next| make_dirs(next)),
            || {
                chunk
                    .par_iter()
                    .zip(their_slots.par_iter())
                    .try_for_each(fill)
            },
        );
        filled?;
        ahead?;
        ctl.advance(chunk.len() as u64);
    }
    Ok(())
}

/// Nanoseconds per read of one attribute file as a user-space client reads it: `openat`,
/// one `read` of up to a page, `close` (the syscalls lsmem and drmgr make per attribute).
/// Read-only (`O_RDONLY`); best of five rounds of `reads` reads.
pub fn time_attribute_reads(path: &Path, reads: u32) -> Result<f64> {
    let mut buf = [0u8; 4096];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        for _ in 0..reads.max(1) {
            let fd = openat(CWD, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| io_err(path, &e.into()))?;
            rustix::io::read(&fd, &mut buf).map_err(|e| io_err(path, &e.into()))?;
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / f64::from(reads.max(1)));
    }
    Ok(best)
}

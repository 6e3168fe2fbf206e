//! Writing a memory sysfs tree (the files lsmem reads), many blocks in parallel. The values
//! come from the caller; this only lays them out with the kernel's formats
//! (drivers/base/memory.c: `phys_index` "%08lx", `state`, `online`, `removable`,
//! `phys_device`, `valid_zones`, `nodeX` links both ways).

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// One block's attribute values.
#[derive(Debug, Clone)]
pub struct BlockFiles {
    pub block: u64,
    pub state: String,
    pub removable: Option<String>,
    pub valid_zones: Option<String>,
    pub nids: Vec<u16>,
}

fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::Argument(format!("{}: {e}", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| io_err(path, &e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_err(path, &e))
}

/// Files whose content repeats across blocks (state, online, removable, phys_device,
/// valid_zones) are hard links to one file per distinct value, kept in `root/.memscan-values`
/// (outside `sys/`): one `link()` per attribute instead of create, write and close. Readers
/// see ordinary files with the kernel's content.
struct Values {
    dir: std::path::PathBuf,
    made: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Values {
    fn link(&self, text: &str, dest: &Path) -> Result<()> {
        let name: String = text
            .trim_end()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let src = self.dir.join(format!("v-{name}-{}", text.len()));
        {
            let mut made = self
                .made
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if made.insert(src.display().to_string()) {
                write_file(&src, text)?;
            }
        }
        match fs::hard_link(&src, dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                fs::remove_file(dest).map_err(|e| io_err(dest, &e))?;
                fs::hard_link(&src, dest).map_err(|e| io_err(dest, &e))
            }
            Err(e) => Err(io_err(dest, &e)),
        }
    }
}

fn symlink_once(target: &str, link: &Path) -> Result<()> {
    match symlink(target, link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(link, &e)),
    }
}

/// Write `root/sys/devices/system/memory` (and `node/`) for `blocks`.
pub fn write_tree(root: &Path, block_size: u64, blocks: &[BlockFiles]) -> Result<()> {
    let mem = root.join("sys/devices/system/memory");
    let node = root.join("sys/devices/system/node");
    let values = Values {
        dir: root.join(".memscan-values"),
        made: std::sync::Mutex::default(),
    };
    for d in [&mem, &node, &values.dir] {
        fs::create_dir_all(d).map_err(|e| io_err(d, &e))?;
    }
    write_file(&mem.join("block_size_bytes"), &format!("{block_size:x}\n"))?;
    let mut nids: Vec<u16> = blocks.iter().flat_map(|b| b.nids.iter().copied()).collect();
    nids.sort_unstable();
    nids.dedup();
    for n in nids {
        let d = node.join(format!("node{n}"));
        fs::create_dir_all(&d).map_err(|e| io_err(&d, &e))?;
    }
    blocks.par_iter().try_for_each(|b| {
        let d = mem.join(format!("memory{}", b.block));
        match fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&d, &e)),
        }
        write_file(&d.join("phys_index"), &format!("{:08x}\n", b.block))?;
        values.link(&format!("{}\n", b.state), &d.join("state"))?;
        values.link(
            if b.state == "online" { "1\n" } else { "0\n" },
            &d.join("online"),
        )?;
        values.link("0\n", &d.join("phys_device"))?;
        if let Some(r) = &b.removable {
            values.link(&format!("{r}\n"), &d.join("removable"))?;
        }
        if let Some(z) = &b.valid_zones {
            values.link(&format!("{z}\n"), &d.join("valid_zones"))?;
        }
        for n in &b.nids {
            symlink_once(&format!("../../node/node{n}"), &d.join(format!("node{n}")))?;
            symlink_once(
                &format!("../../memory/memory{}", b.block),
                &node.join(format!("node{n}/memory{}", b.block)),
            )?;
        }
        Ok(())
    })
}

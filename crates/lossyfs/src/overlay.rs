//! The pending overlay: what a lose-unsynced filesystem shows, what a fsync makes durable
//! and what a power cut ("drop") discards. Pure state machine, no I/O: operations return the
//! [`Op`]s the adapter must apply to the backing directory (which always holds exactly the
//! durable state), and reads get the durable bytes through a callback.
//!
//! The rule (a journaling file system with ordered data, strictly read):
//! - a file's data and size become durable when that file is fsynced;
//! - a name change (create, mkdir, rename, unlink, rmdir) becomes durable when its parent
//!   directory is fsynced, and not before — fsyncing a new file does not make its name durable;
//! - a drop discards everything else: the view reverts to the backing directory.
//!
//! Backing layout: a node with a durable name lives at its durable path; a node whose data is
//! durable but whose name is not (an unlinked inode, in ext4's terms) lives under
//! [`ORPHANS`]/<ino>, and orphans are freed by a drop, like unlinked inodes by fsck.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub type Ino = u64;
/// The root directory's inode number (FUSE's).
pub const ROOT: Ino = 1;
/// Backing subdirectory holding durable nodes without a durable name.
pub const ORPHANS: &str = ".lossyfs-orphans";
/// Root entries of the backing directory with this prefix belong to lossyfs and are hidden.
pub const RESERVED_PREFIX: &str = ".lossyfs";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("rename across directories is not supported")]
    CrossDir,
    #[error("invalid argument")]
    Invalid,
    /// The directory's durable entries must be loaded from the backing directory first
    /// ([`Overlay::load_path`], [`Overlay::load`]); then retry the operation.
    #[error("directory {0} not loaded")]
    NotLoaded(Ino),
    #[error("backing I/O error {0}")]
    Io(i32),
}

impl Error {
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Exists => libc::EEXIST,
            Error::NotDir => libc::ENOTDIR,
            Error::IsDir => libc::EISDIR,
            Error::NotEmpty => libc::ENOTEMPTY,
            Error::CrossDir => libc::EXDEV,
            Error::Invalid => libc::EINVAL,
            Error::NotLoaded(_) => libc::EIO,
            Error::Io(e) => *e,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Reads durable bytes: `(backing path, offset, buffer to fill exactly)`.
pub type BackingRead<'a> = dyn FnMut(&Path, u64, &mut [u8]) -> std::io::Result<()> + 'a;

/// A change to apply to the backing directory, in order. Paths are relative to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CreateFile(PathBuf),
    Mkdir(PathBuf),
    Rename(PathBuf, PathBuf),
    RemoveFile(PathBuf),
    RemoveAll(PathBuf),
    Write(PathBuf, u64, Vec<u8>),
    SetLen(PathBuf, u64),
}

/// One durable entry found in a backing directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: OsString,
    pub kind: Kind,
    pub size: u64,
    pub meta: Meta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub meta: Meta,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// Files whose data or size differ from their durable state.
    pub files: u64,
    /// Directories whose entries differ from their durable entries.
    pub dirs: u64,
    /// Bytes written and not yet fsynced.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct FileData {
    durable_size: u64,
    size: u64,
    /// Durable bytes at or past this offset were truncated away (read as zeros).
    hide_from: u64,
    /// Unsynced writes: non-overlapping, non-adjacent extents by start offset.
    extents: BTreeMap<u64, Vec<u8>>,
}

impl FileData {
    fn is_pending(&self) -> bool {
        !self.extents.is_empty()
            || self.size != self.durable_size
            || self.hide_from < self.durable_size
    }

    fn write(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = off + data.len() as u64;
        // Merge with an extent that starts at or before `off` and reaches it (the append case).
        let (start, mut buf) = match self.extents.range(..=off).next_back() {
            Some((&s, v)) if s + v.len() as u64 >= off => {
                let v = self.extents.remove(&s).unwrap_or_default();
                (s, v)
            }
            _ => (off, Vec::with_capacity(data.len())),
        };
        let at = (off - start) as usize;
        let overlap = (buf.len() - at).min(data.len());
        buf[at..at + overlap].copy_from_slice(&data[..overlap]);
        buf.extend_from_slice(&data[overlap..]);
        // Extents starting inside (off, end] are superseded up to `end`; keep their tails.
        let later: Vec<u64> = self.extents.range(off + 1..=end).map(|(&s, _)| s).collect();
        for s in later {
            if let Some(v) = self.extents.remove(&s) {
                let vend = s + v.len() as u64;
                if vend > end {
                    buf.extend_from_slice(&v[(end - s) as usize..]);
                }
            }
        }
        self.extents.insert(start, buf);
        self.size = self.size.max(end);
    }

    fn truncate(&mut self, size: u64) {
        if size < self.size {
            let cut: Vec<u64> = self.extents.range(size..).map(|(&s, _)| s).collect();
            for s in cut {
                self.extents.remove(&s);
            }
            if let Some((&s, v)) = self.extents.range_mut(..size).next_back() {
                if s + v.len() as u64 > size {
                    v.truncate((size - s) as usize);
                }
            }
            self.hide_from = self.hide_from.min(size);
        }
        self.size = size;
    }

    fn read(
        &self,
        path: &Path,
        off: u64,
        len: u32,
        backing: &mut BackingRead<'_>,
    ) -> Result<Vec<u8>> {
        if off >= self.size {
            return Ok(Vec::new());
        }
        let end = self.size.min(off + len as u64);
        let mut buf = vec![0u8; (end - off) as usize];
        let durable_end = self.durable_size.min(self.hide_from).min(end);
        if durable_end > off {
            backing(path, off, &mut buf[..(durable_end - off) as usize])
                .map_err(|e| Error::Io(e.raw_os_error().unwrap_or(libc::EIO)))?;
        }
        let first = self
            .extents
            .range(..=off)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(off);
        for (&s, v) in self.extents.range(first..end) {
            let vend = s + v.len() as u64;
            let (a, b) = (s.max(off), vend.min(end));
            if a < b {
                buf[(a - off) as usize..(b - off) as usize]
                    .copy_from_slice(&v[(a - s) as usize..(b - s) as usize]);
            }
        }
        Ok(buf)
    }
}

#[derive(Debug, Default)]
struct DirData {
    loaded: bool,
    entries: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    meta: Meta,
    /// The visible name.
    link: Option<(Ino, OsString)>,
    /// The durable name (the backing path is built from these).
    durable_link: Option<(Ino, OsString)>,
    /// Present in the backing directory (at its durable path, or as an orphan).
    materialized: bool,
    open: u32,
    file: FileData,
    dir: DirData,
}

impl Node {
    fn new(kind: Kind, meta: Meta) -> Node {
        Node {
            kind,
            meta,
            link: None,
            durable_link: None,
            materialized: false,
            open: 0,
            file: FileData::default(),
            dir: DirData::default(),
        }
    }
}

/// The whole file system's pending state.
#[derive(Debug)]
pub struct Overlay {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
}

impl Overlay {
    /// A fresh view of the backing directory (nothing pending; the root not yet loaded).
    pub fn new(root_meta: Meta) -> Overlay {
        let mut root = Node::new(Kind::Dir, root_meta);
        root.materialized = true;
        Overlay {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
        }
    }

    fn node(&self, ino: Ino) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(Error::NotFound)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Error::NotFound)
    }

    fn dir(&self, ino: Ino) -> Result<&DirData> {
        let n = self.node(ino)?;
        if n.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if !n.dir.loaded {
            return Err(Error::NotLoaded(ino));
        }
        Ok(&n.dir)
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirData> {
        self.dir(ino)?;
        Ok(&mut self.node_mut(ino)?.dir)
    }

    /// The node's current backing path (meaningful once materialized).
    fn path(&self, ino: Ino) -> PathBuf {
        if ino == ROOT {
            return PathBuf::new();
        }
        match self.nodes.get(&ino).and_then(|n| n.durable_link.as_ref()) {
            Some((p, name)) => self.path(*p).join(name),
            None => Path::new(ORPHANS).join(ino.to_string()),
        }
    }

    /// If `ino` is a directory whose durable entries are not loaded yet, the backing path to
    /// list for [`Overlay::load`].
    pub fn load_path(&self, ino: Ino) -> Option<PathBuf> {
        let n = self.nodes.get(&ino)?;
        (n.kind == Kind::Dir && !n.dir.loaded).then(|| self.path(ino))
    }

    /// Records the durable entries read from a directory's backing path.
    pub fn load(&mut self, dir: Ino, entries: Vec<Loaded>) -> Result<()> {
        if self.node(dir)?.dir.loaded {
            return Ok(());
        }
        let mut map = BTreeMap::new();
        for e in entries {
            if dir == ROOT && e.name.to_string_lossy().starts_with(RESERVED_PREFIX) {
                continue;
            }
            let ino = self.next_ino;
            self.next_ino += 1;
            let mut n = Node::new(e.kind, e.meta);
            n.link = Some((dir, e.name.clone()));
            n.durable_link = Some((dir, e.name.clone()));
            n.materialized = true;
            n.file.durable_size = e.size;
            n.file.size = e.size;
            n.file.hide_from = u64::MAX;
            self.nodes.insert(ino, n);
            map.insert(e.name, ino);
        }
        let d = &mut self.node_mut(dir)?.dir;
        d.entries = map.clone();
        d.durable = map;
        d.loaded = true;
        Ok(())
    }

    pub fn attr(&self, ino: Ino) -> Result<Attr> {
        let n = self.node(ino)?;
        Ok(Attr {
            ino,
            kind: n.kind,
            size: n.file.size,
            meta: n.meta,
        })
    }

    pub fn lookup(&self, dir: Ino, name: &OsStr) -> Result<Ino> {
        self.dir(dir)?
            .entries
            .get(name)
            .copied()
            .ok_or(Error::NotFound)
    }

    /// Visible entries of a directory, by name.
    pub fn list(&self, dir: Ino) -> Result<Vec<(OsString, Ino, Kind)>> {
        let d = self.dir(dir)?;
        Ok(d.entries
            .iter()
            .map(|(name, &ino)| {
                (
                    name.clone(),
                    ino,
                    self.nodes.get(&ino).map_or(Kind::File, |n| n.kind),
                )
            })
            .collect())
    }

    /// The parent of a directory, for "..".
    pub fn parent(&self, ino: Ino) -> Ino {
        self.nodes
            .get(&ino)
            .and_then(|n| n.link.as_ref())
            .map_or(ROOT, |(p, _)| *p)
    }

    /// Creates a file or directory (pending until the parent is fsynced).
    pub fn create(&mut self, dir: Ino, name: &OsStr, kind: Kind, meta: Meta) -> Result<Ino> {
        if name.is_empty() || name == "." || name == ".." {
            return Err(Error::Invalid);
        }
        if self.dir(dir)?.entries.contains_key(name) {
            return Err(Error::Exists);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut n = Node::new(kind, meta);
        n.link = Some((dir, name.to_owned()));
        n.dir.loaded = true;
        self.nodes.insert(ino, n);
        self.dir_mut(dir)?.entries.insert(name.to_owned(), ino);
        Ok(ino)
    }

    pub fn open(&mut self, ino: Ino) -> Result<()> {
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    /// The last close of a handle; frees the node if nothing names it any more.
    pub fn release(&mut self, ino: Ino) -> Vec<Op> {
        let mut ops = Vec::new();
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open = n.open.saturating_sub(1);
            self.collect(ino, &mut ops);
        }
        ops
    }

    pub fn write(&mut self, ino: Ino, off: u64, data: &[u8], now: SystemTime) -> Result<()> {
        let n = self.node_mut(ino)?;
        if n.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        n.file.write(off, data);
        n.meta.mtime = now;
        Ok(())
    }

    pub fn truncate(&mut self, ino: Ino, size: u64, now: SystemTime) -> Result<()> {
        let n = self.node_mut(ino)?;
        if n.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        n.file.truncate(size);
        n.meta.mtime = now;
        Ok(())
    }

    /// chmod/chown/utimes: kept in memory only (the model is about data and names).
    pub fn set_meta(&mut self, ino: Ino, f: impl FnOnce(&mut Meta)) -> Result<()> {
        f(&mut self.node_mut(ino)?.meta);
        Ok(())
    }

    /// Reads what the view shows: unsynced writes over the durable bytes, fetched from the
    /// backing file through `backing(path, offset, buf)`.
    pub fn read(
        &self,
        ino: Ino,
        off: u64,
        len: u32,
        backing: &mut BackingRead<'_>,
    ) -> Result<Vec<u8>> {
        let n = self.node(ino)?;
        if n.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        n.file.read(&self.path(ino), off, len, backing)
    }

    pub fn unlink(&mut self, dir: Ino, name: &OsStr) -> Result<Vec<Op>> {
        let ino = self.lookup(dir, name)?;
        if self.node(ino)?.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        self.unlink_entry(dir, name, ino)
    }

    pub fn rmdir(&mut self, dir: Ino, name: &OsStr) -> Result<Vec<Op>> {
        let ino = self.lookup(dir, name)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(Error::NotEmpty);
        }
        self.unlink_entry(dir, name, ino)
    }

    fn unlink_entry(&mut self, dir: Ino, name: &OsStr, ino: Ino) -> Result<Vec<Op>> {
        self.dir_mut(dir)?.entries.remove(name);
        self.node_mut(ino)?.link = None;
        let mut ops = Vec::new();
        self.collect(ino, &mut ops);
        Ok(ops)
    }

    /// Renames within one directory (a cross-directory rename is refused with EXDEV: the
    /// strict per-directory rule cannot make it atomic, and Arctern does not need it).
    pub fn rename(
        &mut self,
        dir: Ino,
        name: &OsStr,
        newdir: Ino,
        newname: &OsStr,
        noreplace: bool,
    ) -> Result<Vec<Op>> {
        let ino = self.lookup(dir, name)?;
        if dir != newdir {
            return Err(Error::CrossDir);
        }
        if newname.is_empty() || newname == "." || newname == ".." {
            return Err(Error::Invalid);
        }
        if name == newname {
            return Ok(Vec::new());
        }
        let kind = self.node(ino)?.kind;
        let displaced = self.dir(dir)?.entries.get(newname).copied();
        if let Some(t) = displaced {
            if noreplace {
                return Err(Error::Exists);
            }
            match (kind, self.node(t)?.kind) {
                (Kind::Dir, Kind::Dir) => {
                    if !self.dir(t)?.entries.is_empty() {
                        return Err(Error::NotEmpty);
                    }
                }
                (Kind::Dir, Kind::File) => return Err(Error::NotDir),
                (Kind::File, Kind::Dir) => return Err(Error::IsDir),
                (Kind::File, Kind::File) => {}
            }
        }
        let d = self.dir_mut(dir)?;
        d.entries.remove(name);
        d.entries.insert(newname.to_owned(), ino);
        self.node_mut(ino)?.link = Some((dir, newname.to_owned()));
        let mut ops = Vec::new();
        if let Some(t) = displaced {
            self.node_mut(t)?.link = None;
            self.collect(t, &mut ops);
        }
        Ok(ops)
    }

    /// Gives the node a backing presence (empty file or directory) if it has none.
    fn materialize(&mut self, ino: Ino, ops: &mut Vec<Op>) {
        let path = self.path(ino);
        if let Some(n) = self.nodes.get_mut(&ino) {
            if !n.materialized {
                n.materialized = true;
                n.file.durable_size = 0;
                n.file.hide_from = u64::MAX;
                ops.push(match n.kind {
                    Kind::File => Op::CreateFile(path),
                    Kind::Dir => Op::Mkdir(path),
                });
            }
        }
    }

    /// Frees a node that is neither visible, durable nor open.
    fn collect(&mut self, ino: Ino, ops: &mut Vec<Op>) {
        let Some(n) = self.nodes.get(&ino) else {
            return;
        };
        if ino == ROOT || n.link.is_some() || n.durable_link.is_some() || n.open > 0 {
            return;
        }
        if n.materialized {
            let path = self.path(ino);
            ops.push(match n.kind {
                Kind::File => Op::RemoveFile(path),
                Kind::Dir => Op::RemoveAll(path),
            });
        }
        self.forget_subtree(ino);
    }

    /// Drops a node and, for a directory, the durable-only entries whose backing went with it.
    fn forget_subtree(&mut self, ino: Ino) {
        let Some(n) = self.nodes.remove(&ino) else {
            return;
        };
        for (_, child) in n.dir.durable {
            if let Some(c) = self.nodes.get_mut(&child) {
                c.durable_link = None;
                c.materialized = false;
                c.file.durable_size = 0;
                if c.link.is_none() && c.open == 0 {
                    self.forget_subtree(child);
                }
            }
        }
    }

    /// fsync/fdatasync of a file: its data and size become durable (its name does not).
    pub fn fsync(&mut self, ino: Ino) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        if self.node(ino)?.kind == Kind::Dir {
            return self.fsyncdir(ino);
        }
        self.materialize(ino, &mut ops);
        let path = self.path(ino);
        let f = &mut self.node_mut(ino)?.file;
        if f.hide_from < f.durable_size {
            ops.push(Op::SetLen(path.clone(), f.hide_from));
        }
        for (off, data) in std::mem::take(&mut f.extents) {
            ops.push(Op::Write(path.clone(), off, data));
        }
        if f.size != f.durable_size || f.hide_from < f.durable_size {
            ops.push(Op::SetLen(path, f.size));
        }
        f.durable_size = f.size;
        f.hide_from = u64::MAX;
        Ok(ops)
    }

    /// fsync of a directory: its entries (names) become durable as they are now visible.
    pub fn fsyncdir(&mut self, dir: Ino) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        let d = match self.dir(dir) {
            Ok(d) => d,
            Err(Error::NotLoaded(_)) => return Ok(ops),
            Err(e) => return Err(e),
        };
        if d.entries == d.durable {
            return Ok(ops);
        }
        let gone: Vec<(OsString, Ino)> = d
            .durable
            .iter()
            .filter(|(name, ino)| d.entries.get(*name) != Some(ino))
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        let added: Vec<(OsString, Ino)> = d
            .entries
            .iter()
            .filter(|(name, ino)| d.durable.get(*name) != Some(ino))
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        self.materialize(dir, &mut ops);
        // Durable names that changed: their nodes become orphans for now.
        for (name, ino) in &gone {
            let from = self.path(*ino);
            self.dir_mut(dir)?.durable.remove(name);
            if let Some(n) = self.nodes.get_mut(ino) {
                n.durable_link = None;
            }
            ops.push(Op::Rename(from, self.path(*ino)));
        }
        for (name, ino) in &added {
            self.materialize(*ino, &mut ops);
            let from = self.path(*ino);
            self.dir_mut(dir)?.durable.insert(name.clone(), *ino);
            if let Some(n) = self.nodes.get_mut(ino) {
                n.durable_link = Some((dir, name.clone()));
            }
            ops.push(Op::Rename(from, self.path(*ino)));
        }
        for (_, ino) in gone {
            self.collect(ino, &mut ops);
        }
        Ok(ops)
    }

    pub fn pending(&self) -> Pending {
        let mut p = Pending::default();
        for n in self.nodes.values() {
            match n.kind {
                Kind::File if n.file.is_pending() => {
                    p.files += 1;
                    p.bytes += n.file.extents.values().map(|v| v.len() as u64).sum::<u64>();
                }
                Kind::Dir if n.dir.entries != n.dir.durable => p.dirs += 1,
                _ => {}
            }
        }
        p
    }

    /// A power cut: every pending change is discarded and orphans are freed. Inode numbers
    /// are never reused, so handles and inodes the kernel still holds fail with ENOENT.
    pub fn drop_pending(&mut self) -> Vec<Op> {
        let root_meta = self.nodes.get(&ROOT).map(|n| n.meta);
        let next = self.next_ino;
        if let Some(meta) = root_meta {
            *self = Overlay::new(meta);
        }
        self.next_ino = next;
        vec![
            Op::RemoveAll(PathBuf::from(ORPHANS)),
            Op::Mkdir(PathBuf::from(ORPHANS)),
        ]
    }
}

#[cfg(test)]
mod tests;

//! The FUSE adapter: translates kernel requests into [`Overlay`] calls and applies the
//! resulting [`Op`]s to the backing directory. All state sits behind one mutex; backing I/O
//! happens under it so that paths stay valid while ops run in order.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::overlay::{self, Attr, Error, Ino, Kind, Loaded, Meta, Op, Overlay, Pending};

/// Nothing is cached by the kernel: a drop must be visible at once.
const TTL: Duration = Duration::ZERO;

/// The state shared by the FUSE threads and the control socket.
pub struct Shared {
    backing: PathBuf,
    overlay: Mutex<Overlay>,
    fsync_delay_ms: AtomicU64,
    drops: AtomicU64,
}

fn meta_of(m: &fs::Metadata) -> Meta {
    Meta {
        perm: (m.mode() & 0o7777) as u16,
        uid: m.uid(),
        gid: m.gid(),
        mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

fn io_errno(e: &io::Error) -> Error {
    Error::Io(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Shared {
    /// Opens a backing directory: leftover orphans of an earlier run are freed (they were
    /// unlinked inodes at the "power cut" that ended it).
    pub fn new(backing: &Path, fsync_delay_ms: u64) -> io::Result<Shared> {
        let backing = backing.canonicalize()?;
        let orphans = backing.join(overlay::ORPHANS);
        if orphans.exists() {
            fs::remove_dir_all(&orphans)?;
        }
        fs::create_dir(&orphans)?;
        let root = meta_of(&fs::metadata(&backing)?);
        Ok(Shared {
            backing,
            overlay: Mutex::new(Overlay::new(root)),
            fsync_delay_ms: AtomicU64::new(fsync_delay_ms),
            drops: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Overlay> {
        // A panic elsewhere must not wedge the mount; the overlay stays consistent per call.
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f`, first loading any directory it needs from the backing directory.
    fn run<T>(&self, mut f: impl FnMut(&mut Overlay) -> overlay::Result<T>) -> overlay::Result<T> {
        let mut o = self.lock();
        self.run_locked(&mut o, &mut f)
    }

    fn run_locked<T>(
        &self,
        o: &mut Overlay,
        f: &mut impl FnMut(&mut Overlay) -> overlay::Result<T>,
    ) -> overlay::Result<T> {
        loop {
            match f(o) {
                Err(Error::NotLoaded(d)) => {
                    let Some(rel) = o.load_path(d) else {
                        return Err(Error::Io(libc::EIO));
                    };
                    let entries = self.list_backing(&rel).map_err(|e| io_errno(&e))?;
                    o.load(d, entries)?;
                }
                r => return r,
            }
        }
    }

    /// Runs an operation that changes the backing directory and applies its ops.
    fn run_ops(
        &self,
        mut f: impl FnMut(&mut Overlay) -> overlay::Result<Vec<Op>>,
    ) -> overlay::Result<()> {
        let mut o = self.lock();
        let ops = self.run_locked(&mut o, &mut f)?;
        self.apply(ops).map_err(|e| {
            eprintln!("lossyfs: applying to the backing directory failed: {e}");
            io_errno(&e)
        })
    }

    fn list_backing(&self, rel: &Path) -> io::Result<Vec<Loaded>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.backing.join(rel))? {
            let e = e?;
            let m = e.metadata()?;
            let kind = if m.is_dir() {
                Kind::Dir
            } else if m.is_file() {
                Kind::File
            } else {
                continue; // symlinks and specials are not modelled
            };
            out.push(Loaded {
                name: e.file_name(),
                kind,
                size: m.len(),
                meta: meta_of(&m),
            });
        }
        Ok(out)
    }

    fn apply(&self, ops: Vec<Op>) -> io::Result<()> {
        let at = |p: &Path| self.backing.join(p);
        for op in ops {
            match op {
                Op::CreateFile(p) => {
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(at(&p))?;
                }
                Op::Mkdir(p) => fs::create_dir(at(&p))?,
                Op::Rename(a, b) => fs::rename(at(&a), at(&b))?,
                Op::RemoveFile(p) => fs::remove_file(at(&p))?,
                Op::RemoveAll(p) => match fs::remove_dir_all(at(&p)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
                Op::Write(p, off, data) => OpenOptions::new()
                    .write(true)
                    .open(at(&p))?
                    .write_all_at(&data, off)?,
                Op::SetLen(p, len) => OpenOptions::new().write(true).open(at(&p))?.set_len(len)?,
            }
        }
        Ok(())
    }

    /// Discards every pending change, as a power cut would.
    pub fn drop_pending(&self) -> io::Result<()> {
        let mut o = self.lock();
        let ops = o.drop_pending();
        self.apply(ops)?;
        self.drops.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn status(&self) -> (Pending, u64) {
        (self.lock().pending(), self.drops.load(Ordering::Relaxed))
    }

    pub fn set_fsync_delay_ms(&self, ms: u64) {
        self.fsync_delay_ms.store(ms, Ordering::Relaxed);
    }

    fn fsync_delay(&self) {
        let ms = self.fsync_delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    fn read_backing(&self, rel: &Path, off: u64, buf: &mut [u8]) -> io::Result<()> {
        File::open(self.backing.join(rel))?.read_exact_at(buf, off)
    }
}

/// The FUSE file system over a [`Shared`] state.
pub struct LossyFs(pub std::sync::Arc<Shared>);

fn file_attr(a: &Attr) -> FileAttr {
    let (kind, nlink) = match a.kind {
        Kind::File => (FileType::RegularFile, 1),
        Kind::Dir => (FileType::Directory, 2),
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.meta.mtime,
        mtime: a.meta.mtime,
        ctime: a.meta.mtime,
        crtime: a.meta.mtime,
        kind,
        perm: a.meta.perm,
        nlink,
        uid: a.meta.uid,
        gid: a.meta.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: Error) -> Errno {
    Errno::from_i32(e.errno())
}

fn new_meta(req: &Request, mode: u32, umask: u32) -> Meta {
    Meta {
        perm: (mode & !umask & 0o7777) as u16,
        uid: req.uid(),
        gid: req.gid(),
        mtime: SystemTime::now(),
    }
}

impl LossyFs {
    fn entry(&self, r: overlay::Result<Ino>, reply: ReplyEntry) {
        match r.and_then(|ino| self.0.lock().attr(ino)) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: Kind,
        mode: u32,
        umask: u32,
    ) -> overlay::Result<Ino> {
        let meta = new_meta(req, mode, umask);
        self.0.run(|o| o.create(parent.0, name, kind, meta))
    }

    fn empty(reply: ReplyEmpty, r: overlay::Result<()>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for LossyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(self.0.run(|o| o.lookup(parent.0, name)), reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.lock().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut o = self.0.lock();
        let now = SystemTime::now();
        let r = (|| {
            if let Some(size) = size {
                o.truncate(ino.0, size, now)?;
            }
            o.set_meta(ino.0, |m| {
                if let Some(mode) = mode {
                    m.perm = (mode & 0o7777) as u16;
                }
                if let Some(uid) = uid {
                    m.uid = uid;
                }
                if let Some(gid) = gid {
                    m.gid = gid;
                }
                match mtime {
                    Some(TimeOrNow::SpecificTime(t)) => m.mtime = t,
                    Some(TimeOrNow::Now) => m.mtime = now,
                    None => {}
                }
            })?;
            o.attr(ino.0)
        })();
        match r {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            reply.error(Errno::from_i32(libc::EPERM));
            return;
        }
        self.entry(self.make(req, parent, name, Kind::File, mode, umask), reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.entry(self.make(req, parent, name, Kind::Dir, mode, umask), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.0.run_ops(|o| o.unlink(parent.0, name)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.0.run_ops(|o| o.rmdir(parent.0, name)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::from_i32(libc::EINVAL));
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        Self::empty(
            reply,
            self.0
                .run_ops(|o| o.rename(parent.0, name, newparent.0, newname, noreplace)),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.lock().open(ino.0) {
            // direct_io: no page cache, so a drop is seen by the next read.
            Ok(()) => reply.opened(FileHandle(ino.0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self
            .make(req, parent, name, Kind::File, mode, umask)
            .and_then(|ino| {
                let mut o = self.0.lock();
                o.open(ino)?;
                o.attr(ino)
            });
        match r {
            Ok(a) => reply.created(
                &TTL,
                &file_attr(&a),
                Generation(0),
                FileHandle(a.ino),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let o = self.0.lock();
        match o.read(ino.0, offset, size, &mut |p, off, buf| {
            self.0.read_backing(p, off, buf)
        }) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.0.lock().write(ino.0, offset, data, SystemTime::now()) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(reply, self.0.run_ops(|o| Ok(o.release(ino.0))));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.0.fsync_delay();
        Self::empty(reply, self.0.run_ops(|o| o.fsync(ino.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.lock().attr(ino.0) {
            Ok(a) if a.kind == Kind::Dir => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::from_i32(libc::ENOTDIR)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.0.run(|o| Ok((o.list(ino.0)?, o.parent(ino.0))));
        let (entries, parent) = match listed {
            Ok(x) => x,
            Err(e) => return reply.error(errno(e)),
        };
        let dots = [
            (OsStr::new(".").to_owned(), ino.0, Kind::Dir),
            (OsStr::new("..").to_owned(), parent, Kind::Dir),
        ];
        for (i, (name, child, kind)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            let ft = if kind == Kind::Dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(child), i as u64 + 1, ft, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.0.fsync_delay();
        Self::empty(reply, self.0.run_ops(|o| o.fsyncdir(ino.0)));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match backing_statvfs(&self.0.backing) {
            Ok(s) => reply.statfs(s.0, s.1, s.2, s.3, s.4, s.5, 255, s.5),
            Err(_) => reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    /// Mode 0 (allocate, extend the size) is a pending size change; others are unsupported.
    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            reply.error(Errno::from_i32(libc::EOPNOTSUPP));
            return;
        }
        let mut o = self.0.lock();
        let r = o.attr(ino.0).and_then(|a| {
            if offset + length > a.size {
                o.truncate(ino.0, offset + length, SystemTime::now())
            } else {
                Ok(())
            }
        });
        Self::empty(reply, r);
    }
}

/// (blocks, bfree, bavail, files, ffree, bsize) of the backing file system.
fn backing_statvfs(path: &Path) -> io::Result<(u64, u64, u64, u64, u64, u32)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        s.f_blocks,
        s.f_bfree,
        s.f_bavail,
        s.f_files,
        s.f_ffree,
        s.f_frsize as u32,
    ))
}

//! The overlay against an in-memory fake of the backing directory: no I/O.

use super::*;
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
}

/// The backing directory as path -> entry ("" is the root).
#[derive(Debug, Default)]
struct Fake {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Fake {
    fn new() -> Fake {
        let mut f = Fake::default();
        f.entries.insert(PathBuf::new(), Entry::Dir);
        f.entries.insert(PathBuf::from(ORPHANS), Entry::Dir);
        f
    }

    fn apply(&mut self, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::CreateFile(p) => {
                    assert!(
                        self.entries.contains_key(p.parent().unwrap()),
                        "no parent for {p:?}"
                    );
                    assert!(
                        self.entries
                            .insert(p.clone(), Entry::File(Vec::new()))
                            .is_none(),
                        "{p:?} exists"
                    );
                }
                Op::Mkdir(p) => {
                    assert!(
                        self.entries.insert(p.clone(), Entry::Dir).is_none(),
                        "{p:?} exists"
                    );
                }
                Op::Rename(a, b) => {
                    assert!(self.entries.contains_key(&a), "rename of missing {a:?}");
                    assert!(!self.entries.contains_key(&b), "rename over {b:?}");
                    let moved: Vec<PathBuf> = self
                        .entries
                        .keys()
                        .filter(|k| k.starts_with(&a))
                        .cloned()
                        .collect();
                    for k in moved {
                        let v = self.entries.remove(&k).unwrap();
                        let rest = k.strip_prefix(&a).unwrap();
                        let nk = if rest.as_os_str().is_empty() {
                            b.clone()
                        } else {
                            b.join(rest)
                        };
                        self.entries.insert(nk, v);
                    }
                }
                Op::RemoveFile(p) => {
                    assert!(
                        matches!(self.entries.remove(&p), Some(Entry::File(_))),
                        "remove {p:?}"
                    );
                }
                Op::RemoveAll(p) => {
                    let gone: Vec<PathBuf> = self
                        .entries
                        .keys()
                        .filter(|k| k.starts_with(&p))
                        .cloned()
                        .collect();
                    for k in gone {
                        self.entries.remove(&k);
                    }
                }
                Op::Write(p, off, data) => match self.entries.get_mut(&p) {
                    Some(Entry::File(v)) => {
                        let end = off as usize + data.len();
                        if v.len() < end {
                            v.resize(end, 0);
                        }
                        v[off as usize..end].copy_from_slice(&data);
                    }
                    e => panic!("write to {p:?}: {e:?}"),
                },
                Op::SetLen(p, len) => match self.entries.get_mut(&p) {
                    Some(Entry::File(v)) => v.resize(len as usize, 0),
                    e => panic!("set_len of {p:?}: {e:?}"),
                },
            }
        }
    }

    fn list(&self, dir: &Path) -> Vec<Loaded> {
        self.entries
            .iter()
            .filter(|(k, _)| k.parent() == Some(dir) && k.as_os_str() != dir.as_os_str())
            .map(|(k, v)| Loaded {
                name: k.file_name().unwrap().to_owned(),
                kind: if *v == Entry::Dir {
                    Kind::Dir
                } else {
                    Kind::File
                },
                size: match v {
                    Entry::File(d) => d.len() as u64,
                    Entry::Dir => 0,
                },
                meta: meta(),
            })
            .collect()
    }
}

fn meta() -> Meta {
    Meta {
        perm: 0o644,
        uid: 0,
        gid: 0,
        mtime: UNIX_EPOCH,
    }
}

/// An overlay and its fake backing; runs operations the way the FUSE adapter does.
struct Fs {
    o: Overlay,
    b: Fake,
}

impl Fs {
    fn new() -> Fs {
        Fs {
            o: Overlay::new(meta()),
            b: Fake::new(),
        }
    }

    fn run<T>(&mut self, mut f: impl FnMut(&mut Overlay) -> Result<T>) -> Result<T> {
        loop {
            match f(&mut self.o) {
                Err(Error::NotLoaded(d)) => {
                    let p = self.o.load_path(d).unwrap();
                    let l = self.b.list(&p);
                    self.o.load(d, l).unwrap();
                }
                r => return r,
            }
        }
    }

    fn ops(&mut self, f: impl FnMut(&mut Overlay) -> Result<Vec<Op>>) -> Result<()> {
        let ops = self.run(f)?;
        self.b.apply(ops);
        Ok(())
    }

    fn resolve(&mut self, path: &str) -> Result<Ino> {
        let mut ino = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = self.run(|o| o.lookup(ino, OsStr::new(part)))?;
        }
        Ok(ino)
    }

    fn split(&mut self, path: &str) -> (Ino, &'static OsStr) {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let d = self.resolve(dir).unwrap();
        (d, OsStr::new(Box::leak(name.to_owned().into_boxed_str())))
    }

    fn create(&mut self, path: &str, kind: Kind) -> Ino {
        let (d, name) = self.split(path);
        self.run(|o| o.create(d, name, kind, meta())).unwrap()
    }

    fn write(&mut self, path: &str, off: u64, data: &[u8]) {
        let ino = self.resolve(path).unwrap();
        self.o.write(ino, off, data, UNIX_EPOCH).unwrap();
    }

    fn read(&mut self, path: &str) -> Result<Vec<u8>> {
        let ino = self.resolve(path)?;
        let b = &self.b;
        self.o.read(
            ino,
            0,
            u32::MAX,
            &mut |p, off, buf| match b.entries.get(p) {
                Some(Entry::File(v)) => {
                    buf.copy_from_slice(&v[off as usize..off as usize + buf.len()]);
                    Ok(())
                }
                _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
            },
        )
    }

    fn fsync(&mut self, path: &str) {
        let ino = self.resolve(path).unwrap();
        self.ops(|o| o.fsync(ino)).unwrap();
    }

    fn fsyncdir(&mut self, path: &str) {
        let ino = self.resolve(path).unwrap();
        self.ops(|o| o.fsyncdir(ino)).unwrap();
    }

    fn rename(&mut self, from: &str, to: &str) {
        let (d, a) = self.split(from);
        let (nd, b) = self.split(to);
        self.ops(|o| o.rename(d, a, nd, b, false)).unwrap();
    }

    fn unlink(&mut self, path: &str) {
        let (d, name) = self.split(path);
        self.ops(|o| o.unlink(d, name)).unwrap();
    }

    fn power_cut(&mut self) {
        let ops = self.o.drop_pending();
        self.b.apply(ops);
    }

    fn names(&mut self, dir: &str) -> Vec<String> {
        let d = self.resolve(dir).unwrap();
        self.run(|o| o.list(d))
            .unwrap()
            .into_iter()
            .map(|(n, _, _)| n.to_string_lossy().into_owned())
            .collect()
    }
}

#[test]
fn reads_see_unsynced_writes_and_a_drop_loses_them() {
    let mut fs = Fs::new();
    fs.create("f", Kind::File);
    fs.fsyncdir("");
    fs.write("f", 0, b"hello");
    assert_eq!(fs.read("f").unwrap(), b"hello");
    assert_eq!(
        fs.o.pending(),
        Pending {
            files: 1,
            dirs: 0,
            bytes: 5
        }
    );
    fs.power_cut();
    assert_eq!(fs.read("f").unwrap(), b"");
    assert_eq!(fs.o.pending(), Pending::default());
}

#[test]
fn a_synced_write_survives_and_a_later_one_does_not() {
    let mut fs = Fs::new();
    fs.create("f", Kind::File);
    fs.write("f", 0, b"hello");
    fs.fsync("f");
    fs.fsyncdir("");
    fs.write("f", 5, b" world");
    fs.write("f", 0, b"J");
    assert_eq!(fs.read("f").unwrap(), b"Jello world");
    fs.power_cut();
    assert_eq!(fs.read("f").unwrap(), b"hello");
    assert_eq!(fs.b.entries[Path::new("f")], Entry::File(b"hello".to_vec()));
}

#[test]
fn a_created_file_without_a_directory_fsync_vanishes_even_if_its_data_was_synced() {
    let mut fs = Fs::new();
    fs.create("f", Kind::File);
    fs.write("f", 0, b"data");
    fs.fsync("f");
    assert_eq!(fs.names(""), ["f"]);
    fs.power_cut();
    assert_eq!(fs.names(""), Vec::<String>::new());
    assert_eq!(fs.read("f"), Err(Error::NotFound));
    // The orphaned data went with the cut.
    assert_eq!(fs.b.entries.len(), 2);
}

#[test]
fn a_directory_fsync_alone_keeps_the_name_but_not_the_data() {
    let mut fs = Fs::new();
    fs.create("f", Kind::File);
    fs.write("f", 0, b"data");
    fs.fsyncdir("");
    fs.power_cut();
    assert_eq!(fs.names(""), ["f"]);
    assert_eq!(fs.read("f").unwrap(), b"");
}

#[test]
fn rename_over_reverts_without_a_directory_fsync_and_stays_with_one() {
    let mut fs = Fs::new();
    fs.create("cp", Kind::File);
    fs.write("cp", 0, b"old");
    fs.fsync("cp");
    fs.fsyncdir("");
    // The checkpoint pattern: temp + fsync + rename over.
    fs.create("cp.tmp", Kind::File);
    fs.write("cp.tmp", 0, b"new");
    fs.fsync("cp.tmp");
    fs.rename("cp.tmp", "cp");
    assert_eq!(fs.read("cp").unwrap(), b"new");
    fs.power_cut();
    assert_eq!(fs.names(""), ["cp"]);
    assert_eq!(fs.read("cp").unwrap(), b"old");

    fs.create("cp.tmp", Kind::File);
    fs.write("cp.tmp", 0, b"new");
    fs.fsync("cp.tmp");
    fs.rename("cp.tmp", "cp");
    fs.fsyncdir("");
    fs.power_cut();
    assert_eq!(fs.names(""), ["cp"]);
    assert_eq!(fs.read("cp").unwrap(), b"new");
    assert_eq!(fs.b.entries.len(), 3, "{:?}", fs.b.entries);
}

#[test]
fn unlink_reverts_without_a_directory_fsync() {
    let mut fs = Fs::new();
    fs.create("f", Kind::File);
    fs.write("f", 0, b"x");
    fs.fsync("f");
    fs.fsyncdir("");
    fs.unlink("f");
    assert_eq!(fs.names(""), Vec::<String>::new());
    fs.power_cut();
    assert_eq!(fs.read("f").unwrap(), b"x");
    fs.unlink("f");
    fs.fsyncdir("");
    fs.power_cut();
    assert_eq!(fs.names(""), Vec::<String>::new());
    assert_eq!(fs.b.entries.len(), 2);
}

#[test]
fn truncation_is_pending_until_fsync() {
    let mut fs = Fs::new();
    fs.create("f", Kind::File);
    fs.write("f", 0, b"abcdef");
    fs.fsync("f");
    fs.fsyncdir("");
    let ino = fs.resolve("f").unwrap();
    fs.o.truncate(ino, 2, UNIX_EPOCH).unwrap();
    fs.o.truncate(ino, 4, UNIX_EPOCH).unwrap();
    assert_eq!(fs.read("f").unwrap(), b"ab\0\0");
    fs.power_cut();
    assert_eq!(fs.read("f").unwrap(), b"abcdef");
    let ino = fs.resolve("f").unwrap();
    fs.o.truncate(ino, 2, UNIX_EPOCH).unwrap();
    fs.write("f", 3, b"Z");
    fs.fsync("f");
    fs.power_cut();
    assert_eq!(fs.read("f").unwrap(), b"ab\0Z");
}

#[test]
fn directories_need_their_parents_fsync_and_children_need_theirs() {
    let mut fs = Fs::new();
    fs.create("d", Kind::Dir);
    fs.create("d/f", Kind::File);
    fs.write("d/f", 0, b"1");
    fs.fsync("d/f");
    fs.fsyncdir("d");
    // d's own name is not durable yet: everything under it goes.
    fs.power_cut();
    assert_eq!(fs.names(""), Vec::<String>::new());

    fs.create("d", Kind::Dir);
    fs.create("d/f", Kind::File);
    fs.write("d/f", 0, b"1");
    fs.fsync("d/f");
    fs.fsyncdir("d");
    fs.fsyncdir("");
    fs.power_cut();
    assert_eq!(fs.names("d"), ["f"]);
    assert_eq!(fs.read("d/f").unwrap(), b"1");

    // rmdir of a directory whose durable child was unlinked without fsync of the directory.
    fs.unlink("d/f");
    let (root, name) = fs.split("d");
    fs.ops(|o| o.rmdir(root, name)).unwrap();
    fs.fsyncdir("");
    fs.power_cut();
    assert_eq!(fs.names(""), Vec::<String>::new());
    assert_eq!(fs.b.entries.len(), 2, "{:?}", fs.b.entries);
}

#[test]
fn an_open_unlinked_file_stays_readable_until_released() {
    let mut fs = Fs::new();
    let ino = fs.create("f", Kind::File);
    fs.o.open(ino).unwrap();
    fs.write("f", 0, b"abc");
    fs.fsync("f");
    fs.unlink("f");
    let no_backing =
        |_: &Path, _: u64, _: &mut [u8]| Err(std::io::Error::from_raw_os_error(libc::EIO));
    assert_eq!(
        fs.o.read(ino, 0, 10, &mut |p, off, buf| match fs.b.entries.get(p) {
            Some(Entry::File(v)) => {
                buf.copy_from_slice(&v[off as usize..off as usize + buf.len()]);
                Ok(())
            }
            _ => no_backing(p, off, buf),
        }),
        Ok(b"abc".to_vec())
    );
    let ops = fs.o.release(ino);
    fs.b.apply(ops);
    assert_eq!(fs.b.entries.len(), 2);
    assert_eq!(fs.o.attr(ino), Err(Error::NotFound));
}

#[test]
fn extents_merge_and_overwrite() {
    let mut f = FileData {
        hide_from: u64::MAX,
        ..Default::default()
    };
    f.write(10, b"cccc");
    f.write(0, b"aa");
    f.write(2, b"bb");
    f.write(12, b"DDDDDD");
    f.write(4, b"xxxxxxxxx");
    assert_eq!(f.extents.len(), 1);
    let got = f
        .read(Path::new("x"), 0, 100, &mut |_, _, _| {
            panic!("no durable bytes")
        })
        .unwrap();
    assert_eq!(got, b"aabbxxxxxxxxxDDDDD");
    f.truncate(5);
    assert_eq!(
        f.read(Path::new("x"), 0, 100, &mut |_, _, _| unreachable!())
            .unwrap(),
        b"aabbx"
    );
    f.write(7, b"y");
    assert_eq!(
        f.read(Path::new("x"), 3, 100, &mut |_, _, _| unreachable!())
            .unwrap(),
        b"bx\0\0y"
    );
}

#[test]
fn rename_rules() {
    let mut fs = Fs::new();
    fs.create("d", Kind::Dir);
    fs.create("e", Kind::Dir);
    fs.create("f", Kind::File);
    fs.create("e/x", Kind::File);
    let (r, _) = fs.split("f");
    let d = fs.resolve("d").unwrap();
    assert_eq!(
        fs.run(|o| o.rename(r, OsStr::new("f"), d, OsStr::new("f"), false)),
        Err(Error::CrossDir)
    );
    assert_eq!(
        fs.run(|o| o.rename(r, OsStr::new("f"), r, OsStr::new("d"), false)),
        Err(Error::IsDir)
    );
    assert_eq!(
        fs.run(|o| o.rename(r, OsStr::new("d"), r, OsStr::new("e"), false)),
        Err(Error::NotEmpty)
    );
    assert_eq!(
        fs.run(|o| o.rename(r, OsStr::new("d"), r, OsStr::new("f"), false)),
        Err(Error::NotDir)
    );
    assert_eq!(
        fs.run(|o| o.rename(r, OsStr::new("e"), r, OsStr::new("d"), true)),
        Err(Error::Exists)
    );
    fs.rename("e", "g");
    fs.fsyncdir("");
    fs.fsyncdir("g");
    fs.power_cut();
    assert_eq!(fs.names(""), ["d", "f", "g"]);
    assert_eq!(fs.names("g"), ["x"]);
}

//! The mounted file system, driven through the kernel: arctern-lossyfs on a temp dir.
//! Needs /dev/fuse and root (CI runs as root); skipped with a note otherwise.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Mount {
    child: Child,
    _dir: tempfile::TempDir,
    back: PathBuf,
    mnt: PathBuf,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_arctern-lossyfs")
}

fn is_mounted(mnt: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let m = mnt.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*m))
}

impl Mount {
    fn new() -> Option<Mount> {
        // SAFETY: getuid has no preconditions.
        if !Path::new("/dev/fuse").exists() || unsafe { libc::getuid() } != 0 {
            eprintln!("skipped: needs /dev/fuse and root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let back = dir.path().join("back");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&back).unwrap();
        fs::create_dir(&mnt).unwrap();
        let child = Command::new(bin())
            .arg("mount")
            .arg(&back)
            .arg(&mnt)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mnt = mnt.canonicalize().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(is_mounted(&mnt) && back.join(".lossyfs.sock").exists()) {
            assert!(Instant::now() < deadline, "lossyfs did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Mount {
            child,
            _dir: dir,
            back,
            mnt,
        })
    }

    fn p(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    fn ctl(&self, cmd: &str) -> String {
        let out = Command::new(bin())
            .arg(cmd)
            .arg(&self.back)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn drop_pending(&self) {
        assert_eq!(self.ctl("drop"), "ok");
    }

    fn sync_dir(&self, rel: &str) {
        File::open(self.mnt.join(rel)).unwrap().sync_all().unwrap();
    }

    fn names(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.mnt.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // SIGTERM to the daemon we started: it unmounts and exits.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn write_file(path: &Path, data: &[u8], sync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    if sync {
        f.sync_all().unwrap();
    }
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}

#[test]
fn an_unsynced_write_is_lost_after_a_drop_and_a_synced_one_survives() {
    let Some(m) = Mount::new() else { return };
    write_file(&m.p("log"), b"acked", true);
    m.sync_dir("");
    let mut f = OpenOptions::new().append(true).open(m.p("log")).unwrap();
    f.write_all(b"+lost").unwrap();
    assert_eq!(read(&m.p("log")).unwrap(), b"acked+lost");
    assert_eq!(
        m.ctl("status"),
        "pending_files=1 pending_dirs=0 pending_bytes=5 drops=0"
    );
    m.drop_pending();
    assert_eq!(read(&m.p("log")).unwrap(), b"acked");
    assert_eq!(
        m.ctl("status"),
        "pending_files=0 pending_dirs=0 pending_bytes=0 drops=1"
    );
    // The old handle belongs to the "crashed" process: it fails instead of resurrecting data.
    assert!(f.write_all(b"x").is_err());
    // The backing directory holds exactly the durable state.
    assert_eq!(fs::read(m.back.join("log")).unwrap(), b"acked");
}

#[test]
fn an_unsynced_creation_vanishes_even_if_the_file_data_was_fsynced() {
    let Some(m) = Mount::new() else { return };
    write_file(&m.p("new"), b"data", true);
    assert_eq!(m.names(""), ["new"]);
    m.drop_pending();
    assert_eq!(m.names(""), Vec::<String>::new());
    assert!(read(&m.p("new")).is_err());

    // With the directory fsynced too, it stays.
    write_file(&m.p("new"), b"data", true);
    m.sync_dir("");
    m.drop_pending();
    assert_eq!(read(&m.p("new")).unwrap(), b"data");
}

#[test]
fn a_rename_reverts_without_a_directory_fsync_and_stays_with_one() {
    let Some(m) = Mount::new() else { return };
    fs::create_dir(m.p("d")).unwrap();
    m.sync_dir("");
    write_file(&m.p("d/cp"), b"old", true);
    m.sync_dir("d");
    // Checkpoint pattern: temp + fsync + rename over, no directory fsync.
    write_file(&m.p("d/cp.tmp"), b"new", true);
    fs::rename(m.p("d/cp.tmp"), m.p("d/cp")).unwrap();
    assert_eq!(read(&m.p("d/cp")).unwrap(), b"new");
    m.drop_pending();
    assert_eq!(m.names("d"), ["cp"]);
    assert_eq!(read(&m.p("d/cp")).unwrap(), b"old");
    // ... and with the directory fsync.
    write_file(&m.p("d/cp.tmp"), b"new", true);
    fs::rename(m.p("d/cp.tmp"), m.p("d/cp")).unwrap();
    m.sync_dir("d");
    m.drop_pending();
    assert_eq!(m.names("d"), ["cp"]);
    assert_eq!(read(&m.p("d/cp")).unwrap(), b"new");
    // Unlink and rmdir revert without the parent's fsync.
    fs::remove_file(m.p("d/cp")).unwrap();
    fs::remove_dir(m.p("d")).unwrap();
    m.drop_pending();
    assert_eq!(read(&m.p("d/cp")).unwrap(), b"new");
}

#[test]
fn a_large_sequential_file_keeps_exactly_its_synced_prefix() {
    let Some(m) = Mount::new() else { return };
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let f = File::create(m.p("segment")).unwrap();
    m.sync_dir("");
    let start = Instant::now();
    let mut off = 0u64;
    for i in 0..48 {
        f.write_all_at(&chunk, off).unwrap();
        off += chunk.len() as u64;
        if i == 31 {
            f.sync_data().unwrap();
        }
    }
    eprintln!("48 MiB written in {:?}", start.elapsed());
    assert_eq!(f.metadata().unwrap().len(), 48 << 20);
    // Truncation is pending too.
    f.set_len(40 << 20).unwrap();
    m.drop_pending();
    let got = read(&m.p("segment")).unwrap();
    assert_eq!(got.len(), 32 << 20);
    assert!(got.chunks(1 << 20).all(|c| c == chunk.as_slice()));
}

#[test]
fn the_fsync_delay_slows_file_and_directory_fsyncs() {
    let Some(m) = Mount::new() else { return };
    let out = Command::new(bin())
        .args(["delay"])
        .arg(&m.back)
        .arg("300")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let f = File::create(m.p("slow")).unwrap();
    f.write_all_at(b"x", 0).unwrap();
    let t = Instant::now();
    f.sync_data().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    m.sync_dir("");
    assert!(t.elapsed() >= Duration::from_millis(300));
}

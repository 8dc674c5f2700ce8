//! `arctern-lossyfs mount BACKING MOUNTPOINT` serves BACKING at MOUNTPOINT, keeping every
//! change pending until the fsync that makes it durable; `arctern-lossyfs drop` (or SIGUSR1
//! to the daemon) discards everything pending, as a power cut would. SIGTERM unmounts.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use arctern_lossyfs::{control, fs};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arctern-lossyfs",
    about = "A lose-unsynced FUSE filesystem for fault tests"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount BACKING at MOUNTPOINT and serve until SIGTERM/SIGINT.
    Mount {
        backing: PathBuf,
        mountpoint: PathBuf,
        /// Control socket (default: BACKING/.lossyfs.sock).
        #[arg(long)]
        control: Option<PathBuf>,
        /// Every fsync and directory fsync waits this long first (a slow disk).
        #[arg(long, default_value_t = 0)]
        fsync_delay_ms: u64,
        /// FUSE worker threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
    /// Discard every pending change (a power cut). TARGET: the socket or the backing dir.
    Drop { target: PathBuf },
    /// Print the pending counts: pending_files, pending_dirs, pending_bytes, drops.
    Status { target: PathBuf },
    /// Set the fsync delay of a running daemon.
    Delay { target: PathBuf, ms: u64 },
}

fn command(target: &Path, line: &str) -> ExitCode {
    match control::send(&control::socket_path(target), line) {
        Ok(reply) => {
            println!("{reply}");
            if reply.starts_with("error") {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("arctern-lossyfs: {}: {e}", target.display());
            ExitCode::FAILURE
        }
    }
}

/// Blocks the signals the daemon handles so that every thread inherits the mask and only
/// the main thread's sigwait sees them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set calls on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is initialised and `sig` a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn serve(
    backing: &Path,
    mountpoint: &Path,
    control_path: Option<PathBuf>,
    delay: u64,
    threads: usize,
) -> std::io::Result<()> {
    let set = block_signals();
    let shared = Arc::new(fs::Shared::new(backing, delay)?);
    let sock = control_path.unwrap_or_else(|| backing.join(".lossyfs.sock"));
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![fuser::MountOption::FSName("lossyfs".into())];
    config.n_threads = Some(threads.max(1));
    let session = fuser::spawn_mount(fs::LossyFs(shared.clone()), mountpoint, &config)?;
    control::serve(listener, shared.clone());
    println!(
        "lossyfs: {} mounted at {} (control {})",
        backing.display(),
        mountpoint.display(),
        sock.display()
    );
    let _ = std::io::stdout().flush();
    // SIGUSR1: drop; SIGTERM, SIGINT, SIGHUP: unmount and exit.
    while wait_signal(&set) == libc::SIGUSR1 {
        if let Err(e) = shared.drop_pending() {
            eprintln!("lossyfs: drop failed: {e}");
        }
    }
    let _ = std::fs::remove_file(&sock);
    if let Err(e) = session.umount_and_join() {
        // Files still open (a broker killed later): detach lazily instead.
        eprintln!("lossyfs: unmount: {e}; detaching");
        let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    Ok(())
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Mount {
            backing,
            mountpoint,
            control,
            fsync_delay_ms,
            threads,
        } => match serve(&backing, &mountpoint, control, fsync_delay_ms, threads) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("arctern-lossyfs: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Drop { target } => command(&target, "drop"),
        Cmd::Status { target } => command(&target, "status"),
        Cmd::Delay { target, ms } => command(&target, &format!("delay {ms}")),
    }
}

//! The daemon's command socket: one line in, one line out.
//!   `drop`        -> `ok` (every pending change discarded, as by a power cut)
//!   `status`      -> `pending_files=N pending_dirs=N pending_bytes=N drops=N`
//!   `delay MS`    -> `ok` (every fsync/fsyncdir now waits MS milliseconds first)

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::Shared;

/// The socket path: an explicit path, or `.lossyfs.sock` inside a backing directory.
pub fn socket_path(target: &Path) -> PathBuf {
    if target.is_dir() {
        target.join(".lossyfs.sock")
    } else {
        target.to_path_buf()
    }
}

/// Sends one command and returns the reply line.
pub fn send(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// Answers one command against the running file system.
pub fn handle(shared: &Shared, line: &str) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("drop"), None) => match shared.drop_pending() {
            Ok(()) => "ok".into(),
            Err(e) => format!("error {e}"),
        },
        (Some("status"), None) => {
            let (p, drops) = shared.status();
            format!(
                "pending_files={} pending_dirs={} pending_bytes={} drops={drops}",
                p.files, p.dirs, p.bytes
            )
        }
        (Some("delay"), Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                shared.set_fsync_delay_ms(ms);
                "ok".into()
            }
            Err(_) => "error bad delay".into(),
        },
        _ => "error unknown command (drop, status, delay MS)".into(),
    }
}

/// Serves the socket on a thread until the process exits.
pub fn serve(listener: UnixListener, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let shared = shared.clone();
            std::thread::spawn(move || {
                let Ok(read) = conn.try_clone() else { return };
                let mut reader = BufReader::new(read);
                let mut writer = conn;
                let mut line = String::new();
                while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                    let reply = handle(&shared, line.trim());
                    if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
}

//! Resource alarms, as RabbitMQ raises them: free disk space of the data directory below
//! `disk_free_limit`, or the broker's anonymous memory above its high watermark. While an
//! alarm is up, publishing connections are blocked (`connection.blocked`, and their frames
//! are no longer read) until it clears; consumers go on, which is what frees the resource.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

/// What the monitor watches; RabbitMQ's names.
#[derive(Debug, Clone)]
pub struct AlarmConfig {
    /// The directory whose file system must keep `disk_free_limit` bytes free.
    pub data_dir: PathBuf,
    /// `disk_free_limit` in bytes (RabbitMQ's default: 50 MB); 0 disables the disk alarm.
    pub disk_free_limit: u64,
    /// `vm_memory_high_watermark`: a fraction of the machine's memory (RabbitMQ's default
    /// 0.6); 0 disables the memory alarm.
    pub memory_high_watermark: f64,
    /// How often the monitor looks (1 s).
    pub interval: Duration,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            data_dir: PathBuf::from("."),
            disk_free_limit: 50_000_000,
            memory_high_watermark: 0.6,
            interval: Duration::from_secs(1),
        }
    }
}

/// The current alarm: `None`, or the reason sent with `connection.blocked`.
pub type AlarmState = watch::Receiver<Option<String>>;

/// An alarm that never goes off (tests, embedding).
pub fn never() -> AlarmState {
    watch::channel(None).1
}

/// Starts the monitor task; the receiver sees every change of the alarm.
pub fn start(config: AlarmConfig) -> AlarmState {
    let (tx, rx) = watch::channel(None);
    let memory_limit = memory_limit(config.memory_high_watermark);
    tracing::info!(
        disk_free_limit = config.disk_free_limit,
        memory_limit = memory_limit.unwrap_or(0),
        "AMQP resource alarms armed"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.interval);
        loop {
            tick.tick().await;
            let disk = config.disk_free_limit > 0
                && free_bytes(&config.data_dir).is_some_and(|free| free < config.disk_free_limit);
            let memory = memory_limit
                .zip(anonymous_memory())
                .is_some_and(|(limit, used)| used > limit);
            let reason = match (disk, memory) {
                (false, false) => None,
                (true, false) => Some("low on disk".to_string()),
                (false, true) => Some("low on memory".to_string()),
                (true, true) => Some("low on memory & disk".to_string()),
            };
            if *tx.borrow() != reason {
                match &reason {
                    Some(r) => {
                        tracing::warn!(reason = %r, "resource alarm set: publishers are blocked")
                    }
                    None => tracing::info!("resource alarm cleared: publishers may go on"),
                }
                tx.send_replace(reason);
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// Free bytes for unprivileged writers on the file system holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The watermark in bytes, from MemTotal in /proc/meminfo.
fn memory_limit(fraction: f64) -> Option<u64> {
    if fraction <= 0.0 {
        return None;
    }
    let total_kib = proc_field("/proc/meminfo", "MemTotal:")?;
    Some((total_kib as f64 * 1024.0 * fraction) as u64)
}

/// The broker's anonymous resident memory (heap, not the page cache of its log files).
fn anonymous_memory() -> Option<u64> {
    proc_field("/proc/self/status", "RssAnon:").map(|kib| kib * 1024)
}

/// A `Name:   1234 kB` line's number.
fn proc_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_field(&text, name)
}

fn parse_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_style_fields() {
        let text = "VmRSS:\t  2048 kB\nRssAnon:\t  1024 kB\n";
        assert_eq!(parse_field(text, "RssAnon:"), Some(1024));
        assert_eq!(parse_field(text, "Missing:"), None);
    }

    #[test]
    fn this_machine_reports_disk_and_memory() {
        assert!(free_bytes(std::path::Path::new(".")).is_some());
        assert!(memory_limit(0.5).is_some_and(|l| l > 0));
        assert!(memory_limit(0.0).is_none());
    }
}

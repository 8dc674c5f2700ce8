//! CI's short run of every cargo-fuzz target (fuzz/): each target's body (fuzz/bodies, the
//! same code libFuzzer drives) runs over its committed seed corpus and over deterministic
//! mutations of every seed (bit flips, overwritten bytes, truncations, repeats, inserted
//! bytes). A panic, abort or hang here is a crash the fuzzer would report. Stable Rust, no
//! coverage guidance: the long, coverage-guided runs are `scripts/fuzz.sh` (nightly).

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/bodies/amqp_frame.rs"]
mod amqp_frame;
#[path = "../../../fuzz/bodies/batch_crcs.rs"]
mod batch_crcs;
#[path = "../../../fuzz/bodies/kafka_request.rs"]
mod kafka_request;
#[path = "../../../fuzz/bodies/log_recovery.rs"]
mod log_recovery;
#[path = "../../../fuzz/bodies/metadata_frame.rs"]
mod metadata_frame;
#[path = "../../../fuzz/bodies/record_batch.rs"]
mod record_batch;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seed corpus in {}", dir.display());
    seeds
}

/// xorshift64*: deterministic, so a failure reproduces with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `seed`, as libFuzzer's simplest mutators do.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len());
        match rng.below(6) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 if !v.is_empty() => v[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
            2 if !v.is_empty() => v[at] = rng.next() as u8,
            3 => v.truncate(at),
            4 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                let piece = v[at..end].to_vec();
                v.splice(at..at, piece);
            }
            _ => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                v.splice(at.min(v.len())..at.min(v.len()), bytes);
            }
        }
    }
    v
}

/// Every seed as is, then `per_seed` mutations of each. Prints the count (the run's figure).
fn exercise(target: &str, per_seed: usize, run: fn(&[u8])) {
    let seeds = corpus(target);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let mut executions = 0usize;
    for seed in &seeds {
        run(seed);
        executions += 1;
        for _ in 0..per_seed {
            run(&mutate(seed, &mut rng));
            executions += 1;
        }
    }
    println!("{target}: {} seeds, {executions} executions", seeds.len());
}

#[test]
fn kafka_request_frames() {
    exercise("kafka_request", 4000, kafka_request::run);
}

#[test]
fn amqp_frames_and_method_arguments() {
    exercise("amqp_frame", 2000, amqp_frame::run);
}

#[test]
fn record_batches_and_control_records() {
    exercise("record_batch", 4000, record_batch::run);
}

#[test]
fn metadata_network_frames_and_raft_log() {
    exercise("metadata_frame", 2000, metadata_frame::run);
}

#[test]
fn log_recovery_over_arbitrary_segment_bytes() {
    // Each execution writes and opens a log (a file system round trip), so fewer.
    exercise("log_recovery", 1000, log_recovery::run);
}

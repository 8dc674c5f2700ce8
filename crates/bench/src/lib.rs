//! Benchmark driver (filled in separately).

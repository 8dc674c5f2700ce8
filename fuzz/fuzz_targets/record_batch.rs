//! Record batches as a Produce request carries them: the header parser, the validation
//! `Log::append_as_leader` runs (CRC32C, lengths), the idempotent-producer sequence checks
//! the partition makes on the headers, and the record decoder (all codecs, control records)
//! that reads stored batches back (consumer offsets, AMQP queue logs).
#![no_main]

#[path = "../bodies/batch_crcs.rs"]
mod batch_crcs;
#[path = "../bodies/record_batch.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));

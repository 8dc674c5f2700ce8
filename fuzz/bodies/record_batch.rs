//! Record batches as a Produce request carries them: the header parser, the validation
//! `Log::append_as_leader` runs (CRC32C, lengths), the idempotent-producer sequence checks
//! the partition makes on the headers, and the record decoder (all codecs, control records)
//! that reads stored batches back (consumer offsets, AMQP queue logs).
//!
//! The body of the cargo-fuzz target `record_batch` (fuzz/fuzz_targets), shared with CI's
//! short run on stable Rust (crates/arctern/tests/fuzz_smoke.rs). Its includer also
//! includes `batch_crcs.rs` as the crate's `batch_crcs` module.

use arctern_core::producer_state::ProducerStates;
use arctern_storage::{batch, records};

/// One execution: `input` is the fuzzer's input.
pub fn run(input: &[u8]) {
    let Some(data) = crate::batch_crcs::input_in_mode(input) else {
        return;
    };
    let data = &data[..];
    let _ = batch::peek_offset_and_size(data);
    if let Ok(h) = batch::parse_header(data) {
        let _ = (
            h.last_offset(),
            h.compression(),
            h.is_control(),
            h.is_transactional(),
        );
    }
    if let Ok(headers) = batch::validate_all(data) {
        // As `Log::append_as_leader` and `Partition::append`: the leader assigns offsets
        // (the client's base offset is overwritten), then the producer state sees the
        // stamped headers.
        let mut states = ProducerStates::default();
        let mut next = 0i64;
        for h in &headers {
            if i64::from(h.last_offset_delta) + 1 != i64::from(h.records_count) {
                break;
            }
            let stamped = arctern_storage::BatchHeader {
                base_offset: next,
                ..*h
            };
            let _ = states.check(&stamped);
            states.record(&stamped, 0);
            next += i64::from(h.last_offset_delta) + 1;
        }
    }
    let _ = records::decode_batches(data.to_vec());
}

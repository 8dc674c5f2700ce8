//! Record batches as a Produce request carries them: the header parser, the validation
//! `Log::append_as_leader` runs (CRC32C, lengths), the idempotent-producer sequence checks
//! the partition makes on the headers, and the record decoder (all codecs, control records)
//! that reads stored batches back (consumer offsets, AMQP queue logs).
#![no_main]

use arctern_core::producer_state::ProducerStates;
use arctern_storage::{batch, records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});

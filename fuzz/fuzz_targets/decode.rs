//! Any bytes from the ring buffer decode to an event or a `DecodeError`, never a panic.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tracer::{kernel::units::KernelUnits, pipeline::decode::Decoder};

static DECODER: LazyLock<Decoder> = LazyLock::new(|| {
    Decoder::new(KernelUnits {
        hz: Some(250),
        reset_reasons: [(2, "NO_SOCKET".to_owned())].into(),
    })
});

fuzz_target!(|record: &[u8]| {
    let _ = DECODER.decode(record);
});

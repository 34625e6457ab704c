//! Any line given to `tracer replay` is an event, another line, a cut line or an error,
//! never a panic; and an event it reads is written back as a line that reads the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::{
    clock::WallClock,
    output::{Sink, json::JsonSink},
    replay::{Line, read_line},
};

fuzz_target!(|line: &[u8]| {
    let Ok(Line::Event(event)) = read_line(line) else {
        return;
    };
    let mut sink = JsonSink::new(Vec::new());
    sink.event(WallClock::from_offset_ns(0), &event).unwrap();
    let written = sink.into_inner().unwrap();
    let Ok(Line::Event(again)) = read_line(written.strip_suffix(b"\n").unwrap()) else {
        panic!("{} does not read back", String::from_utf8_lossy(&written));
    };
    assert_eq!(again, event);
});

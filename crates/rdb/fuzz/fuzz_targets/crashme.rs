//! Temporary: panics on any input starting with REDIS, to test .ci/fuzz.
#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"REDIS") {
        panic!("crashme: input starts with REDIS");
    }
    let _ = rdb::Reader::new(data);
});

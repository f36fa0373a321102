//! `rdb::Verifier` on arbitrary bytes: it never panics, its verdict does not
//! depend on how the stream is cut into chunks, and it agrees with
//! `rdb::Reader` on every dump the reader decodes to its last byte.
//!
//! Input layout: 2 bytes (u16 little-endian) choosing where to cut, then the
//! stream. The stream is verified three times: as one chunk; as two chunks
//! cut at `cut % (len + 1)`; and in chunks of `1 + cut >> 12` bytes (1 to
//! 16). The three results (summary or error) must be equal, except for what
//! `BadMagic` quotes: the verifier refuses a stream at its first wrong byte,
//! so it quotes as much of the first 9 bytes as had arrived (which must be a
//! prefix of the stream).
//!
//! Then the stream goes through the reader. When the reader reaches the end
//! of the dump with no error and no byte left over, the verifier must have
//! accepted it too, with the same checksum verdict (`Verified` with the same
//! CRC, `Disabled` or `Absent`), version and leading aux fields, and a length
//! equal to the stream's: the reader checks the same head and trailer while
//! also decoding every key, so it never accepts what the verifier refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdb::{RdbError, Reader, Summary, Verifier};

fn verify<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Summary, RdbError> {
    let mut v = Verifier::new();
    let mut first_err = None;
    for chunk in chunks {
        match v.update(chunk) {
            Ok(()) => assert!(first_err.is_none(), "update succeeded after an error"),
            Err(e) => match &first_err {
                None => first_err = Some(e),
                Some(first) => assert_eq!(first, &e, "update repeats its first error"),
            },
        }
    }
    let result = v.finish();
    if let Some(e) = first_err {
        assert_eq!(
            result.as_ref().err(),
            Some(&e),
            "finish repeats update's error"
        );
    }
    result
}

/// The verdict, with `BadMagic`'s quote (checked, then blanked) made
/// independent of how the stream was cut.
fn normalized(result: Result<Summary, RdbError>, stream: &[u8]) -> Result<Summary, RdbError> {
    match result {
        Err(RdbError::BadMagic { found }) => {
            assert!(
                (1..=9.min(stream.len())).any(|n| found == stream[..n].escape_ascii().to_string()),
                "BadMagic quotes {found:?}, not the start of the stream"
            );
            Err(RdbError::BadMagic {
                found: String::new(),
            })
        }
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((cut, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_le_bytes(*cut));

    let one = normalized(verify([stream]), stream);
    let (left, right) = stream.split_at(cut % (stream.len() + 1));
    let two = normalized(verify([left, right]), stream);
    assert_eq!(one, two, "verdict differs when cut at {}", left.len());
    let size = 1 + (cut >> 12);
    let many = normalized(verify(stream.chunks(size)), stream);
    assert_eq!(one, many, "verdict differs in {size}-byte chunks");
    if let Ok(s) = &one {
        assert_eq!(s.bytes, stream.len() as u64);
    }

    // The reader over the same bytes.
    let Ok(reader) = Reader::new(stream) else {
        return;
    };
    let reader_aux = reader.aux().to_vec();
    let mut reader = reader.with_max_value_bytes(1 << 20);
    loop {
        match reader.next_entry() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return,
        }
    }
    if reader.offset() != stream.len() as u64 {
        // Bytes after the trailer: the reader ignores them, the verifier
        // takes the last 8 for the trailer.
        return;
    }
    let summary = match one {
        Ok(s) => s,
        Err(e) => panic!("the reader decoded the whole dump but the verifier refused it: {e}"),
    };
    assert_eq!(
        Some(summary.checksum),
        reader.checksum(),
        "checksum verdicts differ"
    );
    assert_eq!(summary.version, reader.version());
    assert_eq!(summary.aux, reader_aux, "leading aux fields differ");
});

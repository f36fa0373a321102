//! `rdb::Reader` on arbitrary bytes: it never panics, and what it decodes does
//! not depend on how the source cuts its reads.
//!
//! The input is read twice, in lockstep: once from the whole slice (the first
//! read gets everything) and once from a source that returns at most 7 bytes
//! per `read`, so that every item is cut at many places and decoded again
//! after each refill. Both must give the same header, the same entries (dump
//! payloads included), and the same end: the same checksum verdict, aux
//! fields, function libraries and offset, or the same error. The documented
//! after-end behaviour is checked too: after an error `next_entry` repeats
//! it and the iterator yields `None`; after the end `next_entry` stays
//! `Ok(None)`. A third reader, in lockstep too, measures instead of decoding
//! (`next_key`): it must accept and refuse the same input, and find the same
//! keys, types, expiries and element counts.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use rdb::{Entry, RdbError, Reader};

/// The largest value either reader accepts.
const MAX_VALUE: usize = 1 << 20;
/// The most bytes the trickling source returns per `read`.
const TRICKLE: usize = 7;

/// A source that hands out at most `TRICKLE` bytes per call.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(TRICKLE).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        buf[..n].copy_from_slice(head);
        self.0 = rest;
        Ok(n)
    }
}

fn open<R: Read>(src: R) -> Result<Reader<R>, RdbError> {
    Ok(Reader::new(src)?
        .with_dump_payloads()
        .with_max_value_bytes(MAX_VALUE))
}

/// Entries are equal, or differ only by NaN scores (which `==` never equates).
fn same(a: &Entry, b: &Entry) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}")
}

fuzz_target!(|data: &[u8]| {
    let (whole, trickle) = match (open(data), open(Trickle(data))) {
        (Ok(w), Ok(t)) => (w, t),
        (Err(a), Err(b)) => {
            assert_eq!(
                a, b,
                "Reader::new fails differently when fed in 7-byte reads"
            );
            return;
        }
        (a, b) => panic!(
            "Reader::new: {:?} from the whole input, {:?} in 7-byte reads",
            a.err(),
            b.err()
        ),
    };
    let (mut whole, mut trickle) = (whole, trickle);
    let mut measured = Reader::new(data)
        .expect("the same header was accepted above")
        .with_max_value_bytes(MAX_VALUE);
    assert_eq!(whole.version(), trickle.version());
    assert_eq!(whole.magic(), trickle.magic());
    assert_eq!(whole.aux(), trickle.aux());

    let mut n = 0usize;
    loop {
        // The whole-input reader through `next_entry`, the trickling one
        // through the `Iterator` impl.
        let a = whole.next_entry();
        let b = trickle.next();
        let m = measured.next_key();
        assert_eq!(
            a.is_err(),
            m.is_err(),
            "after {n} entries, decoding and measuring disagree: {a:?} / {m:?}"
        );
        if let (Ok(Some(a)), Ok(Some(m))) = (&a, &m) {
            assert_eq!(
                (&m.key, m.type_id, m.expire_ms, m.elements),
                (&a.key, a.type_id, a.expire_ms, a.value.elements()),
                "entry {n}: measured differently"
            );
        } else {
            assert_eq!(matches!(a, Ok(None)), matches!(m, Ok(None)), "entry {n}: one ended");
        }
        match (a, b) {
            (Ok(Some(a)), Some(Ok(b))) => {
                assert!(same(&a, &b), "entry {n} differs:\n{a:?}\n{b:?}");
                if let Some(dump) = &a.dump {
                    assert_eq!(
                        dump.first(),
                        Some(&a.type_id),
                        "entry {n}: dump payload type"
                    );
                }
                n += 1;
            }
            (Ok(None), None) => {
                assert!(
                    whole.checksum().is_some(),
                    "ended without a checksum verdict"
                );
                assert_eq!(whole.checksum(), trickle.checksum());
                assert_eq!(whole.aux(), trickle.aux());
                assert_eq!(whole.functions(), trickle.functions());
                assert_eq!(whole.offset(), trickle.offset());
                assert!(whole.offset() <= data.len() as u64);
                assert_eq!(whole.next_entry(), Ok(None), "next_entry after the end");
                assert!(trickle.next().is_none(), "iterator after the end");
                return;
            }
            (Err(a), Some(Err(b))) => {
                assert_eq!(a, b, "after {n} entries the error differs in 7-byte reads");
                assert_eq!(whole.next_entry(), Err(a), "next_entry after an error");
                assert!(trickle.next().is_none(), "iterator after an error");
                return;
            }
            (a, b) => {
                panic!("after {n} entries: {a:?} from the whole input, {b:?} in 7-byte reads")
            }
        }
    }
});

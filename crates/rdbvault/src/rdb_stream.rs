//! The `rdb` crate's reader, fed from async I/O (a socket, an object store
//! stream): it runs on a blocking thread and hands entries over a bounded
//! channel, so memory stays bounded by the largest value plus a few entries.

use rdb::{Entry, RdbError, Reader};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

/// Entries in flight between the reader thread and the consumer.
const IN_FLIGHT: usize = 16;

/// Reads `input` as an RDB stream; entries (or the error that ends the
/// stream) arrive on the receiver. With `dumps`, each entry carries its
/// `RESTORE` payload. Dropping the receiver stops the reader.
pub fn entries<R>(input: R, dumps: bool) -> mpsc::Receiver<Result<Entry, RdbError>>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let bridge = std::io::BufReader::with_capacity(1 << 20, SyncIoBridge::new(input));
        let mut reader = match Reader::new(bridge) {
            Ok(r) if dumps => r.with_dump_payloads(),
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let item = match reader.next_entry() {
                Ok(Some(entry)) => Ok(entry),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid RDB (version 9): one string key, EOF, CRC.
    fn tiny_rdb() -> Vec<u8> {
        let mut v = b"REDIS0009".to_vec();
        v.extend_from_slice(&[0xFE, 0x00, 0x00, 0x01, b'k', 0x01, b'v', 0xFF]);
        let crc = rdb::crc64::crc64(0, &v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    #[tokio::test]
    async fn entries_arrive_from_async_input() {
        let mut rx = entries(std::io::Cursor::new(tiny_rdb()), true);
        let entry = rx.recv().await.expect("an entry").expect("valid");
        assert_eq!(entry.key, b"k");
        assert_eq!(entry.value, rdb::Value::String(b"v".to_vec()));
        assert!(entry.dump.is_some());
        assert!(rx.recv().await.is_none(), "the stream ends after EOF");
    }

    #[tokio::test]
    async fn a_broken_stream_ends_with_its_error() {
        let mut bad = tiny_rdb();
        let last = bad.len() - 1;
        bad[last] ^= 0xFF;
        let mut rx = entries(std::io::Cursor::new(bad), false);
        let mut saw_error = false;
        while let Some(item) = rx.recv().await {
            if item.is_err() {
                saw_error = true;
            }
        }
        assert!(saw_error, "a bad CRC must surface");
    }
}

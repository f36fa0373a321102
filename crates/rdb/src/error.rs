//! The one error type of the crate.
//!
//! Its messages end up in an operator's alert or a backup's failure reason,
//! so each says what was found, where, and what it most likely means, rather
//! than just naming the check that failed.

/// Why a byte stream is not a valid RDB dump.
///
/// Offsets are counted in bytes from the start of the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    /// The stream does not start with `REDIS` and four ASCII digits.
    #[error(
        "not an RDB dump: it starts with \"{found}\" where \"REDIS\" and a four-digit version were expected"
    )]
    BadMagic {
        /// The first bytes of the stream, escaped for display.
        found: String,
    },

    /// The version in the header is outside 1..=12.
    #[error(
        "RDB version {0} is not supported (this verifier understands versions 1 to 12); the dump may come from a newer server"
    )]
    UnsupportedVersion(u32),

    /// The stream ended before header, EOF opcode and trailer were all seen.
    #[error(
        "RDB dump truncated: the stream ended after {bytes} bytes, before the header, the EOF opcode and the checksum trailer were all received"
    )]
    Truncated {
        /// How many bytes the stream had.
        bytes: u64,
    },

    /// The CRC-64 trailer does not match the bytes received.
    #[error(
        "RDB checksum mismatch: the trailer records CRC-64 {expected:#018x} but the bytes received hash to {actual:#018x}; the dump was corrupted in transit or at rest"
    )]
    BadChecksum {
        /// The checksum the server wrote in the trailer.
        expected: u64,
        /// The checksum of the bytes actually received.
        actual: u64,
    },

    /// The byte where the EOF opcode 0xFF belongs holds something else.
    #[error(
        "RDB dump does not end with the EOF opcode: byte {found:#04x} at offset {offset} where 0xff was expected; the dump is truncated or was not written completely"
    )]
    MissingEof {
        /// Where the EOF opcode should have been.
        offset: u64,
        /// What was there instead.
        found: u8,
    },

    /// Reading the underlying stream failed.
    #[error("reading the RDB dump failed at byte offset {offset}: {message}")]
    Io {
        /// How many bytes had been received.
        offset: u64,
        /// The kind of I/O error.
        kind: std::io::ErrorKind,
        /// The I/O error's message.
        message: String,
    },

    /// A structure the verifier decodes is invalid or over its size limit.
    #[error("malformed RDB dump at byte offset {offset}: {reason}")]
    Malformed {
        /// Where the offending structure starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl RdbError {
    pub(crate) fn malformed(offset: usize, reason: impl Into<String>) -> Self {
        Self::Malformed {
            offset: offset as u64,
            reason: reason.into(),
        }
    }
}

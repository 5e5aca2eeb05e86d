//! The SSH wire encoding (RFC 4251 §5) that SSHSIG blobs use: big-endian `uint32` and
//! length-prefixed `string`. Only what the appliance needs; bounds are always checked.

/// A malformed encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated")]
    Truncated,
    #[error("trailing bytes")]
    Trailing,
    #[error("wrong length")]
    Length,
    #[error("not UTF-8")]
    Utf8,
}

/// Appends SSH wire values to a buffer.
#[derive(Debug, Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    pub fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    /// A `string`: `uint32` length, then the bytes. Lengths past `u32::MAX` cannot occur for the
    /// values the appliance encodes (keys, names, digests, 64-byte signatures).
    pub fn string(&mut self, bytes: &[u8]) {
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.raw(bytes);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Reads SSH wire values from a slice.
#[derive(Debug)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader(bytes)
    }

    pub fn raw(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < len {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let bytes = self.raw(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(self.u32()?).map_err(|_| WireError::Length)?;
        self.raw(len)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut w = Writer::default();
        w.u32(7);
        w.string(b"abc");
        let bytes = w.into_bytes();
        assert_eq!(bytes, b"\0\0\0\x07\0\0\0\x03abc");
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u32(), Ok(7));
        assert_eq!(r.string(), Ok(&b"abc"[..]));
        r.finish().unwrap();

        let mut short = Reader::new(b"\0\0\0\x09abc");
        assert_eq!(short.string(), Err(WireError::Truncated));
        let mut rest = Reader::new(b"\0\0\0\x01ab");
        rest.string().unwrap();
        assert_eq!(rest.finish(), Err(WireError::Trailing));
    }
}

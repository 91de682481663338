//! A bounds-checked cursor over a message body, shared by every view.
//!
//! Every read checks the remaining length first and fails with
//! [`CodecError::Malformed`]; nothing here indexes, allocates or panics.
//! Strings are read the way PostgreSQL's `pq_getmsgstring` reads them (up
//! to the first NUL), and [`Reader::finish`] is its `pq_getmsgend`: bytes
//! left after the last field are an error, so the gateway never reads a
//! message differently from the server behind it.

use super::error::CodecError;

/// Cursor over the body of one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    /// Names the message in errors, e.g. "Bind message".
    message: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`, the body of `message`.
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Self { buf, message }
    }

    /// An error about this message.
    pub(crate) fn error(&self, reason: &'static str) -> CodecError {
        CodecError::malformed(self.message, reason)
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Everything not read yet, without consuming it.
    pub(crate) fn peek(&self) -> &'a [u8] {
        self.buf
    }

    /// A reader over `buf` whose errors name the same message.
    pub(crate) fn sub(&self, buf: &'a [u8]) -> Reader<'a> {
        Reader::new(buf, self.message)
    }

    /// Takes everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Takes the next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let (head, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or_else(|| self.error("message is shorter than its fields"))?;
        self.buf = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or_else(|| self.error("message is shorter than its fields"))?;
        self.buf = tail;
        Ok(*head)
    }

    /// Reads a byte.
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        self.array::<1>().map(|[b]| b)
    }

    /// Reads a big-endian Int16 as PostgreSQL's unsigned `pq_getmsgint(.., 2)`
    /// does for counts.
    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a big-endian signed Int16.
    pub(crate) fn i16(&mut self) -> Result<i16, CodecError> {
        self.array().map(i16::from_be_bytes)
    }

    /// Reads a big-endian signed Int32.
    pub(crate) fn i32(&mut self) -> Result<i32, CodecError> {
        self.array().map(i32::from_be_bytes)
    }

    /// Reads a big-endian Int32 as an OID.
    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads a NUL-terminated string as bytes, without the NUL.
    pub(crate) fn cstr_bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let nul = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.error("string is not NUL-terminated"))?;
        let (s, tail) = self.buf.split_at(nul);
        // `tail` starts with the NUL found above.
        self.buf = tail.get(1..).unwrap_or_default();
        Ok(s)
    }

    /// Reads a NUL-terminated UTF-8 string, without the NUL.
    pub(crate) fn cstr(&mut self) -> Result<&'a str, CodecError> {
        let bytes = self.cstr_bytes()?;
        std::str::from_utf8(bytes).map_err(|_| self.error("string is not valid UTF-8"))
    }

    /// Fails unless `count` items of at least `min_size` bytes each can fit in
    /// what is left: called on every wire count before allocating for it.
    pub(crate) fn ensure_count(
        &self,
        count: usize,
        min_size: usize,
        reason: &'static str,
    ) -> Result<(), CodecError> {
        match count.checked_mul(min_size) {
            Some(need) if need <= self.remaining() => Ok(()),
            _ => Err(self.error(reason)),
        }
    }

    /// Fails if any byte is left: the message must end where its fields end.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.error("trailing bytes after the last field"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_integers_and_strings() {
        let body = b"\x00\x01\xff\xfe\x00\x00\x00\x07abc\0\xc3\0rest";
        let mut r = Reader::new(body, "test message");
        assert_eq!(r.u16().unwrap(), 1);
        assert_eq!(r.i16().unwrap(), -2);
        assert_eq!(r.i32().unwrap(), 7);
        assert_eq!(r.cstr().unwrap(), "abc");
        assert!(
            matches!(r.cstr(), Err(CodecError::Malformed { .. })),
            "not UTF-8"
        );
        assert_eq!(r.rest(), b"rest");
        r.finish().unwrap();
    }

    #[test]
    fn short_reads_fail() {
        let mut r = Reader::new(b"\x00", "test message");
        assert!(r.u16().is_err());
        assert!(r.i32().is_err());
        assert!(r.bytes(2).is_err());
        assert_eq!(r.u8().unwrap(), 0);
        assert!(r.u8().is_err());
        assert!(Reader::new(b"abc", "m").cstr().is_err());
        assert!(Reader::new(b"x", "m").finish().is_err());
    }

    #[test]
    fn ensure_count_checks_overflow() {
        let r = Reader::new(b"12345678", "m");
        assert!(r.ensure_count(2, 4, "x").is_ok());
        assert!(r.ensure_count(3, 4, "x").is_err());
        assert!(r.ensure_count(usize::MAX, 4, "x").is_err());
    }
}

//! A bounds-checked cursor over PDU bytes. Every read names the field it is
//! reading, so a short PDU gets an error that says where it ended.

use super::PduError;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, PduError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PduError> {
        if n > self.remaining() {
            return Err(PduError::Truncated {
                field,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array7(&mut self, field: &'static str) -> Result<[u8; 7], PduError> {
        let mut out = [0; 7];
        out.copy_from_slice(self.take(7, field)?);
        Ok(out)
    }
}

//! The AT framing of `smsgate_proto::at::framing`, as the `tokio_util`
//! decoder the serial reader needs. The decoding itself is pure and lives in
//! the proto crate (fuzzed there).

use bytes::BytesMut;
use tokio_util::codec::Decoder;

pub use smsgate_proto::at::framing::*;

/// [`AtCodec`] behind `tokio_util`'s [`Decoder`] (a trait of another crate
/// cannot be implemented for a type of another crate here, hence the wrap).
#[derive(Debug, Default)]
pub struct AtFramer(AtCodec);

impl AtFramer {
    pub fn new() -> Self {
        Self(AtCodec::new())
    }
}

impl Decoder for AtFramer {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        self.0.decode(buf)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        self.0.decode_eof(buf)
    }
}

//! The DWG frames of `smsgate_proto::dwg`, as the `tokio_util` codec a TCP
//! stream is read and written with. The format itself is pure and lives in
//! the proto crate (fuzzed there).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

pub use smsgate_proto::dwg::*;

/// [`DwgCodec`] behind `tokio_util`'s [`Decoder`] and [`Encoder`].
#[derive(Debug, Default, Clone, Copy)]
pub struct DwgFramer(DwgCodec);

impl Decoder for DwgFramer {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.0.decode(src)
    }
}

impl Encoder<Frame> for DwgFramer {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.0.encode(frame, dst)
    }
}

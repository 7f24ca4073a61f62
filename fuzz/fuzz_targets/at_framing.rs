//! AT framing (smsgate-proto's `at::framing`), as the serial reader runs
//! it. Any bytes, cut in any pieces: the decoder never panics or errors,
//! and, when the bytes hold no `>` (the prompt is recognised at the end of
//! what has arrived so far) and are shorter than a line may be, the frames
//! are the same however the bytes were cut. Every line's final-result
//! parser and error classes never panic either.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use smsgate_proto::at::errors;
use smsgate_proto::at::framing::{self, AtCodec, Frame};

fuzz_target!(|data: &[u8]| {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let whole = frames(bytes, bytes.len().max(1));
    let pieces = frames(bytes, usize::from(step % 16) + 1);
    if !bytes.contains(&b'>') && bytes.len() <= framing::MAX_LINE {
        assert_eq!(whole, pieces);
    }
    for f in whole.iter().chain(&pieces) {
        match f {
            Frame::Final(r) => {
                let _ = errors::classify(r);
                let _ = r.to_string();
            }
            Frame::Line(l) | Frame::Echo(l) => {
                let _ = framing::final_result(l);
                let _ = framing::last_int(l);
            }
            Frame::Record { header, .. } => {
                let _ = framing::last_int(header);
            }
            _ => {}
        }
    }
    for line in String::from_utf8_lossy(bytes).lines() {
        if let Some(r) = framing::final_result(line) {
            let _ = errors::classify(&r);
        }
    }
});

/// The frames of `bytes` fed `step` bytes at a time, then the end of input.
fn frames(bytes: &[u8], step: usize) -> Vec<Frame> {
    let mut codec = AtCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in bytes.chunks(step) {
        buf.extend_from_slice(chunk);
        while let Some(f) = codec.decode(&mut buf).expect("AT decoding never fails") {
            out.push(f);
        }
    }
    while let Some(f) = codec.decode_eof(&mut buf).expect("AT decoding never fails") {
        out.push(f);
    }
    out
}

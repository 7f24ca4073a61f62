//! The DWG binary protocol. Any bytes: the frame decoder returns a frame,
//! "need more" or an error, never panics; a decoded frame that our encoder
//! can write decodes back to the same frame (decode, encode, decode); and
//! the stream decoder, fed the same bytes in small pieces, yields the
//! frames `decode_frame` finds one after the other.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use smsgate_proto::dwg::{self, Body, DwgCodec};

fuzz_target!(|data: &[u8]| {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    // Frame after frame, as a connection reads them.
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut broken = false;
    loop {
        match dwg::decode_frame(rest) {
            Ok(Some((frame, used))) => {
                assert!(used >= dwg::HEADER_LEN && used <= rest.len());
                rest = &rest[used..];
                round_trip(&frame);
                frames.push(frame);
            }
            Ok(None) => break,
            Err(_) => {
                broken = true;
                break;
            }
        }
    }

    // The same bytes through the stream codec, `step` bytes at a time.
    let step = usize::from(step % 64) + 1;
    let mut codec = DwgCodec;
    let mut buf = BytesMut::new();
    let mut streamed = Vec::new();
    let mut failed = false;
    'feed: for chunk in bytes.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => streamed.push(f),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(streamed, frames);
    assert_eq!(failed, broken);
});

fn round_trip(frame: &dwg::Frame) {
    let _ = frame.id.mac_string();
    if let Body::ReceiveSms(m) = &frame.body {
        let _ = m.text();
    }
    if let Body::SendSmsResponse(c) | Body::SendUssdResponse(c) = &frame.body {
        let _ = c.describe();
    }
    // A body we could not read is written as nothing: no round trip.
    if matches!(frame.body, Body::Malformed { .. }) {
        return;
    }
    let Ok(bytes) = dwg::encode_frame(frame) else {
        return;
    };
    let (again, used) = dwg::decode_frame(&bytes)
        .expect("our own frame is in step")
        .expect("our own frame is whole");
    assert_eq!(used, bytes.len());
    assert_eq!(&again, frame);
    let mut buf = BytesMut::new();
    DwgCodec.encode(again, &mut buf).expect("encodes twice");
    assert_eq!(&buf[..], &bytes[..]);
}

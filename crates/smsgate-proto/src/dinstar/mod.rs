//! The Dinstar HTTP API's pure parts: request bodies and lenient reply and
//! push parsers ([`wire`]), and HTTP Digest / Basic ([`digest`]).
//! Sources and quirks: `shared/reference/dinstar-api.md`.

pub mod digest;
pub mod wire;

//! AT commands, pure: the byte stream cut into frames ([`framing`]) and
//! what a modem's refusal means for a message ([`errors`]).

pub mod errors;
pub mod framing;

//! What a `+CMS ERROR` / `+CME ERROR` on a send means for the message: the
//! classes are decided in `smsgate_proto::at::errors` (the table and its
//! sources are there); this turns a class into the engine's [`SendError`].

pub use smsgate_proto::at::errors::{ErrorClass, classify, classify_cme, classify_cms};
use smsgate_proto::at::framing::FinalResult;

use crate::transport::SendError;

/// The send error for a message no part of which has left.
pub fn send_error(result: &FinalResult) -> SendError {
    let reason = format!("the modem answered {result}");
    match classify(result) {
        ErrorClass::Retry => SendError::Temporary { reason },
        ErrorClass::PortUnusable => SendError::PortUnusable { reason },
        ErrorClass::Permanent => SendError::Permanent { reason },
        ErrorClass::OurBug => SendError::Permanent {
            reason: format!("{reason}: the modem refused our PDU (a bug in smsgate)"),
        },
    }
}

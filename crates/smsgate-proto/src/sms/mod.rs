//! Pure SMS code, no I/O: phone numbers, GSM 03.38 / UCS-2, segmentation and
//! the PDU codec. Everything here must be safe on any input (fuzzed).
//!
//! The codec's entry points:
//! - [`plan`]: how a text is cut into segments and what it costs;
//! - [`encode_submit`]: SMS-SUBMIT PDUs for `AT+CMGS`;
//! - [`decode_hex`]: SMS-DELIVER / SUBMIT / STATUS-REPORT from `+CMGR`,
//!   `+CMT` or `+CDS`;
//! - [`Reassembler`]: joins the parts of concatenated inbound messages;
//! - [`decode_report`] / [`encode_report`]: the technician CLI's JSON.

pub mod address;
pub mod dcs;
mod error;
pub mod gsm7;
pub mod pdu;
pub mod phone;
mod reader;
pub mod reassembly;
pub mod report;
pub mod segment;
pub mod timestamp;
pub mod ucs2;
pub mod udh;

pub use address::{Address, AddressKind};
pub use dcs::{Alphabet, DataCoding};
pub use error::PduError;
pub use gsm7::is_gsm7;
pub use pdu::{
    Body, DecodeWarning, DecodedPdu, DeliveryOutcome, ServiceCentre, SmsDeliver, SmsStatusReport,
    SmsSubmit, SubmitOptions, SubmitPdu, Tpdu, UserData, Validity, decode_bytes, decode_hex,
    decode_tpdu, encode_submit, encode_tpdu,
};
pub use reassembly::{Assembled, ConcatKey, Incomplete, Reassembler, Reassembly};
pub use report::{
    DecodeReport, EncodeReport, decode_report, decode_report_with_length, encode_report,
    encode_report_with,
};
pub use segment::{Encoding, Part, RefWidth, SegmentPlan, plan, plan_with};

/// The most parts one message is sent in: 1530 GSM-7 characters or 670
/// UCS-2 ones. Longer texts are refused where they come in (API, imports).
pub const MAX_SEGMENTS: usize = 10;
pub use timestamp::ScTimestamp;
pub use udh::{Concat, InformationElement, UserDataHeader};

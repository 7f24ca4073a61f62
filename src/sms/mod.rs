//! Pure SMS code, no I/O: phone numbers, GSM 03.38 / UCS-2, segmentation and
//! the PDU codec. Everything here must be safe on any input (fuzzed).

pub mod phone;

//! The one error type of the SMS codec. Messages are written for a technician
//! reading `smsgate pdu decode` output, so they say what was found and what was
//! expected, in plain words.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PduError {
    #[error("the PDU is empty")]
    Empty,

    #[error("character {character:?} at position {position} is not a hexadecimal digit")]
    InvalidHex { position: usize, character: char },

    #[error("the hex text has an odd number of digits ({digits})")]
    OddHexLength { digits: usize },

    #[error("the PDU is {octets} bytes long, more than any SMS can be ({max} bytes)")]
    InputTooLong { octets: usize, max: usize },

    #[error("the PDU ends inside the {field}: {needed} more bytes needed, {available} left")]
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },

    #[error(
        "service centre address length {length} is more than the {max} bytes such an address can have"
    )]
    ServiceCentreAddressTooLong { length: usize, max: usize },

    #[error("{field} length {digits} is more than the {max} digits an SMS address can hold")]
    AddressTooLong {
        field: &'static str,
        digits: usize,
        max: usize,
    },

    #[error("message type 3 (first octet 0x{first_octet:02X}) is reserved and cannot be decoded")]
    ReservedMessageType { first_octet: u8 },

    #[error("data coding 0x{dcs:02X} marks the text as compressed, which is not supported")]
    CompressedText { dcs: u8 },

    #[error("user data length {udl} is larger than the {max} {unit} an SMS can carry")]
    UserDataLengthImpossible {
        udl: usize,
        max: usize,
        unit: &'static str,
    },

    #[error("user data length {udl} {unit} needs {needed} bytes, but only {available} follow")]
    UserDataTruncated {
        udl: usize,
        unit: &'static str,
        needed: usize,
        available: usize,
    },

    #[error("the user data header indicator is set but the user data is empty")]
    HeaderWithoutUserData,

    #[error(
        "the user data header of {header} bytes does not fit in the {available} bytes of user data"
    )]
    HeaderTooLong { header: usize, available: usize },

    #[error(
        "information element 0x{id:02X} of {length} bytes runs past the end of the user data header"
    )]
    InformationElementTruncated { id: u8, length: usize },

    #[error("address {address:?} is not valid: {reason}")]
    InvalidAddress {
        address: String,
        reason: &'static str,
    },

    #[error("the text needs {segments} segments; a concatenated SMS has at most 255")]
    TooManySegments { segments: usize },

    #[error("{0}")]
    InvalidTimestamp(&'static str),

    #[error("the message does not fit in one SMS: {length} {unit}, at most {max}")]
    UserDataTooLong {
        length: usize,
        max: usize,
        unit: &'static str,
    },

    #[error("data coding 0x{dcs:02X} means {coding} but the text to encode is {body}")]
    BodyDoesNotMatchCoding {
        dcs: u8,
        coding: &'static str,
        body: &'static str,
    },

    #[error("character {character:?} is not in the GSM 03.38 alphabet")]
    NotGsm7 { character: char },
}

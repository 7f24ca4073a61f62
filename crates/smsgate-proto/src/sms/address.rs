//! SMS addresses: originator, destination and recipient addresses (length in
//! digits), and the service centre address (length in octets).

use std::fmt;

use serde::Serialize;

use super::reader::Reader;
use super::{PduError, gsm7};

/// Most digits (semi-octets) an originator, destination or recipient address
/// holds: ten octets after the type-of-address octet.
pub const MAX_ADDRESS_DIGITS: usize = 20;
/// Most octets a service centre address holds after its length octet.
pub const MAX_SCA_OCTETS: usize = 11;
/// Most characters of an alphanumeric sender (20 semi-octets of septets).
pub const MAX_ALPHANUMERIC_CHARS: usize = 11;

/// The type of number (TON) of an address, from its type-of-address octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressKind {
    Unknown,
    International,
    National,
    NetworkSpecific,
    Subscriber,
    Alphanumeric,
    Abbreviated,
    Reserved,
}

impl AddressKind {
    pub fn from_type_of_address(toa: u8) -> Self {
        match (toa >> 4) & 0x07 {
            0 => AddressKind::Unknown,
            1 => AddressKind::International,
            2 => AddressKind::National,
            3 => AddressKind::NetworkSpecific,
            4 => AddressKind::Subscriber,
            5 => AddressKind::Alphanumeric,
            6 => AddressKind::Abbreviated,
            _ => AddressKind::Reserved,
        }
    }
}

/// An address as it travels: its type-of-address octet (kept as received,
/// so 0x85 or 0xC8 survive a round trip) and its digits or text. The value
/// of an international address holds the digits only; `Display` adds `+`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Address {
    pub kind: AddressKind,
    pub type_of_address: u8,
    pub value: String,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == AddressKind::International && !self.value.is_empty() {
            f.write_str("+")?;
        }
        f.write_str(&self.value)
    }
}

const TOA_UNKNOWN: u8 = 0x81;
const TOA_INTERNATIONAL: u8 = 0x91;
const TOA_NATIONAL: u8 = 0xA1;
const TOA_ALPHANUMERIC: u8 = 0xD0;

fn semi_octet(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(0xA),
        '#' => Some(0xB),
        'a' => Some(0xC),
        'b' => Some(0xD),
        'c' => Some(0xE),
        _ => None,
    }
}

fn semi_octet_char(nibble: u8) -> Option<char> {
    match nibble {
        0..=9 => Some(char::from(b'0' + nibble)),
        0xA => Some('*'),
        0xB => Some('#'),
        0xC => Some('a'),
        0xD => Some('b'),
        0xE => Some('c'),
        _ => None,
    }
}

impl Address {
    /// Reads an address the way a person writes it: `+` and digits is
    /// international; digits alone (also `*` and `#`) is type "unknown", the
    /// type phones use for numbers without `+` and which networks read as
    /// national; anything else up to 11 GSM-7 characters is alphanumeric.
    pub fn parse(text: &str) -> Result<Address, PduError> {
        let text = text.trim();
        if let Some(digits) = text.strip_prefix('+') {
            return Address::digits(TOA_INTERNATIONAL, digits, text);
        }
        if !text.is_empty() && text.chars().all(|c| matches!(c, '0'..='9' | '*' | '#')) {
            return Address::digits(TOA_UNKNOWN, text, text);
        }
        Address::alphanumeric(text)
    }

    /// A number with type "national" (0xA1), for networks that want it.
    pub fn national(digits: &str) -> Result<Address, PduError> {
        Address::digits(TOA_NATIONAL, digits, digits)
    }

    /// An international number; `digits` may start with `+`.
    pub fn international(digits: &str) -> Result<Address, PduError> {
        let bare = digits.strip_prefix('+').unwrap_or(digits);
        Address::digits(TOA_INTERNATIONAL, bare, digits)
    }

    /// An alphanumeric address (type 0xD0), GSM-7 packed on the air.
    pub fn alphanumeric(text: &str) -> Result<Address, PduError> {
        let invalid = |reason| PduError::InvalidAddress {
            address: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        let septets = gsm7::septet_len(text)
            .ok_or_else(|| invalid("an alphanumeric address must use the GSM 03.38 alphabet"))?;
        if septets > MAX_ALPHANUMERIC_CHARS {
            return Err(invalid("an alphanumeric address has at most 11 characters"));
        }
        Ok(Address {
            kind: AddressKind::Alphanumeric,
            type_of_address: TOA_ALPHANUMERIC,
            value: text.to_owned(),
        })
    }

    fn digits(toa: u8, digits: &str, original: &str) -> Result<Address, PduError> {
        let invalid = |reason| PduError::InvalidAddress {
            address: original.to_owned(),
            reason,
        };
        if digits.is_empty() {
            return Err(invalid("it has no digits"));
        }
        if !digits.chars().all(|c| matches!(c, '0'..='9' | '*' | '#')) {
            return Err(invalid("only digits, '*' and '#' are allowed"));
        }
        if digits.len() > MAX_ADDRESS_DIGITS {
            return Err(invalid("an SMS address has at most 20 digits"));
        }
        Ok(Address {
            kind: AddressKind::from_type_of_address(toa),
            type_of_address: toa,
            value: digits.to_owned(),
        })
    }

    fn from_semi_octets(toa: u8, octets: &[u8], digits: usize) -> Address {
        let value = octets
            .iter()
            .flat_map(|&b| [b & 0x0F, b >> 4])
            .take(digits)
            // 0xF is the filler of an odd count; anywhere else it carries
            // nothing a person could dial, so it is dropped.
            .filter_map(semi_octet_char)
            .collect();
        Address {
            kind: AddressKind::from_type_of_address(toa),
            type_of_address: toa,
            value,
        }
    }

    /// Reads an originator, destination or recipient address, whose length
    /// octet counts useful semi-octets.
    pub(crate) fn read(r: &mut Reader<'_>, field: &'static str) -> Result<Address, PduError> {
        let digits = usize::from(r.u8(field)?);
        if digits > MAX_ADDRESS_DIGITS {
            return Err(PduError::AddressTooLong {
                field,
                digits,
                max: MAX_ADDRESS_DIGITS,
            });
        }
        // Even an address with no digits carries its type-of-address octet.
        let toa = r.u8(field)?;
        let octets = r.take(digits.div_ceil(2), field)?;
        if AddressKind::from_type_of_address(toa) == AddressKind::Alphanumeric {
            let septets = gsm7::unpack(octets, 0, digits * 4 / 7);
            return Ok(Address {
                kind: AddressKind::Alphanumeric,
                type_of_address: toa,
                value: gsm7::from_septets(&septets),
            });
        }
        Ok(Address::from_semi_octets(toa, octets, digits))
    }

    /// Reads a service centre address: `None` for the `00` that means "the
    /// modem's default"; an empty value for a type octet with no digits.
    pub(crate) fn read_service_centre(r: &mut Reader<'_>) -> Result<Option<Address>, PduError> {
        const FIELD: &str = "service centre address";
        let length = usize::from(r.u8(FIELD)?);
        if length == 0 {
            return Ok(None);
        }
        if length > MAX_SCA_OCTETS {
            return Err(PduError::ServiceCentreAddressTooLong {
                length,
                max: MAX_SCA_OCTETS,
            });
        }
        let toa = r.u8(FIELD)?;
        let octets = r.take(length - 1, FIELD)?;
        if AddressKind::from_type_of_address(toa) == AddressKind::Alphanumeric {
            let septets = gsm7::unpack(octets, 0, octets.len() * 8 / 7);
            return Ok(Some(Address {
                kind: AddressKind::Alphanumeric,
                type_of_address: toa,
                value: gsm7::from_septets(&septets),
            }));
        }
        Ok(Some(Address::from_semi_octets(
            toa,
            octets,
            octets.len() * 2,
        )))
    }

    fn body(&self) -> Result<(usize, Vec<u8>), PduError> {
        if self.kind == AddressKind::Alphanumeric {
            let septets = gsm7::to_septets(&self.value)?;
            let packed = gsm7::pack(&septets);
            return Ok(((septets.len() * 7).div_ceil(4), packed));
        }
        let nibbles: Vec<u8> = self
            .value
            .chars()
            .map(|c| {
                semi_octet(c).ok_or_else(|| PduError::InvalidAddress {
                    address: self.value.clone(),
                    reason: "only digits, '*' and '#' are allowed",
                })
            })
            .collect::<Result<_, _>>()?;
        let octets = nibbles
            .chunks(2)
            .map(|pair| pair[0] | pair.get(1).copied().unwrap_or(0x0F) << 4)
            .collect();
        Ok((nibbles.len(), octets))
    }

    /// The address as an originator, destination or recipient field:
    /// length in digits, type of address, digits.
    pub fn encode(&self) -> Result<Vec<u8>, PduError> {
        let mut out = Vec::with_capacity(12);
        self.write(&mut out)?;
        Ok(out)
    }

    /// The address as a service centre address field: length in octets
    /// (type included), type of address, digits.
    pub fn encode_service_centre(&self) -> Result<Vec<u8>, PduError> {
        let mut out = Vec::with_capacity(12);
        Address::write_service_centre(Some(self), &mut out)?;
        Ok(out)
    }

    /// Writes an originator, destination or recipient address.
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), PduError> {
        let (digits, octets) = self.body()?;
        if digits > MAX_ADDRESS_DIGITS {
            return Err(PduError::InvalidAddress {
                address: self.value.clone(),
                reason: "an SMS address has at most 20 digits",
            });
        }
        out.push(digits as u8);
        out.push(self.type_of_address);
        out.extend_from_slice(&octets);
        Ok(())
    }

    /// Writes a service centre address (length in octets, type included).
    pub fn write_service_centre(sca: Option<&Address>, out: &mut Vec<u8>) -> Result<(), PduError> {
        let Some(sca) = sca else {
            out.push(0);
            return Ok(());
        };
        // A service centre is a number (TS 24.011 RP-address). Its length
        // counts octets, so an alphanumeric one could not even be read back
        // whole: seven characters fill seven octets, which read as eight
        // (the last one '@').
        if sca.kind == AddressKind::Alphanumeric {
            return Err(PduError::InvalidAddress {
                address: sca.value.clone(),
                reason: "a service centre address is a number, not a name",
            });
        }
        let (_, octets) = sca.body()?;
        if octets.len() + 1 > MAX_SCA_OCTETS {
            return Err(PduError::InvalidAddress {
                address: sca.value.clone(),
                reason: "a service centre address has at most 20 digits",
            });
        }
        out.push(octets.len() as u8 + 1);
        out.push(sca.type_of_address);
        out.extend_from_slice(&octets);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn parses_written_numbers() {
        let a = Address::parse("+19037029920").unwrap();
        assert_eq!(
            (a.kind, a.type_of_address),
            (AddressKind::International, 0x91)
        );
        assert_eq!(a.to_string(), "+19037029920");
        assert_eq!(Address::parse("9037029920").unwrap().type_of_address, 0x81);
        assert_eq!(
            Address::parse("Acme").unwrap().kind,
            AddressKind::Alphanumeric
        );
        assert!(Address::parse("+").is_err());
        assert!(Address::parse("+12a").is_err());
        assert!(Address::parse("").is_err());
        assert!(Address::parse("a very long sender").is_err());
    }

    #[test]
    fn writes_like_modem_manager() {
        let mut out = Vec::new();
        Address::parse("+19037029920")
            .unwrap()
            .write(&mut out)
            .unwrap();
        assert_eq!(hex(&out), "0B919130079229F0");
        out.clear();
        Address::parse("9037029920")
            .unwrap()
            .write(&mut out)
            .unwrap();
        assert_eq!(hex(&out), "0A810973209902");
        out.clear();
        let sca = Address::parse("+19037029920").unwrap();
        Address::write_service_centre(Some(&sca), &mut out).unwrap();
        assert_eq!(hex(&out), "07919130079229F0");
    }

    #[test]
    fn reads_alphanumeric_senders() {
        let data = bytes("0DD0F334FC1CA69701");
        let a = Address::read(&mut Reader::new(&data), "originator address").unwrap();
        assert_eq!(a.to_string(), "sipgate");
        let mut out = Vec::new();
        a.write(&mut out).unwrap();
        assert_eq!(out, data);
        let data = bytes("06D04F5904");
        let a = Address::read(&mut Reader::new(&data), "originator address").unwrap();
        assert_eq!(a.value, "O2_");
    }

    #[test]
    fn an_empty_address_still_has_its_type() {
        let data = bytes("0081");
        let a = Address::read(&mut Reader::new(&data), "destination address").unwrap();
        assert_eq!((a.value.as_str(), a.type_of_address), ("", 0x81));
        let sca = Address::read_service_centre(&mut Reader::new(&bytes("0181"))).unwrap();
        assert_eq!(sca.map(|a| a.value), Some(String::new()));
        assert_eq!(
            Address::read_service_centre(&mut Reader::new(&[0])).unwrap(),
            None
        );
    }

    /// Found by the `pdu_roundtrip` fuzz target: "ACME Co" as a service
    /// centre was written in seven octets and read back as "ACME Co@".
    #[test]
    fn an_alphanumeric_service_centre_is_refused() {
        let name = Address::parse("ACME Co").unwrap();
        assert!(matches!(
            name.encode_service_centre(),
            Err(PduError::InvalidAddress { .. })
        ));
        let options = crate::sms::SubmitOptions {
            service_centre: crate::sms::ServiceCentre::Address(name.clone()),
            ..Default::default()
        };
        assert!(crate::sms::encode_submit(&name, "Hola", &options).is_err());
        // As an originator it is fine: its length counts semi-octets.
        assert!(name.encode().is_ok());
    }

    #[test]
    fn refuses_impossible_lengths() {
        let data = bytes("8191");
        assert!(matches!(
            Address::read(&mut Reader::new(&data), "destination address"),
            Err(PduError::AddressTooLong { digits: 129, .. })
        ));
        assert!(matches!(
            Address::read_service_centre(&mut Reader::new(&bytes("C474"))),
            Err(PduError::ServiceCentreAddressTooLong { length: 196, .. })
        ));
    }
}

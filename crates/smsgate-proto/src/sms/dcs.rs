//! TP-DCS, the data coding scheme (TS 23.038 §4): which alphabet the user
//! data is in, and its message class.

use serde::Serialize;

use super::segment::Encoding;

/// The alphabet of the user data as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Alphabet {
    #[serde(rename = "gsm7")]
    Gsm7,
    #[serde(rename = "8bit")]
    EightBit,
    #[serde(rename = "ucs2")]
    Ucs2,
}

impl Alphabet {
    /// The name used in reports and serialized output.
    pub fn name(self) -> &'static str {
        match self {
            Alphabet::Gsm7 => "gsm7",
            Alphabet::EightBit => "8bit",
            Alphabet::Ucs2 => "ucs2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct DataCoding {
    /// The octet as received, so it is written back unchanged.
    pub raw: u8,
    pub alphabet: Alphabet,
    /// Message class 0-3 when the coding gives one (0 is "flash").
    pub class: Option<u8>,
    pub compressed: bool,
    /// Set when the octet uses a reserved value or bit. Real traffic does
    /// (0xF9, 0xFB), so it is decoded by the spec's rule and flagged.
    pub reserved: bool,
}

impl DataCoding {
    pub fn from_octet(raw: u8) -> DataCoding {
        let class = |meaningful: bool| meaningful.then_some(raw & 0x03);
        let general = |alphabet_bits: u8| match alphabet_bits {
            0 => (Alphabet::Gsm7, false),
            1 => (Alphabet::EightBit, false),
            2 => (Alphabet::Ucs2, false),
            // "Reserved" alphabets are to be read as the default alphabet.
            _ => (Alphabet::Gsm7, true),
        };
        let (alphabet, class, compressed, reserved) = match raw >> 4 {
            // General data coding, with or without automatic deletion.
            0x0..=0x7 => {
                let (alphabet, reserved) = general((raw >> 2) & 0x03);
                (alphabet, class(raw & 0x10 != 0), raw & 0x20 != 0, reserved)
            }
            // Reserved coding groups: the spec says assume GSM-7.
            0x8..=0xB => (Alphabet::Gsm7, None, false, true),
            // Message waiting indication, discard or store.
            0xC | 0xD => (Alphabet::Gsm7, None, false, false),
            0xE => (Alphabet::Ucs2, None, false, false),
            // Data coding / message class; bit 3 is reserved.
            _ => {
                let alphabet = if raw & 0x04 != 0 {
                    Alphabet::EightBit
                } else {
                    Alphabet::Gsm7
                };
                (alphabet, class(true), false, raw & 0x08 != 0)
            }
        };
        DataCoding {
            raw,
            alphabet,
            class,
            compressed,
            reserved,
        }
    }

    /// The coding of a plain (class-less) text message.
    pub fn for_encoding(encoding: Encoding) -> DataCoding {
        DataCoding::from_octet(match encoding {
            Encoding::Gsm7 => 0x00,
            Encoding::Ucs2 => 0x08,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_codings() {
        assert_eq!(DataCoding::from_octet(0x00).alphabet, Alphabet::Gsm7);
        assert_eq!(DataCoding::from_octet(0x08).alphabet, Alphabet::Ucs2);
        assert_eq!(DataCoding::from_octet(0x04).alphabet, Alphabet::EightBit);
        assert_eq!(DataCoding::from_octet(0x10).class, Some(0));
        assert_eq!(DataCoding::from_octet(0x19).alphabet, Alphabet::Ucs2);
        assert_eq!(DataCoding::from_octet(0x19).class, Some(1));
        assert_eq!(DataCoding::from_octet(0xC8).alphabet, Alphabet::Gsm7);
        assert_eq!(DataCoding::from_octet(0xF5).alphabet, Alphabet::EightBit);
        assert!(DataCoding::from_octet(0x39).compressed);
    }

    #[test]
    fn reserved_bit_three_is_flagged_not_obeyed() {
        let f9 = DataCoding::from_octet(0xF9);
        assert_eq!(
            (f9.alphabet, f9.class, f9.reserved),
            (Alphabet::Gsm7, Some(1), true)
        );
        let fb = DataCoding::from_octet(0xFB);
        assert_eq!(
            (fb.alphabet, fb.class, fb.reserved),
            (Alphabet::Gsm7, Some(3), true)
        );
    }
}

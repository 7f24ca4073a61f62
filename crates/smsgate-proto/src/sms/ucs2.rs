//! UCS-2 as phones really use it: UTF-16 big-endian, with characters outside
//! the Basic Multilingual Plane (emoji) sent as surrogate pairs.

/// UTF-16 code units of `text`.
pub fn to_units(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// Big-endian bytes of UTF-16 code units.
pub fn units_to_bytes(units: &[u16]) -> Vec<u8> {
    units.iter().flat_map(|u| u.to_be_bytes()).collect()
}

/// `text` as UTF-16BE bytes.
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Code units from big-endian bytes. An odd last byte cannot be half of a
/// unit that anyone meant, so it is dropped.
pub fn bytes_to_units(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect()
}

/// Text from code units; a surrogate without its partner becomes U+FFFD so a
/// broken sender cannot make decoding fail.
pub fn units_to_string(units: &[u16]) -> String {
    char::decode_utf16(units.iter().copied())
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Text from UTF-16BE bytes.
pub fn decode(bytes: &[u8]) -> String {
    units_to_string(&bytes_to_units(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_travel_as_surrogate_pairs() {
        assert_eq!(encode("😀"), [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(decode(&[0xD8, 0x3D, 0xDE, 0x00]), "😀");
    }

    #[test]
    fn broken_input_does_not_fail() {
        assert_eq!(decode(&[0xD8, 0x3D]), "\u{FFFD}");
        assert_eq!(decode(&[0x00, 0x41, 0x00]), "A");
    }
}

//! GSM 03.38 default alphabet, its extension table, and septet packing.
//!
//! The default alphabet is not ASCII: `@` is 0x00, `$` is 0x02, `_` is 0x11 and
//! 0x5F is `§`, so every conversion goes through these tables.

/// The escape septet that switches the next septet to the extension table.
pub const ESCAPE: u8 = 0x1B;

/// The default alphabet, indexed by septet (TS 23.038 §6.2.1). 0x1B is the
/// escape; it decodes to a space when no extension character follows.
const DEFAULT_ALPHABET: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table (TS 23.038 §6.2.1.1): septet after ESC, character.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How one character is written in GSM-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septets {
    /// A default-alphabet character: one septet.
    One(u8),
    /// An extension character: ESC then this septet, two septets in all.
    Escaped(u8),
}

impl Septets {
    /// How many septets the character costs in a segment.
    pub fn count(self) -> usize {
        match self {
            Septets::One(_) => 1,
            Septets::Escaped(_) => 2,
        }
    }
}

const NOT_IN_ALPHABET: u8 = 0xFF;
const ESCAPED_FLAG: u8 = 0x80;

/// Septet (or 0x80 | extension septet) for each ASCII character, built at
/// compile time so the common case of `lookup` is one array read.
const ASCII_TO_SEPTET: [u8; 128] = {
    let mut table = [NOT_IN_ALPHABET; 128];
    let mut septet = 0;
    while septet < 128 {
        let c = DEFAULT_ALPHABET[septet] as u32;
        // 0x1B decodes to a space, but a space must encode as 0x20.
        if c < 128 && septet != ESCAPE as usize {
            table[c as usize] = septet as u8;
        }
        septet += 1;
    }
    let mut i = 0;
    while i < EXTENSION.len() {
        let (septet, c) = EXTENSION[i];
        let c = c as u32;
        if c < 128 {
            table[c as usize] = ESCAPED_FLAG | septet;
        }
        i += 1;
    }
    table
};

/// How `c` is written in GSM-7, or `None` if the default alphabet and its
/// extension table cannot represent it.
pub fn lookup(c: char) -> Option<Septets> {
    if c.is_ascii() {
        let entry = ASCII_TO_SEPTET[c as usize];
        return match entry {
            NOT_IN_ALPHABET => None,
            e if e & ESCAPED_FLAG != 0 => Some(Septets::Escaped(e & 0x7F)),
            e => Some(Septets::One(e)),
        };
    }
    if c == '€' {
        return Some(Septets::Escaped(0x65));
    }
    DEFAULT_ALPHABET
        .iter()
        .position(|&d| d == c)
        .map(|septet| Septets::One(septet as u8))
}

/// True when every character of `text` can be sent in the GSM-7 alphabet.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| lookup(c).is_some())
}

/// The number of septets `text` takes in GSM-7, or `None` if it is not GSM-7.
pub fn septet_len(text: &str) -> Option<usize> {
    text.chars()
        .try_fold(0usize, |n, c| Some(n + lookup(c)?.count()))
}

/// Converts `text` to unpacked septets.
pub fn to_septets(text: &str) -> Result<Vec<u8>, super::PduError> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match lookup(c) {
            Some(Septets::One(s)) => out.push(s),
            Some(Septets::Escaped(s)) => out.extend_from_slice(&[ESCAPE, s]),
            None => return Err(super::PduError::NotGsm7 { character: c }),
        }
    }
    Ok(out)
}

/// Converts unpacked septets to text. An escape followed by a septet with no
/// extension character shows the default-alphabet character, as TS 23.038
/// asks of a receiver; a trailing lone escape shows as a space.
pub fn from_septets(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut iter = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = iter.next() {
        if s != ESCAPE {
            text.push(DEFAULT_ALPHABET[s as usize]);
            continue;
        }
        match iter.next() {
            Some(ext) => {
                let c = EXTENSION
                    .iter()
                    .find(|&&(e, _)| e == ext)
                    .map(|&(_, c)| c)
                    .unwrap_or(DEFAULT_ALPHABET[ext as usize]);
                text.push(c);
            }
            None => text.push(' '),
        }
    }
    text
}

/// Packs septets LSB-first into `out`, starting `start_bit` bits into it.
/// Bits already in `out` (a user data header) are kept; the gap between them
/// and `start_bit` holds the zero fill bits.
pub fn pack_into(out: &mut Vec<u8>, start_bit: usize, septets: &[u8]) {
    let total_bits = start_bit + septets.len() * 7;
    out.resize(total_bits.div_ceil(8).max(out.len()), 0);
    for (i, &s) in septets.iter().enumerate() {
        let bit = start_bit + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let value = u16::from(s & 0x7F) << shift;
        out[byte] |= value as u8;
        if shift > 1 {
            out[byte + 1] |= (value >> 8) as u8;
        }
    }
}

/// Packs septets into octets with no header.
pub fn pack(septets: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    pack_into(&mut out, 0, septets);
    out
}

/// Reads `count` septets from `packed`, starting `start_bit` bits in. Stops
/// early (never panics) if the data runs out.
pub fn unpack(packed: &[u8], start_bit: usize, count: usize) -> Vec<u8> {
    let available = (packed.len() * 8).saturating_sub(start_bit) / 7;
    let count = count.min(available);
    (0..count)
        .map(|i| {
            let bit = start_bit + i * 7;
            let (byte, shift) = (bit / 8, bit % 8);
            let low = u16::from(packed[byte]);
            let high = packed.get(byte + 1).map_or(0, |&b| u16::from(b));
            (((high << 8 | low) >> shift) & 0x7F) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_alphabet_is_not_ascii() {
        assert_eq!(lookup('@'), Some(Septets::One(0x00)));
        assert_eq!(lookup('$'), Some(Septets::One(0x02)));
        assert_eq!(lookup('_'), Some(Septets::One(0x11)));
        assert_eq!(lookup('§'), Some(Septets::One(0x5F)));
        assert_eq!(lookup(' '), Some(Septets::One(0x20)));
        assert_eq!(lookup('`'), None);
        assert_eq!(lookup('ç'), None);
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        assert_eq!(lookup('€'), Some(Septets::Escaped(0x65)));
        assert_eq!(lookup('['), Some(Septets::Escaped(0x3C)));
        assert_eq!(septet_len("a{b}"), Some(6));
        assert_eq!(septet_len("a😀"), None);
    }

    #[test]
    fn every_table_entry_round_trips() {
        for (septet, &c) in DEFAULT_ALPHABET.iter().enumerate() {
            if septet == ESCAPE as usize {
                continue;
            }
            assert_eq!(lookup(c), Some(Septets::One(septet as u8)), "{c:?}");
        }
        for &(septet, c) in &EXTENSION {
            assert_eq!(lookup(c), Some(Septets::Escaped(septet)));
            assert_eq!(from_septets(&[ESCAPE, septet]), c.to_string());
        }
    }

    #[test]
    fn unknown_escape_shows_the_default_character() {
        assert_eq!(from_septets(&[ESCAPE, 0x41]), "A");
        assert_eq!(from_septets(&[0x41, ESCAPE]), "A ");
    }

    #[test]
    fn packs_hello_world_like_the_spec_examples() {
        let septets = to_septets("hellohello").unwrap();
        assert_eq!(
            pack(&septets),
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(unpack(&pack(&septets), 0, 10), septets);
    }

    #[test]
    fn unpack_stops_at_the_end_of_the_data() {
        assert_eq!(unpack(&[0xFF], 0, 10).len(), 1);
        assert!(unpack(&[], 3, 10).is_empty());
        assert!(unpack(&[0xFF], 100, 10).is_empty());
    }

    #[test]
    fn pack_into_keeps_header_bytes_and_zero_fill() {
        let mut out = vec![0x05, 0x00, 0x03, 0x01, 0x02, 0x01];
        // Six header octets are 48 bits; the text starts at septet 7 (bit 49).
        pack_into(&mut out, 49, &[0x41]);
        assert_eq!(out, [0x05, 0x00, 0x03, 0x01, 0x02, 0x01, 0x82]);
        assert_eq!(unpack(&out, 49, 1), [0x41]);
    }
}

//! How a text is cut into SMS segments, and what it costs.
//!
//! The API calls [`plan`] to tell a client how many segments a text costs
//! before it is queued, so it makes one or two passes over the text and one
//! small allocation, and never encodes anything.

use std::ops::Range;

use serde::Serialize;

use super::gsm7;

/// The alphabet a whole message is sent in. One character outside GSM-7
/// makes the whole message UCS-2 (no transliteration: the customer's text
/// reaches the phone as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// Width of the concatenation reference: 8-bit (IEI 0x00, a 6-octet header)
/// or 16-bit (IEI 0x08, a 7-octet header that costs one more character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefWidth {
    #[default]
    Bits8,
    Bits16,
}

impl Encoding {
    /// The name the API and the database use.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Units (septets or UTF-16 code units) one unconcatenated SMS carries.
    pub fn single_capacity(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Units one part of a concatenated SMS carries after its header.
    pub fn part_capacity(self, width: RefWidth) -> usize {
        match (self, width) {
            (Encoding::Gsm7, RefWidth::Bits8) => 153,
            (Encoding::Gsm7, RefWidth::Bits16) => 152,
            (Encoding::Ucs2, RefWidth::Bits8) => 67,
            (Encoding::Ucs2, RefWidth::Bits16) => 66,
        }
    }
}

/// One segment: where it is in the text and how many units it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    /// Byte range of this segment in the planned text.
    pub range: Range<usize>,
    /// Septets (GSM-7, extension characters count two) or UTF-16 code units.
    pub units: usize,
}

/// What a text costs and how it is cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentPlan {
    pub encoding: Encoding,
    pub segments: usize,
    /// Septets or UTF-16 code units of the whole text, headers excluded.
    pub units: usize,
    pub parts: Vec<Part>,
}

impl SegmentPlan {
    /// The text of each segment, given the text that was planned.
    pub fn part_texts<'t>(&'t self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        self.parts
            .iter()
            .map(move |p| text.get(p.range.clone()).unwrap_or(""))
    }
}

/// Plans `text` with the default 8-bit concatenation reference.
pub fn plan(text: &str) -> SegmentPlan {
    plan_with(text, RefWidth::Bits8)
}

/// Units one character costs in `encoding`.
fn cost(encoding: Encoding, c: char) -> usize {
    match encoding {
        Encoding::Gsm7 => gsm7::lookup(c).map_or(1, gsm7::Septets::count),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// Plans `text` for the given concatenation reference width. Characters are
/// never split, so neither an escape pair nor a surrogate pair straddles two
/// segments.
pub fn plan_with(text: &str, width: RefWidth) -> SegmentPlan {
    let (encoding, units) = match gsm7::septet_len(text) {
        Some(septets) => (Encoding::Gsm7, septets),
        None => (Encoding::Ucs2, text.encode_utf16().count()),
    };
    if units <= encoding.single_capacity() {
        return SegmentPlan {
            encoding,
            segments: 1,
            units,
            parts: vec![Part {
                range: 0..text.len(),
                units,
            }],
        };
    }
    let capacity = encoding.part_capacity(width);
    let mut parts = Vec::with_capacity(units.div_ceil(capacity - 1));
    let (mut start, mut used) = (0, 0);
    for (at, c) in text.char_indices() {
        let n = cost(encoding, c);
        if used + n > capacity {
            parts.push(Part {
                range: start..at,
                units: used,
            });
            (start, used) = (at, 0);
        }
        used += n;
    }
    parts.push(Part {
        range: start..text.len(),
        units: used,
    });
    SegmentPlan {
        encoding,
        segments: parts.len(),
        units,
        parts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_one_segment() {
        let p = plan("hello");
        assert_eq!((p.encoding, p.segments, p.units), (Encoding::Gsm7, 1, 5));
        assert_eq!(plan("").segments, 1);
        assert_eq!(plan(&"a".repeat(160)).segments, 1);
        assert_eq!(plan(&"é".repeat(160)).encoding, Encoding::Gsm7);
        assert_eq!(plan(&"ç".repeat(70)).segments, 1);
        assert_eq!(plan(&"ç".repeat(70)).encoding, Encoding::Ucs2);
    }

    #[test]
    fn long_texts_use_the_concatenated_capacity() {
        assert_eq!(plan(&"a".repeat(161)).segments, 2);
        assert_eq!(plan(&"a".repeat(306)).segments, 2);
        assert_eq!(plan(&"a".repeat(307)).segments, 3);
        assert_eq!(plan(&"ç".repeat(71)).segments, 2);
        assert_eq!(plan(&"ç".repeat(134)).segments, 2);
        assert_eq!(plan(&"ç".repeat(135)).segments, 3);
        assert_eq!(plan_with(&"a".repeat(305), RefWidth::Bits16).segments, 3);
    }

    #[test]
    fn an_escape_pair_is_never_split() {
        // 152 plain characters then a euro: the euro's escape would be the
        // 153rd septet, so the whole euro moves to part two.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let p = plan(&text);
        let texts: Vec<_> = p.part_texts(&text).collect();
        assert_eq!(texts[0], "a".repeat(152));
        assert!(texts[1].starts_with('€'));
        assert_eq!(p.parts[0].units, 152);
    }

    #[test]
    fn a_surrogate_pair_is_never_split() {
        let text = format!("{}😀{}", "ç".repeat(66), "x".repeat(10));
        let p = plan(&text);
        let texts: Vec<_> = p.part_texts(&text).collect();
        assert_eq!(texts[0], "ç".repeat(66));
        assert!(texts[1].starts_with('😀'));
    }
}

//! The user data header: information elements, of which concatenation
//! (IEI 0x00 with an 8-bit reference, 0x08 with a 16-bit one) matters most.

use serde::Serialize;

use super::PduError;
use super::segment::RefWidth;

pub const IEI_CONCAT_8BIT: u8 = 0x00;
pub const IEI_CONCAT_16BIT: u8 = 0x08;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct InformationElement {
    pub id: u8,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct UserDataHeader {
    pub elements: Vec<InformationElement>,
}

/// Where one part sits in a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Concat {
    pub reference: u16,
    pub width: RefWidth,
    pub total: u8,
    pub sequence: u8,
}

impl UserDataHeader {
    /// Parses the header's information elements (the bytes after UDHL).
    pub fn parse(bytes: &[u8]) -> Result<UserDataHeader, PduError> {
        let mut elements = Vec::new();
        let mut rest = bytes;
        while let [id, length, tail @ ..] = rest {
            let length = usize::from(*length);
            if length > tail.len() {
                return Err(PduError::InformationElementTruncated { id: *id, length });
            }
            elements.push(InformationElement {
                id: *id,
                data: tail[..length].to_vec(),
            });
            rest = &tail[length..];
        }
        if let [id] = rest {
            return Err(PduError::InformationElementTruncated { id: *id, length: 0 });
        }
        Ok(UserDataHeader { elements })
    }

    /// The header as sent: UDHL, then each element.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0];
        for e in &self.elements {
            out.push(e.id);
            out.push(e.data.len() as u8);
            out.extend_from_slice(&e.data);
        }
        out[0] = (out.len() - 1) as u8;
        out
    }

    /// The concatenation element, if there is a usable one. TS 23.040 says
    /// to ignore an element with a total or sequence of 0, or a sequence
    /// past the total.
    pub fn concat(&self) -> Option<Concat> {
        self.elements.iter().find_map(|e| {
            let (reference, width, total, sequence) = match (e.id, e.data.as_slice()) {
                (IEI_CONCAT_8BIT, &[r, t, s]) => (u16::from(r), RefWidth::Bits8, t, s),
                (IEI_CONCAT_16BIT, &[hi, lo, t, s]) => {
                    (u16::from_be_bytes([hi, lo]), RefWidth::Bits16, t, s)
                }
                _ => return None,
            };
            (total > 0 && sequence > 0 && sequence <= total).then_some(Concat {
                reference,
                width,
                total,
                sequence,
            })
        })
    }

    /// True if the header has a concatenation element that had to be ignored.
    pub fn has_unusable_concat(&self) -> bool {
        self.concat().is_none()
            && self
                .elements
                .iter()
                .any(|e| matches!(e.id, IEI_CONCAT_8BIT | IEI_CONCAT_16BIT))
    }

    /// A header holding only a concatenation element.
    pub fn for_concat(concat: Concat) -> UserDataHeader {
        let [hi, lo] = concat.reference.to_be_bytes();
        let element = match concat.width {
            RefWidth::Bits8 => InformationElement {
                id: IEI_CONCAT_8BIT,
                data: vec![lo, concat.total, concat.sequence],
            },
            RefWidth::Bits16 => InformationElement {
                id: IEI_CONCAT_16BIT,
                data: vec![hi, lo, concat.total, concat.sequence],
            },
        };
        UserDataHeader {
            elements: vec![element],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_concat_widths() {
        let h = UserDataHeader::parse(&[0x00, 0x03, 0xC3, 0x02, 0x01]).unwrap();
        let c = h.concat().unwrap();
        assert_eq!(
            (c.reference, c.width, c.total, c.sequence),
            (0xC3, RefWidth::Bits8, 2, 1)
        );
        let h = UserDataHeader::parse(&[0x08, 0x04, 0x01, 0x02, 0x03, 0x01]).unwrap();
        assert_eq!(h.concat().unwrap().reference, 0x0102);
        assert_eq!(h.to_bytes(), [0x06, 0x08, 0x04, 0x01, 0x02, 0x03, 0x01]);
    }

    #[test]
    fn ignores_a_concat_with_a_zero_or_out_of_range_part() {
        let h = UserDataHeader::parse(&[0x00, 0x03, 0x01, 0x02, 0x03]).unwrap();
        assert_eq!(h.concat(), None);
        assert!(h.has_unusable_concat());
    }

    #[test]
    fn refuses_an_element_past_the_end() {
        assert!(UserDataHeader::parse(&[0x00, 0x05, 0x01]).is_err());
        assert!(UserDataHeader::parse(&[0x00]).is_err());
        assert_eq!(UserDataHeader::parse(&[]).unwrap().elements.len(), 0);
    }
}

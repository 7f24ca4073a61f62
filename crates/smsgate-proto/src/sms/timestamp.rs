//! The service centre timestamp (TP-SCTS, also TP-DT and absolute TP-VP):
//! seven swapped-BCD octets, the last one the time zone in quarter hours
//! with its sign in bit 3.

use jiff::civil::DateTime;
use jiff::tz::Offset;
use serde::Serialize;

use super::PduError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ScTimestamp {
    /// The full year. The PDU carries two digits; 70-99 read as 19xx and
    /// 00-69 as 20xx (a guess: the century is not on the air).
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset from UTC in quarter hours, -79..=79.
    pub tz_quarters: i8,
}

fn bcd(octet: u8) -> Option<u8> {
    let (units, tens) = (octet >> 4, octet & 0x0F);
    (units <= 9 && tens <= 9).then_some(tens * 10 + units)
}

fn to_bcd(value: u8) -> u8 {
    (value % 10) << 4 | (value / 10 % 10)
}

impl ScTimestamp {
    /// Reads the seven octets; `None` when a digit is not decimal (the time
    /// is then unknown, which is no reason to drop the message).
    pub fn from_octets(octets: [u8; 7]) -> Option<ScTimestamp> {
        let [y, mo, d, h, mi, s, tz] = octets;
        let year = u16::from(bcd(y)?);
        let quarters = bcd(tz & 0xF7)? as i8;
        Some(ScTimestamp {
            year: if year >= 70 { 1900 + year } else { 2000 + year },
            month: bcd(mo)?,
            day: bcd(d)?,
            hour: bcd(h)?,
            minute: bcd(mi)?,
            second: bcd(s)?,
            tz_quarters: if tz & 0x08 != 0 { -quarters } else { quarters },
        })
    }

    pub fn to_octets(&self) -> [u8; 7] {
        let tz = to_bcd(self.tz_quarters.unsigned_abs().min(79))
            | if self.tz_quarters < 0 { 0x08 } else { 0 };
        [
            to_bcd((self.year % 100) as u8),
            to_bcd(self.month),
            to_bcd(self.day),
            to_bcd(self.hour),
            to_bcd(self.minute),
            to_bcd(self.second),
            tz,
        ]
    }

    /// The offset from UTC.
    pub fn offset(&self) -> Offset {
        // At most 79 quarters, well inside what an Offset holds.
        Offset::from_seconds(i32::from(self.tz_quarters) * 900).unwrap_or(Offset::UTC)
    }

    /// The local date and time, if it is a real one.
    pub fn datetime(&self) -> Option<DateTime> {
        DateTime::new(
            i16::try_from(self.year).ok()?,
            i8::try_from(self.month).ok()?,
            i8::try_from(self.day).ok()?,
            i8::try_from(self.hour).ok()?,
            i8::try_from(self.minute).ok()?,
            i8::try_from(self.second).ok()?,
            0,
        )
        .ok()
    }

    /// The instant, if the fields make a real date and time.
    pub fn to_timestamp(&self) -> Option<jiff::Timestamp> {
        self.offset().to_timestamp(self.datetime()?).ok()
    }

    /// RFC 3339 with the sender's offset, e.g. `2013-03-08T15:02:16+02:00`.
    pub fn to_rfc3339(&self) -> Option<String> {
        let instant = self.to_timestamp()?;
        Some(instant.display_with_offset(self.offset()).to_string())
    }

    /// A timestamp for an absolute validity period. The offset must be a
    /// whole number of quarter hours and the year within 1970-2069.
    pub fn new(datetime: DateTime, offset: Offset) -> Result<ScTimestamp, PduError> {
        let seconds = offset.seconds();
        if seconds % 900 != 0 || seconds.abs() > 79 * 900 {
            return Err(PduError::InvalidTimestamp(
                "the offset must be a whole number of quarter hours, at most 19:45",
            ));
        }
        let year = u16::try_from(datetime.year()).unwrap_or(0);
        if !(1970..=2069).contains(&year) {
            return Err(PduError::InvalidTimestamp(
                "the year must be between 1970 and 2069",
            ));
        }
        Ok(ScTimestamp {
            year,
            month: datetime.month() as u8,
            day: datetime.day() as u8,
            hour: datetime.hour() as u8,
            minute: datetime.minute() as u8,
            second: datetime.second() as u8,
            tz_quarters: (seconds / 900) as i8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sign_bit_of_the_zone() {
        let t = ScTimestamp::from_octets([0x20, 0x80, 0x62, 0x91, 0x73, 0x14, 0x48]).unwrap();
        assert_eq!((t.year, t.month, t.day), (2002, 8, 26));
        assert_eq!(t.tz_quarters, -4);
        assert_eq!(t.to_rfc3339().unwrap(), "2002-08-26T19:37:41-01:00");
        assert_eq!(t.to_octets(), [0x20, 0x80, 0x62, 0x91, 0x73, 0x14, 0x48]);
    }

    #[test]
    fn quarter_hours_with_tens() {
        // Raw 0x0A: sign set, 20 quarters => -05:00.
        let t = ScTimestamp::from_octets([0x11, 0x20, 0x82, 0x11, 0x05, 0x05, 0x0A]).unwrap();
        assert_eq!(t.to_rfc3339().unwrap(), "2011-02-28T11:50:50-05:00");
    }

    #[test]
    fn impossible_dates_have_no_instant() {
        assert_eq!(ScTimestamp::from_octets([0xFF; 7]), None);
        let t = ScTimestamp::from_octets([0x11, 0x31, 0x20, 0, 0, 0, 0]).unwrap();
        assert_eq!(t.month, 13);
        assert_eq!(t.to_rfc3339(), None);
    }

    #[test]
    fn builds_absolute_validity() {
        let dt = DateTime::new(2013, 7, 10, 13, 39, 0, 0).unwrap();
        let t = ScTimestamp::new(dt, Offset::from_hours(2).unwrap()).unwrap();
        assert_eq!(t.to_octets(), [0x31, 0x70, 0x01, 0x31, 0x93, 0x00, 0x80]);
        assert!(ScTimestamp::new(dt, Offset::from_seconds(600).unwrap()).is_err());
    }
}

//! Dial strings: which gateway ports (channels) a dialer sends through.
//!
//! The seed's form is "0.3": channels 0 to 3, used round-robin
//! (0-1-2-3-0...). We also accept lists and ranges, "0.3,8,10.11", and '-' as
//! a range mark ("0-3"), since people write ranges that way too. An empty (or
//! blank) dial string means "no ports": portless providers (Twilio, the HTTP
//! "Quality" aggregator) need none.
//!
//! The ports keep the order in which the dial string names them, because
//! that is the round-robin order ("8,0.3" sends on 8 first); a port named
//! twice is kept at its first place only.

use std::fmt;

/// The most ports one dial string may name. Dinstar gateways have at most
/// 64 ports; the cap only stops "0.4000000000" from allocating gigabytes.
pub const MAX_PORTS: usize = 1024;

/// A parsed dial string: the ports in round-robin order, without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DialString {
    ports: Vec<u32>,
}

/// Why a dial string was refused, in words an admin understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialStringError {
    #[error(
        "dial string {input:?}: item {item} is empty (two commas in a row, or a comma at an end)"
    )]
    EmptyItem { input: String, item: usize },
    #[error(
        "dial string {input:?}: {text:?} is not a port number or a range such as \"0.3\" (ports 0 to 3)"
    )]
    Junk { input: String, text: String },
    #[error(
        "dial string {input:?}: the range {text:?} runs backwards; write the lower port first, as in \"{low}.{high}\""
    )]
    ReversedRange {
        input: String,
        text: String,
        low: u32,
        high: u32,
    },
    #[error("dial string {input:?} names more than {max} ports")]
    TooManyPorts { input: String, max: usize },
    #[error(
        "dial string {input:?}: port {port} does not exist on this gateway, which has {port_count} ports (0 to {last})",
        last = port_count.saturating_sub(1)
    )]
    PortBeyondGateway {
        input: String,
        port: u32,
        port_count: u32,
    },
    #[error("dial string {input:?}: this gateway has no ports, so the dial string must be empty")]
    GatewayWithoutPorts { input: String },
}

impl DialString {
    /// Parses a dial string. Spaces around items are ignored.
    pub fn parse(input: &str) -> Result<DialString, DialStringError> {
        let mut ports: Vec<u32> = Vec::new();
        if input.trim().is_empty() {
            return Ok(DialString { ports });
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in input.split(',').enumerate() {
            let text = item.trim();
            if text.is_empty() {
                return Err(DialStringError::EmptyItem {
                    input: input.to_owned(),
                    item: i + 1,
                });
            }
            let junk = || DialStringError::Junk {
                input: input.to_owned(),
                text: text.to_owned(),
            };
            let (low, high) = match text.split_once(['.', '-']) {
                Some((a, b)) => (
                    port_number(a).ok_or_else(junk)?,
                    port_number(b).ok_or_else(junk)?,
                ),
                None => {
                    let p = port_number(text).ok_or_else(junk)?;
                    (p, p)
                }
            };
            if high < low {
                return Err(DialStringError::ReversedRange {
                    input: input.to_owned(),
                    text: text.to_owned(),
                    low: high,
                    high: low,
                });
            }
            // Checked before expanding, so a huge range costs nothing.
            if u64::from(high - low) >= MAX_PORTS as u64 {
                return Err(DialStringError::TooManyPorts {
                    input: input.to_owned(),
                    max: MAX_PORTS,
                });
            }
            for p in low..=high {
                if seen.insert(p) {
                    ports.push(p);
                }
            }
            if ports.len() > MAX_PORTS {
                return Err(DialStringError::TooManyPorts {
                    input: input.to_owned(),
                    max: MAX_PORTS,
                });
            }
        }
        Ok(DialString { ports })
    }

    /// Parses, then checks every port against a gateway with `port_count`
    /// ports (numbered from 0).
    pub fn parse_for_gateway(input: &str, port_count: u32) -> Result<DialString, DialStringError> {
        let d = DialString::parse(input)?;
        d.validate(input, port_count)?;
        Ok(d)
    }

    /// Checks that every port exists on a gateway with `port_count` ports
    /// (numbered 0 to port_count - 1). `input` is only used in the message.
    /// Whether a provider needs ports at all is the caller's rule: an empty
    /// dial string always passes here.
    pub fn validate(&self, input: &str, port_count: u32) -> Result<(), DialStringError> {
        if port_count == 0 && !self.ports.is_empty() {
            return Err(DialStringError::GatewayWithoutPorts {
                input: input.to_owned(),
            });
        }
        match self.ports.iter().find(|&&p| p >= port_count) {
            Some(&port) => Err(DialStringError::PortBeyondGateway {
                input: input.to_owned(),
                port,
                port_count,
            }),
            None => Ok(()),
        }
    }

    /// The ports in round-robin order.
    pub fn ports(&self) -> &[u32] {
        &self.ports
    }

    /// True for a portless dial string (Twilio, HTTP providers).
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// A round-robin cursor over the ports (0-1-2-3-0...). `None` from
    /// [`RoundRobin::next_port`] means there are no ports.
    pub fn round_robin(&self) -> RoundRobin<'_> {
        RoundRobin {
            ports: &self.ports,
            next: 0,
        }
    }
}

impl fmt::Display for DialString {
    /// The canonical form, ranges collapsed: "0.3,8,10.11".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.ports.len() {
            let start = self.ports[i];
            let mut j = i;
            while j + 1 < self.ports.len()
                && Some(self.ports[j + 1]) == self.ports[j].checked_add(1)
            {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if j > i {
                write!(f, "{}.{}", start, self.ports[j])?;
            } else {
                write!(f, "{start}")?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

/// Cycles over a dial string's ports. The dispatcher may skip a port that is
/// unhealthy by simply asking for the next one.
#[derive(Debug, Clone)]
pub struct RoundRobin<'a> {
    ports: &'a [u32],
    next: usize,
}

impl RoundRobin<'_> {
    /// The next port in turn, or `None` when the dial string has no ports.
    pub fn next_port(&mut self) -> Option<u32> {
        let p = *self.ports.get(self.next % self.ports.len().max(1))?;
        self.next = (self.next + 1) % self.ports.len();
        Some(p)
    }
}

/// A port number: ASCII digits only (no sign, no spaces inside).
fn port_number(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The ports a dial string names on a gateway with `ports` ports, in
/// round-robin order. Empty means every port of the gateway.
pub fn parse_dial(dial: &str, ports: u32) -> Result<Vec<u32>, String> {
    if dial.trim().is_empty() {
        return Ok((0..ports).collect());
    }
    DialString::parse_for_gateway(dial, ports)
        .map(|d| d.ports().to_vec())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(s: &str) -> Vec<u32> {
        DialString::parse(s).unwrap().ports().to_vec()
    }

    /// Found by the `dialstring` fuzz target's round trip: the last port
    /// number and port 0 were shown as the range "4294967295.0", which runs
    /// backwards and does not parse.
    #[test]
    fn the_canonical_form_never_wraps_around() {
        let d = DialString::parse("4294967295,0").unwrap();
        assert_eq!(d.to_string(), "4294967295,0");
        assert_eq!(ports(&d.to_string()), [4294967295, 0]);
    }

    #[test]
    fn seed_range_means_ports_0_to_3() {
        assert_eq!(ports("0.3"), vec![0, 1, 2, 3]);
    }

    #[test]
    fn lists_and_ranges_mix() {
        assert_eq!(ports("0.3,8,10.11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(ports(" 0 . 1 , 5 "), vec![0, 1, 5]);
        assert_eq!(ports("0-3"), vec![0, 1, 2, 3]);
        assert_eq!(ports("7"), vec![7]);
        assert_eq!(ports("4.4"), vec![4]);
    }

    #[test]
    fn written_order_is_kept_and_repeats_dropped() {
        assert_eq!(ports("8,0.3"), vec![8, 0, 1, 2, 3]);
        assert_eq!(ports("0.3,2.5,3"), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn empty_means_no_ports() {
        assert!(DialString::parse("").unwrap().is_empty());
        assert!(DialString::parse("  ").unwrap().is_empty());
        assert_eq!(
            DialString::parse("").unwrap().round_robin().next_port(),
            None
        );
    }

    #[test]
    fn reversed_range_is_refused_with_the_fix() {
        let e = DialString::parse("0.3,5.2").unwrap_err();
        assert_eq!(
            e,
            DialStringError::ReversedRange {
                input: "0.3,5.2".into(),
                text: "5.2".into(),
                low: 2,
                high: 5
            }
        );
        assert!(e.to_string().contains("\"2.5\""), "{e}");
    }

    #[test]
    fn junk_is_refused() {
        for bad in [
            "a",
            "0.3x",
            "1.2.3",
            "-1",
            "+1",
            "0..3",
            "0.",
            ".3",
            "99999999999",
        ] {
            assert!(
                matches!(DialString::parse(bad), Err(DialStringError::Junk { .. })),
                "{bad:?} -> {:?}",
                DialString::parse(bad)
            );
        }
        assert!(matches!(
            DialString::parse("0,,3"),
            Err(DialStringError::EmptyItem { item: 2, .. })
        ));
        assert!(matches!(
            DialString::parse("0,"),
            Err(DialStringError::EmptyItem { item: 2, .. })
        ));
    }

    #[test]
    fn huge_ranges_are_refused_without_allocating() {
        assert!(matches!(
            DialString::parse("0.4294967295"),
            Err(DialStringError::TooManyPorts { .. })
        ));
        assert!(DialString::parse("0.1023").is_ok());
    }

    #[test]
    fn ports_beyond_the_gateway_are_refused() {
        let d = DialString::parse("0.3,8").unwrap();
        assert!(d.validate("0.3,8", 16).is_ok());
        let e = d.validate("0.3,8", 8).unwrap_err();
        assert_eq!(
            e,
            DialStringError::PortBeyondGateway {
                input: "0.3,8".into(),
                port: 8,
                port_count: 8
            }
        );
        assert!(e.to_string().contains("0 to 7"), "{e}");
        assert!(DialString::parse_for_gateway("0.4", 4).is_err());
        assert!(DialString::parse_for_gateway("0.3", 4).is_ok());
        assert!(matches!(
            DialString::parse_for_gateway("0", 0),
            Err(DialStringError::GatewayWithoutPorts { .. })
        ));
        assert!(DialString::parse_for_gateway("", 0).is_ok());
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let d = DialString::parse("0.3").unwrap();
        let mut rr = d.round_robin();
        let got: Vec<u32> = (0..6).filter_map(|_| rr.next_port()).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(
            DialString::parse("0,1,2,3,8,10,11").unwrap().to_string(),
            "0.3,8,10.11"
        );
        assert_eq!(DialString::parse("8,0-1").unwrap().to_string(), "8,0.1");
        assert_eq!(DialString::parse("").unwrap().to_string(), "");
    }
}

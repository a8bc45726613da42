//! Ethernet MAC addresses.

use core::fmt;
use core::str::FromStr;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::WireError;

/// A 48-bit Ethernet MAC address, in wire (transmission) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from its six octets.
    #[inline]
    pub const fn new(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8) -> MacAddr {
        MacAddr([a, b, c, d, e, f])
    }

    /// Reads an address from the first six bytes of `bytes`, if it has them.
    #[inline]
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        bytes.first_chunk::<6>().map(|b| MacAddr(*b))
    }

    /// The six octets.
    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The six octets, borrowed.
    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    /// True when the group bit (I/G, bit 0 of the first octet) is set; includes broadcast.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True when the group bit is clear.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// True for `00:00:00:00:00:00`.
    #[inline]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// True when the locally administered bit (U/L, bit 1 of the first octet) is set.
    #[inline]
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The address as a number in the low 48 bits, first octet most significant
    /// (so `00:00:00:00:00:01` is 1).
    #[inline]
    pub const fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// Inverse of [`MacAddr::to_u64`]; bits above the low 48 are ignored.
    #[inline]
    pub const fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The Ethernet group address for an IPv4 multicast group (RFC 1112):
    /// `01:00:5e` followed by the low 23 bits of the group.
    #[inline]
    pub const fn from_ipv4_multicast(group: Ipv4Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }

    /// The Ethernet group address for an IPv6 multicast group (RFC 2464):
    /// `33:33` followed by the low 32 bits of the group.
    #[inline]
    pub const fn from_ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl From<[u8; 6]> for MacAddr {
    #[inline]
    fn from(b: [u8; 6]) -> MacAddr {
        MacAddr(b)
    }
}

impl From<MacAddr> for [u8; 6] {
    #[inline]
    fn from(m: MacAddr) -> [u8; 6] {
        m.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl FromStr for MacAddr {
    type Err = WireError;

    /// Parses six groups of one or two hex digits separated by all `:` or all `-`.
    fn from_str(s: &str) -> Result<MacAddr, WireError> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or(WireError::BadMacAddr)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(WireError::BadMacAddr);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| WireError::BadMacAddr)?;
        }
        if parts.next().is_some() {
            return Err(WireError::BadMacAddr);
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug() {
        let m = MacAddr::new(0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff);
        assert_eq!(m.to_string(), "aa:bb:cc:0d:ee:ff");
        assert_eq!(format!("{m:?}"), "MacAddr(aa:bb:cc:0d:ee:ff)");
    }

    #[test]
    fn parse_accepts_colon_and_dash() {
        let m = MacAddr::new(0x02, 0, 0x5e, 0x10, 0xab, 0xcd);
        assert_eq!("02:00:5e:10:ab:cd".parse::<MacAddr>(), Ok(m));
        assert_eq!("02-00-5E-10-AB-CD".parse::<MacAddr>(), Ok(m));
        assert_eq!("2:0:5e:10:ab:cd".parse::<MacAddr>(), Ok(m));
    }

    #[test]
    fn parse_rejects_garbage() {
        for s in [
            "",
            "02:00:5e:10:ab",
            "02:00:5e:10:ab:cd:ef",
            "02:00:5e:10:ab:cdd",
            "02:00:5e:10::cd",
            "02:00-5e:10:ab:cd",
            "0g:00:5e:10:ab:cd",
            "+1:00:5e:10:ab:cd",
            "02:00:5e:10:ab:cd:",
        ] {
            assert_eq!(s.parse::<MacAddr>(), Err(WireError::BadMacAddr), "{s}");
        }
    }

    #[test]
    fn classification() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        assert!(MacAddr::ZERO.is_zero());
        assert!(MacAddr::ZERO.is_unicast());
        let m = MacAddr::new(0x01, 0, 0x5e, 0, 0, 1);
        assert!(m.is_multicast() && !m.is_broadcast());
        assert!(MacAddr::new(0x02, 0, 0, 0, 0, 1).is_local());
        assert!(!MacAddr::new(0x00, 0x1b, 0x21, 0, 0, 1).is_local());
    }

    #[test]
    fn u64_round_trip() {
        assert_eq!(MacAddr::new(0, 0, 0, 0, 0, 1).to_u64(), 1);
        assert_eq!(MacAddr::BROADCAST.to_u64(), 0xffff_ffff_ffff);
        let m = MacAddr::new(0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc);
        assert_eq!(m.to_u64(), 0x1234_5678_9abc);
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert_eq!(
            MacAddr::from_u64(0xffff_0000_0000_0001),
            MacAddr::new(0, 0, 0, 0, 0, 1)
        );
    }

    #[test]
    fn multicast_mappings() {
        assert_eq!(
            MacAddr::from_ipv4_multicast(Ipv4Addr::new(239, 129, 2, 3)),
            MacAddr::new(0x01, 0x00, 0x5e, 0x01, 0x02, 0x03)
        );
        let g: Ipv6Addr = "ff02::1:ff12:3456".parse().unwrap();
        assert_eq!(
            MacAddr::from_ipv6_multicast(g),
            MacAddr::new(0x33, 0x33, 0xff, 0x12, 0x34, 0x56)
        );
        assert_eq!(MacAddr::from_slice(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr::new(1, 2, 3, 4, 5, 6))
        );
    }
}

//! Ethernet II frames (no FCS).
//!
//! Contract: once [`EthernetFrame::check_len`] passed, no getter panics.

use core::fmt;

use crate::{MacAddr, Result, WireError, bytes};

/// An EtherType value; the associated constants name the ones the router uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// 802.1Q VLAN tag (C-tag).
    pub const VLAN: EtherType = EtherType(0x8100);
    /// 802.1ad service tag (S-tag, QinQ).
    pub const QINQ: EtherType = EtherType(0x88a8);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);

    /// True for the two VLAN tag protocol identifiers (0x8100, 0x88a8).
    #[inline]
    pub const fn is_vlan(self) -> bool {
        self.0 == 0x8100 || self.0 == 0x88a8
    }
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            EtherType::IPV4 => "IPv4",
            EtherType::ARP => "ARP",
            EtherType::VLAN => "VLAN",
            EtherType::QINQ => "QinQ",
            EtherType::IPV6 => "IPv6",
            _ => return write!(f, "EtherType({:#06x})", self.0),
        };
        f.write_str(name)
    }
}

impl From<u16> for EtherType {
    #[inline]
    fn from(v: u16) -> EtherType {
        EtherType(v)
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view over an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after [`EthernetFrame::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Ensures the buffer holds the 14-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header length plus `payload_len`.
    #[inline]
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        bytes::mac_at(self.buffer.as_ref(), field::DST.start)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        bytes::mac_at(self.buffer.as_ref(), field::SRC.start)
    }

    /// EtherType (or TPID when the frame is VLAN tagged).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(bytes::u16_at(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    /// Everything after the 14-byte header (including any padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ty: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ty.0.to_be_bytes());
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// A parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: MacAddr,
    /// Destination address.
    pub dst_addr: MacAddr,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length (14).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the frame must be at least 14 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(bytes) {
        let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
        let _ = EthernetRepr::parse(&f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ARP request from 52:54:00:12:34:56 (padded to 60 bytes).
    const FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, //
        0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x02, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn parse_real_frame() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.payload().len(), 46);
        assert_eq!(format!("{:?}", f.ethertype()), "ARP");
        assert_eq!(format!("{:?}", EtherType(0x88cc)), "EtherType(0x88cc)");
    }

    #[test]
    fn truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).err(),
            Some(WireError::Truncated)
        );
        assert!(
            EthernetFrame::new_checked(&FRAME[..14])
                .unwrap()
                .payload()
                .is_empty()
        );
    }

    #[test]
    fn every_prefix_is_safe() {
        for n in 0..=FRAME.len() {
            read_all(&FRAME[..n]);
        }
    }

    #[test]
    fn repr_round_trip() {
        let repr = EthernetRepr {
            src_addr: MacAddr::new(2, 0, 0, 0, 0, 1),
            dst_addr: MacAddr::new(2, 0, 0, 0, 0, 2),
            ethertype: EtherType::IPV6,
        };
        let mut buf = [0u8; 14];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        repr.emit(&mut f);
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&f).unwrap(), repr);
        assert_eq!(repr.buffer_len(), 14);

        let (eth, rest) = etherparse::Ethernet2Header::from_slice(&buf).unwrap();
        assert!(rest.is_empty());
        assert_eq!(eth.source, repr.src_addr.0);
        assert_eq!(eth.destination, repr.dst_addr.0);
        assert_eq!(eth.ether_type, etherparse::EtherType::IPV6);
    }
}

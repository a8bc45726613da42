//! UDP headers (RFC 768).
//!
//! Contract: once [`UdpPacket::check_len`] passed, no getter panics. `check_len`
//! requires the 8-byte header and a length field between 8 and the buffer length;
//! the datagram ends at that length (anything after it is ignored).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::{IpProtocol, Result, WireError, bytes};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view over a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`UdpPacket::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validates the header and the length field (8 <= length <= buffer).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if field_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field: header plus payload.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum as stored (0 means "none" over IPv4).
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Payload, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }

    #[inline]
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// True when the checksum is valid over the IPv4 pseudo-header, or absent (0).
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, self.len());
        checksum::finish(ph + checksum::sum(self.datagram())) == 0
    }

    /// True when the checksum is valid over the IPv6 pseudo-header (0 is invalid
    /// over IPv6, RFC 8200 §8.1).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, u32::from(self.len()));
        checksum::finish(ph + checksum::sum(self.datagram())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (checksum not updated).
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port (checksum not updated).
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Mutable payload, up to the length field.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }

    /// Computes and stores the checksum over the IPv4 pseudo-header (0 sent as 0xFFFF).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, self.len());
        let c = checksum::finish(ph + checksum::sum(self.datagram()));
        self.set_checksum(checksum::udp_zero_to_ffff(c));
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header (0 sent as 0xFFFF).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, u32::from(self.len()));
        let c = checksum::finish(ph + checksum::sum(self.datagram()));
        self.set_checksum(checksum::udp_zero_to_ffff(c));
    }

    /// Patches the checksum after an IPv4 address in the pseudo-header changed
    /// (RFC 1624). An absent checksum (0) stays absent.
    #[inline]
    pub fn update_checksum_for_addr_v4(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = self.checksum();
        if c != 0 {
            let c = checksum::update_u32(c, old.to_bits(), new.to_bits());
            self.set_checksum(checksum::udp_zero_to_ffff(c));
        }
    }

    /// Patches the checksum after an IPv6 address in the pseudo-header changed.
    #[inline]
    pub fn update_checksum_for_addr_v6(&mut self, old: &Ipv6Addr, new: &Ipv6Addr) {
        let c = checksum::update_u128(self.checksum(), &old.octets(), &new.octets());
        self.set_checksum(checksum::udp_zero_to_ffff(c));
    }
}

/// A parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port (never 0).
    pub dst_port: u16,
    /// Payload length in bytes (at most 65527).
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parses a header; destination port 0 is `Malformed`. The checksum is not
    /// verified: call `verify_checksum_v4`/`_v6`.
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<UdpRepr> {
        packet.check_len()?;
        if packet.dst_port() == 0 {
            return Err(WireError::Malformed);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    /// Header length (8).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with a zero checksum; write the payload, then call
    /// `fill_checksum_v4`/`_v6` (or keep 0 over IPv4, e.g. for VXLAN).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(u16::try_from(HEADER_LEN + self.payload_len).unwrap_or(u16::MAX));
        packet.set_checksum(0);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(p) = UdpPacket::new_checked(bytes) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload().len(),
        );
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let _ = p.verify_checksum_v4(a, a);
        let _ = p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST);
        let _ = UdpRepr::parse(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);

    // DNS query for example.com A, 53000 -> 53 (the payload of ipv4::tests::UDP_PACKET).
    const DATAGRAM: [u8; 37] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0x2c, 0xe2, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, //
        0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    #[test]
    fn parse_real_datagram() {
        let p = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (53000, 53, 37));
        assert_eq!(p.checksum(), 0x2ce2);
        assert_eq!(p.payload().len(), 29);
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(SRC, Ipv4Addr::new(198, 18, 0, 54)));
        assert_eq!(
            UdpRepr::parse(&p),
            Ok(UdpRepr {
                src_port: 53000,
                dst_port: 53,
                payload_len: 29
            })
        );
    }

    #[test]
    fn bad_length_fields() {
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM[..7]).err(),
            Some(WireError::Truncated)
        );
        for (len, err) in [
            (0u8, WireError::Malformed),
            (7, WireError::Malformed),
            (38, WireError::Truncated),
        ] {
            let mut b = DATAGRAM;
            b[5] = len;
            assert_eq!(UdpPacket::new_checked(&b[..]).err(), Some(err), "len {len}");
        }
        // A shorter length field is fine: the rest is ignored.
        let mut b = DATAGRAM;
        b[5] = 8;
        assert!(UdpPacket::new_checked(&b[..]).unwrap().payload().is_empty());
    }

    #[test]
    fn every_prefix_is_safe() {
        for n in 0..=DATAGRAM.len() {
            read_all(&DATAGRAM[..n]);
            assert_eq!(
                UdpPacket::new_checked(&DATAGRAM[..n]).is_ok(),
                n == DATAGRAM.len()
            );
        }
    }

    #[test]
    fn zero_checksum_rules() {
        let mut b = DATAGRAM;
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        p.set_checksum(0);
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST));
        p.update_checksum_for_addr_v4(SRC, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.checksum(), 0);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose a payload word so that the checksum computes to 0.
        let mut b = [0u8; 10];
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: 2,
        }
        .emit(&mut p);
        p.fill_checksum_v4(SRC, DST);
        let c = p.checksum();
        // Adding `c` to the payload word turns the checksum into 0 (0xFFFF).
        p.payload_mut().copy_from_slice(&c.to_be_bytes());
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn address_rewrite_patches_checksum() {
        let mut b = DATAGRAM;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        let new = Ipv4Addr::new(100, 64, 7, 9);
        p.update_checksum_for_addr_v4(SRC, new);
        assert!(p.verify_checksum_v4(new, DST));
        let a: Ipv6Addr = "2001:200::1".parse().unwrap();
        let b6: Ipv6Addr = "2001:200::2".parse().unwrap();
        let c6: Ipv6Addr = "2001:200:0:ff::9".parse().unwrap();
        p.fill_checksum_v6(&a, &b6);
        p.update_checksum_for_addr_v6(&b6, &c6);
        assert!(p.verify_checksum_v6(&a, &c6));
    }

    #[test]
    fn repr_round_trip_and_etherparse() {
        let repr = UdpRepr {
            src_port: 49152,
            dst_port: 4789,
            payload_len: 5,
        };
        let mut b = [0u8; 13];
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(b"hello");
        p.fill_checksum_v4(SRC, DST);
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p), Ok(repr));

        let (h, rest) = etherparse::UdpHeader::from_slice(&b).unwrap();
        assert_eq!(
            (h.source_port, h.destination_port, h.length),
            (49152, 4789, 13)
        );
        assert_eq!(
            h.calc_checksum_ipv4_raw(SRC.octets(), DST.octets(), rest)
                .unwrap(),
            h.checksum
        );

        let (s6, d6): (Ipv6Addr, Ipv6Addr) = (
            "2001:200::1".parse().unwrap(),
            "2001:200::2".parse().unwrap(),
        );
        let mut b2 = b;
        let mut p = UdpPacket::new_unchecked(&mut b2[..]);
        p.fill_checksum_v6(&s6, &d6);
        assert!(p.verify_checksum_v6(&s6, &d6));
        let (h, rest) = etherparse::UdpHeader::from_slice(&b2).unwrap();
        assert_eq!(
            h.calc_checksum_ipv6_raw(s6.octets(), d6.octets(), rest)
                .unwrap(),
            h.checksum
        );
    }
}

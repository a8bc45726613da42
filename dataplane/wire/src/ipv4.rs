//! IPv4 headers (RFC 791), with options and the router's hot-path helpers.
//!
//! Contract: once [`Ipv4Packet::check_len`] passed, no getter panics. `check_len`
//! validates IHL (>= 5, IHL*4 within the buffer) and total length (>= header
//! length, within the buffer); it does not check the version or the checksum.
//! The buffer may be longer than `total_len` (Ethernet padding): [`Ipv4Packet::payload`]
//! stops at `total_len`.

use std::net::Ipv4Addr;

use crate::checksum;
use crate::{IpProtocol, Result, WireError, bytes};

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Longest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`Ipv4Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validates the buffer length against the fixed header, IHL and total length.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::Malformed);
        }
        if total_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for a valid packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit Congestion Notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length (header and payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// True for any fragment (MF set or non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// True for a fragment other than the first: it carries no L4 header.
    #[inline]
    pub fn is_non_first_fragment(&self) -> bool {
        self.flags_offset() & OFFSET_MASK != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Upper-layer protocol.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        bytes::ipv4_at(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        bytes::ipv4_at(self.buffer.as_ref(), field::DST)
    }

    /// The option bytes, between byte 20 and the header length (not decoded).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..usize::from(self.header_len())]
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.header_len())]
    }

    /// The payload, from the end of the header to `total_len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[usize::from(self.header_len())..usize::from(self.total_len())]
    }

    /// True when the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version.
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4).
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }

    /// Sets the DSCP (low 6 bits).
    #[inline]
    pub fn set_dscp(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (v << 2);
    }

    /// Sets the ECN (low 2 bits).
    #[inline]
    pub fn set_ecn(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (v & 0x03);
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::IDENT, v);
    }

    #[inline]
    fn set_flags_offset(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    /// Sets the Don't Fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, v: bool) {
        let f = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(if v { f | FLAG_DF } else { f });
    }

    /// Sets the More Fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, v: bool) {
        let f = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(if v { f | FLAG_MF } else { f });
    }

    /// Sets the fragment offset in bytes (must be a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, bytes_offset: u16) {
        let f = (self.flags_offset() & !OFFSET_MASK) | ((bytes_offset >> 3) & OFFSET_MASK);
        self.set_flags_offset(f);
    }

    /// Sets the time to live (checksum not updated).
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, v: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = v.0;
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the source address (checksum not updated).
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        bytes::put_bytes(self.buffer.as_mut(), field::SRC, &a.octets());
    }

    /// Sets the destination address (checksum not updated).
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        bytes::put_bytes(self.buffer.as_mut(), field::DST, &a.octets());
    }

    /// Computes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Decrements the TTL and patches the checksum (RFC 1624); returns the new TTL.
    /// A TTL already at 0 is left alone and 0 is returned: callers check
    /// `ttl() <= 1` first and send Time Exceeded instead.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let b = self.buffer.as_mut();
        let ttl = b[field::TTL];
        if ttl == 0 {
            return 0;
        }
        let proto = b[field::PROTOCOL];
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        b[field::TTL] = ttl - 1;
        let c = checksum::update_u16(bytes::u16_at(b, field::CHECKSUM), old, new);
        bytes::put_u16(b, field::CHECKSUM, c);
        ttl - 1
    }

    /// Rewrites the source address and patches the header checksum; returns the old
    /// address (to fix the L4 checksum, e.g. [`crate::UdpPacket::update_checksum_for_addr_v4`]).
    #[inline]
    pub fn set_src_addr_incremental(&mut self, a: Ipv4Addr) -> Ipv4Addr {
        let old = self.src_addr();
        let c = checksum::update_u32(self.checksum(), old.to_bits(), a.to_bits());
        self.set_src_addr(a);
        self.set_checksum(c);
        old
    }

    /// Rewrites the destination address and patches the header checksum; returns
    /// the old address.
    #[inline]
    pub fn set_dst_addr_incremental(&mut self, a: Ipv4Addr) -> Ipv4Addr {
        let old = self.dst_addr();
        let c = checksum::update_u32(self.checksum(), old.to_bits(), a.to_bits());
        self.set_dst_addr(a);
        self.set_checksum(c);
        old
    }

    /// Mutable option bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// Mutable payload (up to `total_len`).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len());
        let end = usize::from(self.total_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

/// A parsed, unfragmented IPv4 header (options are ignored on parse and never emitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes (at most 65515).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Parses a header. Version other than 4 is `Malformed`; a fragment is
    /// `Unsupported` (a `Repr` describes a whole datagram). The checksum is not
    /// verified: call [`Ipv4Packet::verify_checksum`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(WireError::Malformed);
        }
        if packet.is_fragment() {
            return Err(WireError::Unsupported);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - usize::from(packet.header_len()),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Header length (20).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with its checksum; the buffer must be at least 20
    /// bytes. `total_len` saturates at 65535 if `payload_len` is too large.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        let total = u16::try_from(HEADER_LEN + self.payload_len).unwrap_or(u16::MAX);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_flags_offset(if self.dont_frag { FLAG_DF } else { 0 });
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(p) = Ipv4Packet::new_checked(bytes) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
            p.ident(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
        );
        let _ = (
            p.is_non_first_fragment(),
            p.ttl(),
            p.protocol(),
            p.checksum(),
        );
        let _ = (
            p.src_addr(),
            p.dst_addr(),
            p.options().len(),
            p.header().len(),
        );
        let _ = (p.payload().len(), p.verify_checksum());
        let _ = Ipv4Repr::parse(&p);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    // UDP DNS query 192.0.2.1:53000 -> 198.18.0.53:53, DF, TTL 64.
    pub(crate) const UDP_PACKET: [u8; 57] = [
        0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x96, 0x25, 0xc0, 0x00, //
        0x02, 0x01, 0xc6, 0x12, 0x00, 0x35, 0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0x2c, 0xe2, //
        0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, //
        0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, //
        0x01,
    ];

    // IGMPv2 report to 239.1.2.3 with a Router Alert option (IHL 6), TTL 1, CS6.
    const IGMP_WITH_OPTIONS: [u8; 32] = [
        0x46, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x6d, 0x00, 0xc6, 0x12, //
        0x00, 0x01, 0xef, 0x01, 0x02, 0x03, 0x94, 0x04, 0x00, 0x00, 0x16, 0x00, 0xf8, 0xfa, //
        0xef, 0x01, 0x02, 0x03,
    ];

    #[test]
    fn parse_real_packet() {
        let p = Ipv4Packet::new_checked(&UDP_PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 57);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 18, 0, 53));
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 37);
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 37);
        assert_eq!(r.protocol, IpProtocol::UDP);
    }

    #[test]
    fn parse_options() {
        let p = Ipv4Packet::new_checked(&IGMP_WITH_OPTIONS[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.dscp(), 48);
        assert_eq!(p.protocol(), IpProtocol::IGMP);
        assert_eq!(p.payload(), &IGMP_WITH_OPTIONS[24..]);
        assert!(p.verify_checksum());
        let ep = etherparse::Ipv4HeaderSlice::from_slice(&IGMP_WITH_OPTIONS).unwrap();
        assert_eq!(ep.options(), p.options());
        assert_eq!(ep.to_header().calc_header_checksum(), p.checksum());
    }

    #[test]
    fn padding_is_not_payload() {
        let mut b = UDP_PACKET.to_vec();
        b.extend_from_slice(&[0u8; 7]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 37);
    }

    #[test]
    fn bad_length_fields() {
        let with = |at: usize, v: u8| {
            let mut b = UDP_PACKET;
            b[at] = v;
            Ipv4Packet::new_checked(b).err()
        };
        assert_eq!(with(0, 0x44), Some(WireError::Malformed)); // IHL 4
        assert_eq!(with(0, 0x40), Some(WireError::Malformed)); // IHL 0
        assert_eq!(with(0, 0x4f), Some(WireError::Truncated)); // IHL*4 60 > buffer 57
        assert_eq!(with(3, 0x13), Some(WireError::Malformed)); // total_len 19 < 20
        assert_eq!(with(3, 0x3a), Some(WireError::Truncated)); // total_len 58 > 57
        // IHL*4 beyond the buffer.
        let p = Ipv4Packet::new_checked(&IGMP_WITH_OPTIONS[..22]);
        assert_eq!(p.err(), Some(WireError::Truncated));
        assert_eq!(
            Ipv4Packet::new_checked(&UDP_PACKET[..19]).err(),
            Some(WireError::Truncated)
        );
        // IHL*4 within the buffer but beyond total_len.
        let mut b = UDP_PACKET.to_vec();
        b.resize(60, 0);
        b[0] = 0x4f;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::Malformed)
        );
        // Version is the Repr's business.
        let mut b = UDP_PACKET;
        b[0] = 0x65;
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn every_prefix_is_safe() {
        for pkt in [&UDP_PACKET[..], &IGMP_WITH_OPTIONS[..]] {
            for n in 0..=pkt.len() {
                read_all(&pkt[..n]);
                assert_eq!(Ipv4Packet::new_checked(&pkt[..n]).is_ok(), n == pkt.len());
            }
        }
    }

    #[test]
    fn fragments() {
        let mut b = UDP_PACKET;
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        assert!(p.is_fragment() && !p.is_non_first_fragment());
        p.set_frag_offset(1480);
        p.set_more_frags(false);
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment() && p.is_non_first_fragment() && !p.dont_frag());
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Unsupported));
        p.fill_checksum();
        let ep = etherparse::Ipv4HeaderSlice::from_slice(&b).unwrap();
        assert_eq!(ep.fragments_offset().value(), 1480 / 8);
        assert!(!ep.more_fragments());
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid() {
        let mut b = UDP_PACKET;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        for expected in (0..64).rev() {
            assert_eq!(p.decrement_ttl(), expected);
            assert!(p.verify_checksum(), "ttl {expected}");
        }
        assert_eq!(p.decrement_ttl(), 0);
        assert!(p.verify_checksum());
        let stored = p.checksum();
        p.fill_checksum();
        assert_eq!(stored, p.checksum());
    }

    #[test]
    fn incremental_address_rewrite() {
        let mut b = IGMP_WITH_OPTIONS;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        let old = p.set_src_addr_incremental(Ipv4Addr::new(203, 0, 113, 77));
        assert_eq!(old, Ipv4Addr::new(198, 18, 0, 1));
        p.set_dst_addr_incremental(Ipv4Addr::new(224, 0, 0, 22));
        assert!(p.verify_checksum());
        let stored = p.checksum();
        p.fill_checksum();
        assert_eq!(stored, p.checksum());
    }

    proptest! {
        /// The hot-path helpers leave exactly the checksum a full recomputation gives.
        #[test]
        fn incremental_helpers_match_fill(
            mut h in proptest::collection::vec(any::<u8>(), 20),
            src in any::<u32>(),
            dst in any::<u32>(),
        ) {
            h[0] = 0x45;
            h[2..4].copy_from_slice(&20u16.to_be_bytes());
            let mut p = Ipv4Packet::new_checked(&mut h[..]).unwrap();
            p.fill_checksum();
            let before = p.ttl();
            p.decrement_ttl();
            p.set_src_addr_incremental(Ipv4Addr::from_bits(src));
            p.set_dst_addr_incremental(Ipv4Addr::from_bits(dst));
            prop_assert_eq!(p.ttl(), before.saturating_sub(1));
            let incremental = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(incremental, p.checksum());
        }

        /// L4 checksum patches for an address change match a full recomputation.
        #[test]
        fn l4_address_patch_matches_fill(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            a in any::<u32>(),
            b in any::<u32>(),
            c in any::<u32>(),
        ) {
            let [a, b, c] = [a, b, c].map(Ipv4Addr::from_bits);
            let mut buf = vec![0u8; 20 + payload.len()];
            buf[20..].copy_from_slice(&payload);
            let mut udp = crate::UdpPacket::new_unchecked(&mut buf[..]);
            let repr = crate::UdpRepr { src_port: 1000, dst_port: 53, payload_len: 12 + payload.len() };
            repr.emit(&mut udp);
            udp.fill_checksum_v4(a, b);
            udp.update_checksum_for_addr_v4(b, c);
            let patched = udp.checksum();
            udp.fill_checksum_v4(a, c);
            prop_assert_eq!(patched, udp.checksum());
            prop_assert!(udp.verify_checksum_v4(a, c));

            let mut tcp = crate::TcpPacket::new_unchecked(&mut buf[..]);
            let repr = crate::TcpRepr {
                src_port: 1,
                dst_port: 2,
                seq_number: 3,
                ack_number: 4,
                flags: crate::TcpFlags::ACK,
                window_len: 5,
            };
            repr.emit(&mut tcp);
            tcp.fill_checksum_v4(a, b);
            tcp.update_checksum_for_addr_v4(a, c);
            let patched = tcp.checksum();
            tcp.fill_checksum_v4(c, b);
            prop_assert_eq!(patched, tcp.checksum());
        }
    }

    #[test]
    fn repr_round_trip_and_etherparse() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 19, 255, 254),
            protocol: IpProtocol::TCP,
            payload_len: 100,
            ttl: 17,
            dscp: 46,
            ecn: 1,
            ident: 0xbeef,
            dont_frag: true,
        };
        let mut b = vec![0xffu8; 120];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut b[..]));
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Ok(repr));

        let ep = etherparse::Ipv4HeaderSlice::from_slice(&b)
            .unwrap()
            .to_header();
        assert_eq!(ep.source, [198, 18, 0, 1]);
        assert_eq!(ep.destination, [198, 19, 255, 254]);
        assert_eq!(ep.protocol, etherparse::IpNumber::TCP);
        assert_eq!(ep.total_len, 120);
        assert_eq!(ep.time_to_live, 17);
        assert_eq!(ep.dscp.value(), 46);
        assert_eq!(ep.ecn.value(), 1);
        assert_eq!(ep.identification, 0xbeef);
        assert!(ep.dont_fragment && !ep.more_fragments);
        assert_eq!(ep.header_checksum, ep.calc_header_checksum());
    }
}

//! IPv6 fixed headers (RFC 8200) and the extension-header walker.
//!
//! Contract: once [`Ipv6Packet::check_len`] passed, no getter panics. `check_len`
//! requires the 40-byte header and `40 + payload_len` within the buffer (Jumbograms
//! are not supported); it does not check the version. Extension headers are walked
//! on demand with [`Ipv6ExtHeaders::walk`], which bounds the number of headers and
//! never reads past the buffer.

use std::net::Ipv6Addr;

use crate::{IpProtocol, Result, WireError, bytes};

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
    pub const PAYLOAD: usize = 40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Most extension headers [`Ipv6ExtHeaders::walk`] accepts before giving up.
pub const MAX_EXT_HEADERS: u8 = 8;
/// Length of a Fragment header.
pub const FRAG_HEADER_LEN: usize = 8;

/// A view over an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after [`Ipv6Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validates the fixed header and the payload length.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// IP version (6 for a valid packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next header: the first extension header or the upper-layer protocol.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        bytes::ipv6_at(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        bytes::ipv6_at(self.buffer.as_ref(), field::DST)
    }

    /// The payload (extension headers included), `payload_len` bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[field::PAYLOAD..end]
    }

    /// Walks the extension headers at the start of the payload.
    #[inline]
    pub fn ext_headers(&self) -> Result<Ipv6ExtHeaders> {
        Ipv6ExtHeaders::walk(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    fn set_ver_tc_flow(&mut self, v: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::VER_TC_FLOW, v);
    }

    /// Sets the version (low 4 bits).
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let w = (self.ver_tc_flow() & 0x0fff_ffff) | (u32::from(v & 0x0f) << 28);
        self.set_ver_tc_flow(w);
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, v: u8) {
        let w = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(v) << 20);
        self.set_ver_tc_flow(w);
    }

    /// Sets the flow label (low 20 bits).
    #[inline]
    pub fn set_flow_label(&mut self, v: u32) {
        let w = (self.ver_tc_flow() & 0xfff0_0000) | (v & 0x000f_ffff);
        self.set_ver_tc_flow(w);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, v: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = v.0;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Decrements the hop limit (saturating at 0) and returns the new value.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> u8 {
        let h = self.hop_limit().saturating_sub(1);
        self.set_hop_limit(h);
        h
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: &Ipv6Addr) {
        bytes::put_bytes(self.buffer.as_mut(), field::SRC, &a.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: &Ipv6Addr) {
        bytes::put_bytes(self.buffer.as_mut(), field::DST, &a.octets());
    }

    /// Mutable payload, `payload_len` bytes.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

/// A parsed IPv6 fixed header (extension headers are part of the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length in bytes (at most 65535).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Parses the fixed header; a version other than 6 is `Malformed`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(WireError::Malformed);
        }
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Header length (40).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header; the buffer must be at least 40 bytes.
    /// `payload_len` saturates at 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        let w =
            (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff);
        packet.set_ver_tc_flow(w);
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src_addr);
        packet.set_dst_addr(&self.dst_addr);
    }
}

/// What a Fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6FragmentInfo {
    /// Fragment offset in bytes (the field times 8).
    pub offset: u16,
    /// M flag: more fragments follow.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

impl Ipv6FragmentInfo {
    /// True for the first fragment (offset 0), the only one carrying the L4 header.
    #[inline]
    pub const fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// The result of walking the extension headers of an IPv6 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6ExtHeaders {
    /// Protocol of the header at `offset`: an upper layer, ESP, No Next Header, or
    /// (after a non-first fragment) the protocol of the fragmented data.
    pub protocol: IpProtocol,
    /// Offset of that header from the start of the walked bytes.
    pub offset: usize,
    /// Number of extension headers skipped.
    pub count: u8,
    /// The Fragment header, if one was seen.
    pub fragment: Option<Ipv6FragmentInfo>,
}

impl Ipv6ExtHeaders {
    /// Walks Hop-by-Hop (0, first only), Routing (43), Fragment (44, at most one),
    /// Destination Options (60) and AH (51) headers from the start of `bytes`.
    ///
    /// Stops at any other protocol (ESP and No Next Header included) and right after
    /// the Fragment header of a non-first fragment, whose data holds no header.
    /// More than [`MAX_EXT_HEADERS`] headers, a misplaced Hop-by-Hop or a second
    /// Fragment header is `Malformed`; a header running past `bytes` is `Truncated`.
    pub fn walk(next_header: IpProtocol, bytes: &[u8]) -> Result<Ipv6ExtHeaders> {
        let mut protocol = next_header;
        let mut offset = 0usize;
        let mut count = 0u8;
        let mut fragment = None;
        loop {
            let (next, len) = match protocol {
                IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_OPTS => {
                    if protocol == IpProtocol::HOP_BY_HOP && count != 0 {
                        return Err(WireError::Malformed);
                    }
                    let h = bytes.get(offset..offset + 2).ok_or(WireError::Truncated)?;
                    (h[0], (usize::from(h[1]) + 1) * 8)
                }
                IpProtocol::AH => {
                    let h = bytes.get(offset..offset + 2).ok_or(WireError::Truncated)?;
                    (h[0], (usize::from(h[1]) + 2) * 4)
                }
                IpProtocol::IPV6_FRAG => {
                    if fragment.is_some() {
                        return Err(WireError::Malformed);
                    }
                    let h = bytes
                        .get(offset..offset + FRAG_HEADER_LEN)
                        .ok_or(WireError::Truncated)?;
                    let off_m = u16::from_be_bytes([h[2], h[3]]);
                    fragment = Some(Ipv6FragmentInfo {
                        offset: off_m & 0xfff8,
                        more_frags: off_m & 1 != 0,
                        ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    });
                    (h[0], FRAG_HEADER_LEN)
                }
                _ => break,
            };
            if count == MAX_EXT_HEADERS {
                return Err(WireError::Malformed);
            }
            if offset + len > bytes.len() {
                return Err(WireError::Truncated);
            }
            offset += len;
            count += 1;
            protocol = IpProtocol(next);
            if matches!(fragment, Some(f) if !f.is_first()) {
                break;
            }
        }
        Ok(Ipv6ExtHeaders {
            protocol,
            offset,
            count,
            fragment,
        })
    }

    /// True when a header of `protocol` starts at `offset` (false for a non-first
    /// fragment, whose data is the middle of a datagram).
    #[inline]
    pub fn has_upper_header(&self) -> bool {
        !matches!(self.fragment, Some(f) if !f.is_first())
    }
}

/// Skips the extension headers at the start of `bytes`; returns the final protocol
/// and its offset. See [`Ipv6ExtHeaders::walk`], which also reports fragments.
#[inline]
pub fn skip_extension_headers(
    next_header: IpProtocol,
    bytes: &[u8],
) -> Result<(IpProtocol, usize)> {
    let e = Ipv6ExtHeaders::walk(next_header, bytes)?;
    Ok((e.protocol, e.offset))
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(p) = Ipv6Packet::new_checked(bytes) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
        );
        let _ = (
            p.next_header(),
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.payload().len(),
        );
        if let Ok(e) = p.ext_headers() {
            assert!(e.offset <= p.payload().len());
            let _ = e.has_upper_header();
        }
        let _ = Ipv6Repr::parse(&p);
    }
    // The walker is also run on raw bytes, as the datapath may do.
    for nh in [0u8, 43, 44, 51, 60] {
        if let Ok(e) = Ipv6ExtHeaders::walk(IpProtocol(nh), bytes) {
            assert!(e.offset <= bytes.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{UdpPacket, checksum};

    // UDP 5353 -> 5353 "ping", 2001:db8::1 -> 2001:db8::2, hop limit 255.
    const UDP_PACKET: [u8; 52] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x11, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x14, 0xe9, //
        0x14, 0xe9, 0x00, 0x0c, 0x9b, 0xbe, 0x70, 0x69, 0x6e, 0x67,
    ];

    // Same datagram behind Hop-by-Hop (Router Alert, PadN), Destination Options
    // (PadN) and a Fragment header (offset 0, M=1, id 0xdeadbeef).
    const EXT_CHAIN: [u8; 76] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x3c, 0x00, //
        0x05, 0x02, 0x00, 0x00, 0x01, 0x00, 0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, //
        0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, 0x14, 0xe9, 0x14, 0xe9, 0x00, 0x0c, //
        0x9b, 0xbe, 0x70, 0x69, 0x6e, 0x67,
    ];

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_real_packet() {
        let p = Ipv6Packet::new_checked(&UDP_PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!((p.traffic_class(), p.flow_label()), (0, 0));
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.src_addr(), addr("2001:db8::1"));
        assert_eq!(p.dst_addr(), addr("2001:db8::2"));
        let e = p.ext_headers().unwrap();
        assert_eq!(
            (e.protocol, e.offset, e.count, e.fragment),
            (IpProtocol::UDP, 0, 0, None)
        );
        let u = UdpPacket::new_checked(p.payload()).unwrap();
        assert!(u.verify_checksum_v6(&p.src_addr(), &p.dst_addr()));
    }

    #[test]
    fn walk_hbh_dstopts_fragment() {
        let p = Ipv6Packet::new_checked(&EXT_CHAIN[..]).unwrap();
        let e = p.ext_headers().unwrap();
        assert_eq!(e.protocol, IpProtocol::UDP);
        assert_eq!(e.offset, 24);
        assert_eq!(e.count, 3);
        assert_eq!(
            e.fragment,
            Some(Ipv6FragmentInfo {
                offset: 0,
                more_frags: true,
                ident: 0xdead_beef
            })
        );
        assert!(e.has_upper_header());
        assert_eq!(
            skip_extension_headers(p.next_header(), p.payload()),
            Ok((IpProtocol::UDP, 24))
        );
        let u = UdpPacket::new_checked(&p.payload()[e.offset..]).unwrap();
        assert_eq!(u.payload(), b"ping");

        // etherparse agrees on the chain.
        let s = etherparse::Ipv6Slice::from_slice(&EXT_CHAIN).unwrap();
        assert_eq!(s.payload().ip_number, etherparse::IpNumber::UDP);
        assert_eq!(s.payload().payload.len(), p.payload().len() - e.offset);
        assert!(s.is_payload_fragmented());
    }

    #[test]
    fn non_first_fragment_has_no_upper_header() {
        let mut b = EXT_CHAIN;
        b[58..60].copy_from_slice(&((1480u16) | 1).to_be_bytes());
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let e = p.ext_headers().unwrap();
        assert_eq!(
            e.fragment.map(|f| (f.offset, f.more_frags)),
            Some((1480, true))
        );
        assert!(!e.has_upper_header());
        assert_eq!((e.protocol, e.offset), (IpProtocol::UDP, 24));
        // A non-first fragment stops the walk even if its next header is an extension.
        b[56] = 60;
        let e = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .ext_headers()
            .unwrap();
        assert_eq!(
            (e.protocol, e.offset, e.count),
            (IpProtocol::IPV6_OPTS, 24, 3)
        );
    }

    #[test]
    fn walk_errors() {
        // Chain truncated inside the Fragment header.
        assert_eq!(
            Ipv6ExtHeaders::walk(IpProtocol::HOP_BY_HOP, &EXT_CHAIN[40..60]),
            Err(WireError::Truncated)
        );
        // Header length running past the buffer.
        let hbh = [60u8, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            Ipv6ExtHeaders::walk(IpProtocol::HOP_BY_HOP, &hbh),
            Err(WireError::Truncated)
        );
        // Hop-by-Hop after another header.
        let misplaced = [0u8, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            Ipv6ExtHeaders::walk(IpProtocol::IPV6_OPTS, &misplaced),
            Err(WireError::Malformed)
        );
        // Two Fragment headers.
        let two = [44u8, 0, 0, 0, 0, 0, 0, 1, 17, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            Ipv6ExtHeaders::walk(IpProtocol::IPV6_FRAG, &two),
            Err(WireError::Malformed)
        );
        // Empty buffer with an extension header announced.
        assert_eq!(
            Ipv6ExtHeaders::walk(IpProtocol::IPV6_ROUTE, &[]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            skip_extension_headers(IpProtocol::TCP, &[]),
            Ok((IpProtocol::TCP, 0))
        );
    }

    #[test]
    fn header_count_is_bounded() {
        // n Destination Options headers chained, then UDP.
        let chain = |n: usize| {
            let mut v = Vec::new();
            for i in 0..n {
                v.extend_from_slice(&[if i + 1 == n { 17 } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
            }
            v
        };
        let max = usize::from(MAX_EXT_HEADERS);
        assert_eq!(
            skip_extension_headers(IpProtocol::IPV6_OPTS, &chain(max)),
            Ok((IpProtocol::UDP, 8 * max))
        );
        assert_eq!(
            Ipv6ExtHeaders::walk(IpProtocol::IPV6_OPTS, &chain(max + 1)),
            Err(WireError::Malformed)
        );
        // A self-referencing loop of 64 headers is rejected, not walked to the end.
        assert_eq!(
            Ipv6ExtHeaders::walk(
                IpProtocol::IPV6_OPTS,
                &[60u8, 0, 1, 4, 0, 0, 0, 0].repeat(64)
            ),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn ah_esp_and_no_next() {
        // AH with payload len 4 -> (4 + 2) * 4 = 24 bytes, then TCP.
        let mut ah = vec![6u8, 4];
        ah.resize(24, 0);
        assert_eq!(
            skip_extension_headers(IpProtocol::AH, &ah),
            Ok((IpProtocol::TCP, 24))
        );
        // Routing header then ESP: the walk stops at ESP.
        let rh = [50u8, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb];
        assert_eq!(
            skip_extension_headers(IpProtocol::IPV6_ROUTE, &rh),
            Ok((IpProtocol::ESP, 8))
        );
        let dst = [59u8, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            skip_extension_headers(IpProtocol::IPV6_OPTS, &dst),
            Ok((IpProtocol::IPV6_NO_NEXT, 8))
        );
    }

    #[test]
    fn bad_payload_len() {
        let mut b = UDP_PACKET;
        b[5] = 13;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&UDP_PACKET[..39]).err(),
            Some(WireError::Truncated)
        );
        b[5] = 2;
        assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().payload().len(), 2);
        let mut b = UDP_PACKET;
        b[0] = 0x40;
        assert_eq!(
            Ipv6Repr::parse(&Ipv6Packet::new_checked(&b[..]).unwrap()),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn every_prefix_is_safe() {
        for pkt in [&UDP_PACKET[..], &EXT_CHAIN[..]] {
            for n in 0..=pkt.len() {
                read_all(&pkt[..n]);
                assert_eq!(Ipv6Packet::new_checked(&pkt[..n]).is_ok(), n == pkt.len());
            }
        }
    }

    #[test]
    fn setters_and_hop_limit() {
        let mut b = UDP_PACKET;
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_traffic_class(0xb8);
        p.set_flow_label(0x12345);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0x12345)
        );
        p.set_hop_limit(1);
        assert_eq!(p.decrement_hop_limit(), 0);
        assert_eq!(p.decrement_hop_limit(), 0);
    }

    #[test]
    fn repr_round_trip_and_etherparse() {
        let repr = Ipv6Repr {
            src_addr: addr("2001:200::1"),
            dst_addr: addr("2001:200:0:1::2"),
            next_header: IpProtocol::UDP,
            payload_len: 12,
            hop_limit: 63,
            traffic_class: 0x2e << 2,
            flow_label: 0xabcde,
        };
        let mut b = [0u8; 52];
        b[40..].copy_from_slice(&UDP_PACKET[40..]);
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p), Ok(repr));
        let mut u = UdpPacket::new_checked(b[40..].to_vec()).unwrap();
        u.fill_checksum_v6(&repr.src_addr, &repr.dst_addr);
        b[40..].copy_from_slice(&u.into_inner());

        let ep = etherparse::PacketHeaders::from_ip_slice(&b).unwrap();
        let Some(etherparse::NetHeaders::Ipv6(h, _)) = &ep.net else {
            panic!("no ipv6")
        };
        assert_eq!(h.source, repr.src_addr.octets());
        assert_eq!(h.destination, repr.dst_addr.octets());
        assert_eq!(h.hop_limit, 63);
        assert_eq!(h.traffic_class, 0x2e << 2);
        assert_eq!(h.flow_label.value(), 0xabcde);
        assert_eq!(h.payload_length, 12);
        let Some(etherparse::TransportHeader::Udp(uh)) = &ep.transport else {
            panic!("no udp")
        };
        assert_eq!(
            uh.calc_checksum_ipv6(h, ep.payload.slice()).unwrap(),
            uh.checksum
        );
        // And our own verification of the etherparse-validated checksum.
        let ph = checksum::pseudo_header_v6(&repr.src_addr, &repr.dst_addr, 17, 12);
        assert_eq!(checksum::finish(ph + checksum::sum(&b[40..])), 0);
    }
}

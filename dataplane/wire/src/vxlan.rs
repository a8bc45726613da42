//! VXLAN headers (RFC 7348).
//!
//! ```text
//! |R|R|R|R|I|R|R|R|            Reserved (24)                      |
//! |                VXLAN Network Identifier (24)  | Reserved (8)  |
//! ```
//!
//! Contract: once [`VxlanHeader::check_len`] passed, no getter panics.

use crate::{Result, WireError, bytes};

mod field {
    pub const FLAGS: usize = 0;
    pub const VNI: usize = 4;
    pub const PAYLOAD: usize = 8;
}

/// Length of a VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// IANA UDP destination port for VXLAN.
pub const DEFAULT_PORT: u16 = 4789;
/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// Bytes added in front of the inner frame over IPv4: outer Ethernet 14 + IPv4 20 +
/// UDP 8 + VXLAN 8.
pub const ENCAP_OVERHEAD_V4: usize = 50;
/// Bytes added in front of the inner frame over IPv6: outer Ethernet 14 + IPv6 40 +
/// UDP 8 + VXLAN 8.
pub const ENCAP_OVERHEAD_V6: usize = 70;

/// A view over a VXLAN header and the inner Ethernet frame that follows it.
#[derive(Debug, Clone)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> VxlanHeader<T> {
        VxlanHeader { buffer }
    }

    /// Wraps a buffer after [`VxlanHeader::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<VxlanHeader<T>> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Ensures the buffer holds the 8-byte header.
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

    /// The flag byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// True when the I flag is set (the VNI is valid).
    #[inline]
    pub fn i_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// VXLAN Network Identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::VNI) >> 8
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanHeader<T> {
    /// Sets the flag byte.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets the VNI (low 24 bits), keeping the reserved byte after it.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        let b = self.buffer.as_mut();
        let v = (vni & VNI_MAX).to_be_bytes();
        b[field::VNI..field::VNI + 3].copy_from_slice(&v[1..]);
    }

    /// Mutable inner frame.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// VXLAN Network Identifier, at most [`VNI_MAX`].
    pub vni: u32,
}

impl VxlanRepr {
    /// Parses a header; a clear I flag is `Malformed`. Reserved bits are ignored
    /// (RFC 7348 §5).
    pub fn parse<T: AsRef<[u8]>>(header: &VxlanHeader<T>) -> Result<VxlanRepr> {
        header.check_len()?;
        if !header.i_flag() {
            return Err(WireError::Malformed);
        }
        Ok(VxlanRepr { vni: header.vni() })
    }

    /// Header length (8).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (I flag, VNI, reserved bits zero); the buffer must be at
    /// least 8 bytes. VNI bits above 24 are dropped.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut VxlanHeader<T>) {
        let b = header.buffer.as_mut();
        b[..HEADER_LEN].fill(0);
        b[field::FLAGS] = FLAG_I;
        header.set_vni(self.vni);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(h) = VxlanHeader::new_checked(bytes) {
        let _ = (h.flags(), h.i_flag(), h.vni(), h.payload().len());
        let _ = VxlanRepr::parse(&h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        EtherType, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr,
        UdpPacket, UdpRepr,
    };
    use std::net::Ipv4Addr;

    // VXLAN VNI 100 followed by the start of an inner frame.
    const HEADER: [u8; 22] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
    ];

    #[test]
    fn parse_real_header() {
        let h = VxlanHeader::new_checked(&HEADER[..]).unwrap();
        assert!(h.i_flag());
        assert_eq!(h.vni(), 100);
        assert_eq!(VxlanRepr::parse(&h), Ok(VxlanRepr { vni: 100 }));
        let inner = EthernetFrame::new_checked(h.payload()).unwrap();
        assert_eq!(inner.ethertype(), EtherType::IPV4);
    }

    #[test]
    fn truncated_and_missing_i_flag() {
        assert_eq!(
            VxlanHeader::new_checked(&HEADER[..7]).err(),
            Some(WireError::Truncated)
        );
        let mut b = HEADER;
        b[0] = 0;
        assert_eq!(
            VxlanRepr::parse(&VxlanHeader::new_checked(&b[..]).unwrap()),
            Err(WireError::Malformed)
        );
        for n in 0..=HEADER.len() {
            read_all(&HEADER[..n]);
        }
    }

    #[test]
    fn vni_setter_keeps_reserved_byte() {
        let mut b = [0xffu8; 8];
        let mut h = VxlanHeader::new_unchecked(&mut b[..]);
        h.set_vni(0x0012_3456);
        assert_eq!(h.vni(), 0x12_3456);
        assert_eq!(b[7], 0xff);
    }

    #[test]
    fn overheads_match_header_lengths() {
        assert_eq!(ENCAP_OVERHEAD_V4, 14 + 20 + 8 + HEADER_LEN);
        assert_eq!(ENCAP_OVERHEAD_V6, 14 + 40 + 8 + HEADER_LEN);
    }

    /// Builds a full VXLAN-over-IPv4 frame from Reprs and decodes it with etherparse.
    #[test]
    fn encap_template_round_trip_and_etherparse() {
        let inner = [0x5au8; 60];
        let mut frame = vec![0u8; ENCAP_OVERHEAD_V4 + inner.len()];
        let (src, dst) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        EthernetRepr {
            src_addr: MacAddr::new(2, 0, 0, 0, 0, 1),
            dst_addr: MacAddr::new(2, 0, 0, 0, 0, 2),
            ethertype: EtherType::IPV4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        let ip_payload = 8 + HEADER_LEN + inner.len();
        Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: IpProtocol::UDP,
            payload_len: ip_payload,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]));
        let mut udp = UdpPacket::new_unchecked(&mut frame[34..]);
        UdpRepr {
            src_port: 51234,
            dst_port: DEFAULT_PORT,
            payload_len: HEADER_LEN + inner.len(),
        }
        .emit(&mut udp);
        VxlanRepr { vni: 0xabcdef }.emit(&mut VxlanHeader::new_unchecked(udp.payload_mut()));
        frame[ENCAP_OVERHEAD_V4..].copy_from_slice(&inner);
        UdpPacket::new_unchecked(&mut frame[34..]).fill_checksum_v4(src, dst);

        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(ip.verify_checksum() && udp.verify_checksum_v4(src, dst));
        let vx = VxlanHeader::new_checked(udp.payload()).unwrap();
        assert_eq!(VxlanRepr::parse(&vx), Ok(VxlanRepr { vni: 0xabcdef }));
        assert_eq!(vx.payload(), &inner[..]);

        let ep = etherparse::PacketHeaders::from_ethernet_slice(&frame).unwrap();
        let Some(etherparse::NetHeaders::Ipv4(ip4, _)) = &ep.net else {
            panic!("no ipv4")
        };
        assert_eq!(ip4.header_checksum, ip4.calc_header_checksum());
        let Some(etherparse::TransportHeader::Udp(u)) = &ep.transport else {
            panic!("no udp")
        };
        assert_eq!(u.destination_port, DEFAULT_PORT);
        assert_eq!(
            u.calc_checksum_ipv4(ip4, ep.payload.slice()).unwrap(),
            u.checksum
        );
        assert_eq!(
            &ep.payload.slice()[..8],
            &[0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]
        );
    }
}

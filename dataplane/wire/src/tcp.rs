//! TCP headers (RFC 9293).
//!
//! The view covers one whole segment: the checksum and the payload run to the end
//! of the buffer, so pass exactly the IP payload.
//!
//! Contract: once [`TcpPacket::check_len`] passed, no getter panics. `check_len`
//! requires 20 bytes and a data offset between 5 and the buffer length.

use core::fmt;
use core::ops::BitOr;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::{IpProtocol, Result, WireError, bytes};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::OPTIONS;

/// The eight TCP flag bits (byte 13 of the header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// True when every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        f.write_str("TcpFlags(")?;
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// A view over a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`TcpPacket::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validates the fixed header and the data offset.
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// FIN flag.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags().contains(TcpFlags::FIN)
    }

    /// SYN flag.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags().contains(TcpFlags::SYN)
    }

    /// RST flag.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags().contains(TcpFlags::RST)
    }

    /// PSH flag.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags().contains(TcpFlags::PSH)
    }

    /// ACK flag.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags().contains(TcpFlags::ACK)
    }

    /// URG flag.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags().contains(TcpFlags::URG)
    }

    /// Window size.
    #[inline]
    pub fn window_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::URGENT)
    }

    /// Option bytes, between byte 20 and the data offset (not decoded).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..usize::from(self.header_len())]
    }

    /// Payload, from the data offset to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..]
    }

    /// True when the checksum is valid over the IPv4 pseudo-header.
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u16::try_from(b.len()) else {
            return false;
        };
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP.0, len);
        checksum::finish(ph + checksum::sum(b)) == 0
    }

    /// True when the checksum is valid over the IPv6 pseudo-header.
    #[inline]
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::TCP.0, len);
        checksum::finish(ph + checksum::sum(b)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::SEQ_NUM, v);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::ACK_NUM, v);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4); keeps the
    /// reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | ((len / 4) << 4);
    }

    /// Sets the flag byte.
    #[inline]
    pub fn set_flags(&mut self, f: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }

    /// Sets the window size.
    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::WINDOW, v);
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Mutable option bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len());
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and stores the checksum over the IPv4 pseudo-header.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP.0, len);
        let c = checksum::finish(ph + checksum::sum(b));
        self.set_checksum(c);
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::TCP.0, len);
        let c = checksum::finish(ph + checksum::sum(b));
        self.set_checksum(c);
    }

    /// Patches the checksum after an IPv4 address in the pseudo-header changed (RFC 1624).
    #[inline]
    pub fn update_checksum_for_addr_v4(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::update_u32(self.checksum(), old.to_bits(), new.to_bits());
        self.set_checksum(c);
    }

    /// Patches the checksum after an IPv6 address in the pseudo-header changed.
    #[inline]
    pub fn update_checksum_for_addr_v6(&mut self, old: &Ipv6Addr, new: &Ipv6Addr) {
        let c = checksum::update_u128(self.checksum(), &old.octets(), &new.octets());
        self.set_checksum(c);
    }
}

/// A parsed TCP header (options ignored on parse, never emitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port (never 0).
    pub src_port: u16,
    /// Destination port (never 0).
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window size.
    pub window_len: u16,
}

impl TcpRepr {
    /// Parses a header; a zero port is `Malformed`. The checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<TcpRepr> {
        packet.check_len()?;
        if packet.src_port() == 0 || packet.dst_port() == 0 {
            return Err(WireError::Malformed);
        }
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
        })
    }

    /// Header length (20).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a zero checksum; write the payload, then call
    /// `fill_checksum_v4`/`_v6`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.buffer.as_mut()[field::DATA_OFF] = (HEADER_LEN as u8 / 4) << 4;
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(0);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(p) = TcpPacket::new_checked(bytes) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.header_len(),
        );
        let _ = (
            p.flags(),
            p.fin(),
            p.syn(),
            p.rst(),
            p.psh(),
            p.ack(),
            p.urg(),
        );
        let _ = (
            p.window_len(),
            p.checksum(),
            p.urgent_at(),
            p.options().len(),
        );
        let _ = p.payload().len();
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let _ = p.verify_checksum_v4(a, a);
        let _ = p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST);
        let _ = TcpRepr::parse(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 80);

    // SYN 198.18.0.1:44444 -> 198.19.0.80:80, MSS 1460, SACK-permitted, timestamps, WS 7.
    const SYN: [u8; 40] = [
        0xad, 0x9c, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, //
        0xfa, 0xf0, 0xc7, 0xbd, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, //
        0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn parse_real_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (44444, 80));
        assert_eq!(p.seq_number(), 0x1234_5678);
        assert_eq!(p.header_len(), 40);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh() && !p.urg());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.options().len(), 20);
        assert_eq!(&p.options()[..4], &[0x02, 0x04, 0x05, 0xb4]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum_v4(SRC, DST));
        assert_eq!(
            format!("{:?}", p.flags() | TcpFlags::ACK),
            "TcpFlags(SYN|ACK)"
        );
    }

    #[test]
    fn bad_data_offset() {
        for (doff, err) in [
            (0x40u8, WireError::Malformed),
            (0x00, WireError::Malformed),
            (0xb0, WireError::Truncated),
        ] {
            let mut b = SYN;
            b[12] = doff;
            assert_eq!(
                TcpPacket::new_checked(&b[..]).err(),
                Some(err),
                "doff {doff:#x}"
            );
        }
        assert_eq!(
            TcpPacket::new_checked(&SYN[..19]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            TcpPacket::new_checked(&SYN[..39]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn every_prefix_is_safe() {
        for n in 0..=SYN.len() {
            read_all(&SYN[..n]);
            assert_eq!(TcpPacket::new_checked(&SYN[..n]).is_ok(), n == SYN.len());
        }
    }

    #[test]
    fn address_rewrite_patches_checksum() {
        let mut b = SYN;
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        let new = Ipv4Addr::new(203, 0, 113, 5);
        p.update_checksum_for_addr_v4(DST, new);
        assert!(p.verify_checksum_v4(SRC, new));
        let c = p.checksum();
        p.fill_checksum_v4(SRC, new);
        assert_eq!(c, p.checksum());
    }

    #[test]
    fn repr_round_trip_and_etherparse() {
        let repr = TcpRepr {
            src_port: 179,
            dst_port: 50000,
            seq_number: 1,
            ack_number: 0xdead_beef,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window_len: 512,
        };
        let mut b = [0u8; 23];
        let mut p = TcpPacket::new_unchecked(&mut b[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(b"bgp");
        let (s6, d6): (Ipv6Addr, Ipv6Addr) = (
            "2001:200::1".parse().unwrap(),
            "2001:200::2".parse().unwrap(),
        );
        p.fill_checksum_v6(&s6, &d6);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p), Ok(repr));
        assert!(p.verify_checksum_v6(&s6, &d6));

        let (h, rest) = etherparse::TcpHeader::from_slice(&b).unwrap();
        assert_eq!((h.source_port, h.destination_port), (179, 50000));
        assert_eq!(
            (h.sequence_number, h.acknowledgment_number),
            (1, 0xdead_beef)
        );
        assert!(h.ack && h.psh && !h.syn && !h.fin && !h.rst && !h.urg);
        assert_eq!(h.window_size, 512);
        assert_eq!(
            h.calc_checksum_ipv6_raw(s6.octets(), d6.octets(), rest)
                .unwrap(),
            h.checksum
        );
        let mut b4 = b;
        TcpPacket::new_unchecked(&mut b4[..]).fill_checksum_v4(SRC, DST);
        let (h, rest) = etherparse::TcpHeader::from_slice(&b4).unwrap();
        assert_eq!(
            h.calc_checksum_ipv4_raw(SRC.octets(), DST.octets(), rest)
                .unwrap(),
            h.checksum
        );
    }
}

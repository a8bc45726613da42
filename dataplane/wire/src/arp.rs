//! ARP for Ethernet/IPv4 (RFC 826).
//!
//! The view reads the fixed Ethernet/IPv4 layout (28 bytes) and only checks that
//! length; [`ArpRepr::parse`] checks the hardware and protocol types and lengths.
//!
//! Contract: once [`ArpPacket::check_len`] passed, no getter panics.

use std::net::Ipv4Addr;

use crate::{EtherType, MacAddr, Result, WireError, bytes};

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
    pub const END: usize = 28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::END;
/// Hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// An ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Who has `target_protocol_addr`? (1)
    Request,
    /// `sender_protocol_addr` is at `sender_hardware_addr`. (2)
    Reply,
}

impl ArpOperation {
    /// The operation for a wire value, if it is request or reply.
    #[inline]
    pub const fn from_u16(v: u16) -> Option<ArpOperation> {
        match v {
            1 => Some(ArpOperation::Request),
            2 => Some(ArpOperation::Reply),
            _ => None,
        }
    }

    /// The wire value.
    #[inline]
    pub const fn to_u16(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// A view over an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after [`ArpPacket::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures the buffer holds 28 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
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

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(bytes::u16_at(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Raw operation code.
    #[inline]
    pub fn operation(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_hardware_addr(&self) -> MacAddr {
        bytes::mac_at(self.buffer.as_ref(), field::SHA)
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        bytes::ipv4_at(self.buffer.as_ref(), field::SPA)
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> MacAddr {
        bytes::mac_at(self.buffer.as_ref(), field::THA)
    }

    /// Target protocol address.
    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        bytes::ipv4_at(self.buffer.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::HTYPE, v);
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, v: EtherType) {
        bytes::put_u16(self.buffer.as_mut(), field::PTYPE, v.0);
    }

    /// Sets the hardware address length.
    #[inline]
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    /// Sets the protocol address length.
    #[inline]
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    /// Sets the raw operation code.
    #[inline]
    pub fn set_operation(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::OPER, v);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_hardware_addr(&mut self, v: MacAddr) {
        bytes::put_bytes(self.buffer.as_mut(), field::SHA, &v.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_protocol_addr(&mut self, v: Ipv4Addr) {
        bytes::put_bytes(self.buffer.as_mut(), field::SPA, &v.octets());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, v: MacAddr) {
        bytes::put_bytes(self.buffer.as_mut(), field::THA, &v.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, v: Ipv4Addr) {
        bytes::put_bytes(self.buffer.as_mut(), field::TPA, &v.octets());
    }
}

/// A parsed Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender MAC.
    pub sender_hardware_addr: MacAddr,
    /// Sender IPv4 address.
    pub sender_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_hardware_addr: MacAddr,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses a packet; anything but Ethernet/IPv4 request or reply is `Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != EtherType::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        let operation = ArpOperation::from_u16(packet.operation()).ok_or(WireError::Unsupported)?;
        Ok(ArpRepr {
            operation,
            sender_hardware_addr: packet.sender_hardware_addr(),
            sender_protocol_addr: packet.sender_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// The reply that `our_mac` sends to this request (addresses swapped).
    #[inline]
    pub fn reply_from(&self, our_mac: MacAddr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Reply,
            sender_hardware_addr: our_mac,
            sender_protocol_addr: self.target_protocol_addr,
            target_hardware_addr: self.sender_hardware_addr,
            target_protocol_addr: self.sender_protocol_addr,
        }
    }

    /// True for gratuitous ARP (sender and target protocol addresses equal).
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.sender_protocol_addr == self.target_protocol_addr
    }

    /// Packet length (28).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet; the buffer must be at least 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation.to_u16());
        packet.set_sender_hardware_addr(self.sender_hardware_addr);
        packet.set_sender_protocol_addr(self.sender_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(p) = ArpPacket::new_checked(bytes) {
        let _ = (
            p.hardware_type(),
            p.protocol_type(),
            p.hardware_len(),
            p.protocol_len(),
        );
        let _ = (
            p.operation(),
            p.sender_hardware_addr(),
            p.sender_protocol_addr(),
        );
        let _ = (p.target_hardware_addr(), p.target_protocol_addr());
        let _ = ArpRepr::parse(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // who-has 198.18.0.2 tell 198.18.0.1, from 52:54:00:12:34:56.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, //
        0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x02,
    ];

    #[test]
    fn parse_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let r = ArpRepr::parse(&p).unwrap();
        assert_eq!(r.operation, ArpOperation::Request);
        assert_eq!(
            r.sender_hardware_addr,
            MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56)
        );
        assert_eq!(r.sender_protocol_addr, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(r.target_hardware_addr, MacAddr::ZERO);
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(198, 18, 0, 2));
        assert!(!r.is_gratuitous());
    }

    #[test]
    fn truncated_and_unsupported() {
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]).err(),
            Some(WireError::Truncated)
        );
        for (at, v) in [(1, 6u8), (3, 0xdd), (4, 8), (5, 16), (7, 3)] {
            let mut b = REQUEST;
            b[at] = v;
            let p = ArpPacket::new_checked(&b[..]).unwrap();
            assert_eq!(ArpRepr::parse(&p), Err(WireError::Unsupported), "byte {at}");
        }
    }

    #[test]
    fn every_prefix_is_safe() {
        for n in 0..=REQUEST.len() {
            read_all(&REQUEST[..n]);
        }
    }

    #[test]
    fn reply_round_trip() {
        let req = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        let ours = MacAddr::new(0x02, 0, 0, 0, 0, 0x22);
        let reply = req.reply_from(ours);
        let mut b = [0xaau8; 28];
        reply.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()),
            Ok(reply)
        );
        assert_eq!(reply.target_hardware_addr, req.sender_hardware_addr);

        // etherparse 0.16 has no ARP decoder: compare with the reply written by hand.
        let expected: [u8; 28] = [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00,
            0x22, //
            0xc6, 0x12, 0x00, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc6, 0x12, 0x00, 0x01,
        ];
        assert_eq!(b, expected);
    }
}

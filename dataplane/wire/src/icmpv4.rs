//! ICMPv4 messages (RFC 792, RFC 1191): echo, destination unreachable (with the
//! fragmentation-needed MTU) and time exceeded.
//!
//! The view covers one whole message: the checksum runs to the end of the buffer,
//! so pass exactly the IP payload.
//!
//! Contract: once [`Icmpv4Packet::check_len`] passed (8 bytes), no getter panics.

use core::fmt;

use crate::checksum;
use crate::{Result, WireError, bytes};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const UNUSED: usize = 4;
    pub const MTU: usize = 6;
    pub const DATA: usize = 8;
}

/// Length of the ICMP header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = field::DATA;
/// Most bytes of the offending datagram to quote in an error, so the error fits
/// the 576-byte minimum datagram (RFC 1812 §4.3.2.3): 576 - 20 - 8.
pub const MAX_ERROR_QUOTE: usize = 548;

/// An ICMPv4 message type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Icmpv4Type(pub u8);

impl Icmpv4Type {
    /// Echo Reply.
    pub const ECHO_REPLY: Icmpv4Type = Icmpv4Type(0);
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: Icmpv4Type = Icmpv4Type(3);
    /// Redirect.
    pub const REDIRECT: Icmpv4Type = Icmpv4Type(5);
    /// Echo Request.
    pub const ECHO_REQUEST: Icmpv4Type = Icmpv4Type(8);
    /// Time Exceeded.
    pub const TIME_EXCEEDED: Icmpv4Type = Icmpv4Type(11);
    /// Parameter Problem.
    pub const PARAM_PROBLEM: Icmpv4Type = Icmpv4Type(12);
}

impl fmt::Debug for Icmpv4Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Icmpv4Type::ECHO_REPLY => "EchoReply",
            Icmpv4Type::DST_UNREACHABLE => "DstUnreachable",
            Icmpv4Type::REDIRECT => "Redirect",
            Icmpv4Type::ECHO_REQUEST => "EchoRequest",
            Icmpv4Type::TIME_EXCEEDED => "TimeExceeded",
            Icmpv4Type::PARAM_PROBLEM => "ParamProblem",
            _ => return write!(f, "Icmpv4Type({})", self.0),
        };
        f.write_str(name)
    }
}

/// Destination Unreachable codes.
pub mod dst_unreachable {
    /// Network unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (carries the next-hop MTU).
    pub const FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 13;
    /// Largest defined code.
    pub const MAX: u8 = 15;
}

/// Time Exceeded codes.
pub mod time_exceeded {
    /// TTL exceeded in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// A view over an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after [`Icmpv4Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures the buffer holds the 8-byte header every handled type has.
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

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Next-hop MTU of a fragmentation-needed message (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::MTU)
    }

    /// Echo payload, or the quoted datagram of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// True when the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type (checksum not updated).
    #[inline]
    pub fn set_msg_type(&mut self, v: Icmpv4Type) {
        self.buffer.as_mut()[field::TYPE] = v.0;
    }

    /// Sets the code (checksum not updated).
    #[inline]
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::ECHO_SEQNO, v);
    }

    /// Sets the next-hop MTU (and zeroes the unused bytes before it).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::UNUSED, 0);
        bytes::put_u16(self.buffer.as_mut(), field::MTU, v);
    }

    /// Mutable data.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes and stores the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// A parsed ICMPv4 message of a type the router handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// Echo Request (type 8).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Echo Reply (type 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Destination Unreachable (type 3) other than fragmentation needed.
    DstUnreachable {
        /// Code, see [`dst_unreachable`]; never [`dst_unreachable::FRAG_NEEDED`].
        code: u8,
        /// Quoted datagram.
        data: &'a [u8],
    },
    /// Fragmentation needed and DF set (type 3, code 4).
    FragNeeded {
        /// Next-hop MTU.
        mtu: u16,
        /// Quoted datagram.
        data: &'a [u8],
    },
    /// Time Exceeded (type 11).
    TimeExceeded {
        /// Code, see [`time_exceeded`].
        code: u8,
        /// Quoted datagram.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses a message. Other types are `Unsupported`, an invalid code is
    /// `Malformed`. The checksum is not verified: call [`Icmpv4Packet::verify_checksum`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        let buf: &'a [u8] = packet.buffer.as_ref();
        let data = &buf[field::DATA..];
        let code = packet.code();
        match (packet.msg_type(), code) {
            (Icmpv4Type::ECHO_REQUEST, 0) => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (Icmpv4Type::ECHO_REPLY, 0) => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (Icmpv4Type::DST_UNREACHABLE, dst_unreachable::FRAG_NEEDED) => {
                Ok(Icmpv4Repr::FragNeeded {
                    mtu: packet.next_hop_mtu(),
                    data,
                })
            }
            (Icmpv4Type::DST_UNREACHABLE, c) if c <= dst_unreachable::MAX => {
                Ok(Icmpv4Repr::DstUnreachable { code: c, data })
            }
            (Icmpv4Type::TIME_EXCEEDED, c) if c <= time_exceeded::REASSEMBLY => {
                Ok(Icmpv4Repr::TimeExceeded { code: c, data })
            }
            (
                Icmpv4Type::ECHO_REQUEST
                | Icmpv4Type::ECHO_REPLY
                | Icmpv4Type::DST_UNREACHABLE
                | Icmpv4Type::TIME_EXCEEDED,
                _,
            ) => Err(WireError::Malformed),
            _ => Err(WireError::Unsupported),
        }
    }

    /// The leading part of an offending datagram to quote in an error message.
    #[inline]
    pub fn quote(datagram: &[u8]) -> &[u8] {
        &datagram[..datagram.len().min(MAX_ERROR_QUOTE)]
    }

    #[inline]
    fn data(&self) -> &'a [u8] {
        match *self {
            Icmpv4Repr::EchoRequest { data, .. }
            | Icmpv4Repr::EchoReply { data, .. }
            | Icmpv4Repr::DstUnreachable { data, .. }
            | Icmpv4Repr::FragNeeded { data, .. }
            | Icmpv4Repr::TimeExceeded { data, .. } => data,
        }
    }

    /// Message length: 8 + data.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Writes the message and its checksum. The buffer must be exactly
    /// [`Icmpv4Repr::buffer_len`] bytes, as the checksum covers all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        let (ty, code, rest) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => (
                Icmpv4Type::ECHO_REQUEST,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => (
                Icmpv4Type::ECHO_REPLY,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Icmpv4Repr::DstUnreachable { code, .. } => (Icmpv4Type::DST_UNREACHABLE, code, 0),
            Icmpv4Repr::FragNeeded { mtu, .. } => (
                Icmpv4Type::DST_UNREACHABLE,
                dst_unreachable::FRAG_NEEDED,
                u32::from(mtu),
            ),
            Icmpv4Repr::TimeExceeded { code, .. } => (Icmpv4Type::TIME_EXCEEDED, code, 0),
        };
        packet.set_msg_type(ty);
        packet.set_code(code);
        bytes::put_u32(packet.buffer.as_mut(), field::UNUSED, rest);
        let data = self.data();
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(p) = Icmpv4Packet::new_checked(bytes) {
        let _ = (
            p.msg_type(),
            p.code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq_no(),
        );
        let _ = (p.next_hop_mtu(), p.data().len(), p.verify_checksum());
        let _ = Icmpv4Repr::parse(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IpProtocol, Ipv4Packet, Ipv4Repr};
    use std::net::Ipv4Addr;

    // Echo request, id 0x1234, seq 1, 16 bytes of payload.
    const ECHO_REQUEST: [u8; 24] = [
        0x08, 0x00, 0x2d, 0x0a, 0x12, 0x34, 0x00, 0x01, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, //
        0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    ];

    #[test]
    fn parse_echo_request() {
        let p = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Type::ECHO_REQUEST);
        assert!(p.verify_checksum());
        let r = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: &ECHO_REQUEST[8..]
            }
        );
    }

    #[test]
    fn truncated_and_invalid() {
        assert_eq!(
            Icmpv4Packet::new_checked(&ECHO_REQUEST[..7]).err(),
            Some(WireError::Truncated)
        );
        let p = Icmpv4Packet::new_checked(&ECHO_REQUEST[..8]).unwrap();
        assert!(matches!(
            Icmpv4Repr::parse(&p),
            Ok(Icmpv4Repr::EchoRequest { data: &[], .. })
        ));
        let mut b = ECHO_REQUEST;
        b[1] = 1;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..])),
            Err(WireError::Malformed)
        );
        b[0] = 13;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..])),
            Err(WireError::Unsupported)
        );
        b[0] = 11;
        b[1] = 2;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..])),
            Err(WireError::Malformed)
        );
        for n in 0..=ECHO_REQUEST.len() {
            read_all(&ECHO_REQUEST[..n]);
        }
    }

    /// Builds the errors a router sends, each quoting an offending datagram.
    #[test]
    fn error_round_trips_and_etherparse() {
        let offending = crate::ipv4::tests::UDP_PACKET;
        let quote = Icmpv4Repr::quote(&offending);
        let reprs = [
            Icmpv4Repr::EchoReply {
                ident: 7,
                seq_no: 9,
                data: b"abcdefg",
            },
            Icmpv4Repr::DstUnreachable {
                code: dst_unreachable::HOST,
                data: quote,
            },
            Icmpv4Repr::FragNeeded {
                mtu: 1450,
                data: quote,
            },
            Icmpv4Repr::TimeExceeded {
                code: time_exceeded::TTL,
                data: quote,
            },
        ];
        for repr in reprs {
            let mut b = vec![0xeeu8; repr.buffer_len()];
            let mut p = Icmpv4Packet::new_unchecked(&mut b[..]);
            repr.emit(&mut p);
            assert!(p.verify_checksum(), "{repr:?}");
            let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&p), Ok(repr));

            let (h, rest) = etherparse::Icmpv4Header::from_slice(&b).unwrap();
            assert_eq!(h.checksum, h.icmp_type.calc_checksum(rest), "{repr:?}");
            use etherparse::Icmpv4Type as E;
            match (repr, h.icmp_type) {
                (Icmpv4Repr::EchoReply { ident, seq_no, .. }, E::EchoReply(e)) => {
                    assert_eq!((e.id, e.seq), (ident, seq_no));
                }
                (Icmpv4Repr::DstUnreachable { .. }, E::DestinationUnreachable(d)) => {
                    assert_eq!(d, etherparse::icmpv4::DestUnreachableHeader::Host);
                }
                (Icmpv4Repr::FragNeeded { mtu, .. }, E::DestinationUnreachable(d)) => {
                    assert_eq!(
                        d,
                        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                            next_hop_mtu: mtu
                        }
                    );
                }
                (Icmpv4Repr::TimeExceeded { .. }, E::TimeExceeded(t)) => {
                    assert_eq!(
                        t,
                        etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit
                    );
                }
                other => panic!("mismatch {other:?}"),
            }
        }
    }

    #[test]
    fn full_error_datagram() {
        // A Time Exceeded from 198.18.0.254 about UDP_PACKET, inside IPv4.
        let offending = crate::ipv4::tests::UDP_PACKET;
        let icmp = Icmpv4Repr::TimeExceeded {
            code: 0,
            data: Icmpv4Repr::quote(&offending),
        };
        let ip = Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 254),
            dst_addr: Ipv4Addr::new(192, 0, 2, 1),
            protocol: IpProtocol::ICMP,
            payload_len: icmp.buffer_len(),
            ttl: 64,
            dscp: 48,
            ecn: 0,
            ident: 0,
            dont_frag: false,
        };
        let mut b = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        ip.emit(&mut p);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()));
        let ep = etherparse::SlicedPacket::from_ip(&b).unwrap();
        let Some(etherparse::TransportSlice::Icmpv4(s)) = ep.transport else {
            panic!("no icmp")
        };
        assert_eq!(
            s.icmp_type(),
            etherparse::Icmpv4Type::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit
            )
        );
        assert_eq!(s.payload(), &offending[..]);
    }
}

//! ICMPv6 messages (RFC 4443) and Neighbor Discovery NS/NA (RFC 4861).
//!
//! [`Icmpv6Packet`] covers one whole message: the checksum (which includes the
//! IPv6 pseudo-header, hence the address arguments) runs to the end of the buffer,
//! so pass exactly the upper-layer payload. [`NeighborSolicit`] and
//! [`NeighborAdvert`] are views over the same bytes that add the ND fields.
//!
//! Contract: once `check_len` passed, no getter panics. [`Icmpv6Packet::check_len`]
//! requires 8 bytes; the ND views require 24 bytes and well-formed options (no
//! zero length, none running past the buffer).

use core::fmt;
use std::net::Ipv6Addr;

use crate::checksum;
use crate::{IpProtocol, MacAddr, Result, WireError, bytes};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const REST: usize = 4;
    pub const DATA: usize = 8;
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: usize = 8;
    pub const ND_OPTIONS: usize = 24;
}

/// Length of the ICMPv6 header (type, code, checksum and 4 bytes).
pub const HEADER_LEN: usize = field::DATA;
/// Length of an NS or NA without options.
pub const ND_HEADER_LEN: usize = field::ND_OPTIONS;
/// Most bytes of the offending packet to quote in an error, so the error fits the
/// IPv6 minimum MTU (RFC 4443 §2.4 (c)): 1280 - 40 - 8.
pub const MAX_ERROR_QUOTE: usize = 1232;

/// An ICMPv6 message type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Icmpv6Type(pub u8);

impl Icmpv6Type {
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: Icmpv6Type = Icmpv6Type(1);
    /// Packet Too Big.
    pub const PACKET_TOO_BIG: Icmpv6Type = Icmpv6Type(2);
    /// Time Exceeded.
    pub const TIME_EXCEEDED: Icmpv6Type = Icmpv6Type(3);
    /// Parameter Problem.
    pub const PARAM_PROBLEM: Icmpv6Type = Icmpv6Type(4);
    /// Echo Request.
    pub const ECHO_REQUEST: Icmpv6Type = Icmpv6Type(128);
    /// Echo Reply.
    pub const ECHO_REPLY: Icmpv6Type = Icmpv6Type(129);
    /// Router Solicitation.
    pub const ROUTER_SOLICIT: Icmpv6Type = Icmpv6Type(133);
    /// Router Advertisement.
    pub const ROUTER_ADVERT: Icmpv6Type = Icmpv6Type(134);
    /// Neighbor Solicitation.
    pub const NEIGHBOR_SOLICIT: Icmpv6Type = Icmpv6Type(135);
    /// Neighbor Advertisement.
    pub const NEIGHBOR_ADVERT: Icmpv6Type = Icmpv6Type(136);
    /// Redirect.
    pub const REDIRECT: Icmpv6Type = Icmpv6Type(137);

    /// True for error messages (types below 128).
    #[inline]
    pub const fn is_error(self) -> bool {
        self.0 < 128
    }
}

impl fmt::Debug for Icmpv6Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Icmpv6Type::DST_UNREACHABLE => "DstUnreachable",
            Icmpv6Type::PACKET_TOO_BIG => "PacketTooBig",
            Icmpv6Type::TIME_EXCEEDED => "TimeExceeded",
            Icmpv6Type::PARAM_PROBLEM => "ParamProblem",
            Icmpv6Type::ECHO_REQUEST => "EchoRequest",
            Icmpv6Type::ECHO_REPLY => "EchoReply",
            Icmpv6Type::ROUTER_SOLICIT => "RouterSolicit",
            Icmpv6Type::ROUTER_ADVERT => "RouterAdvert",
            Icmpv6Type::NEIGHBOR_SOLICIT => "NeighborSolicit",
            Icmpv6Type::NEIGHBOR_ADVERT => "NeighborAdvert",
            Icmpv6Type::REDIRECT => "Redirect",
            _ => return write!(f, "Icmpv6Type({})", self.0),
        };
        f.write_str(name)
    }
}

/// Destination Unreachable codes.
pub mod dst_unreachable {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Address unreachable.
    pub const ADDRESS: u8 = 3;
    /// Port unreachable.
    pub const PORT: u8 = 4;
    /// Largest defined code.
    pub const MAX: u8 = 7;
}

/// Time Exceeded codes.
pub mod time_exceeded {
    /// Hop limit exceeded in transit.
    pub const HOP_LIMIT: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// The solicited-node multicast group of `addr` (RFC 4291 §2.7.1):
/// `ff02::1:ff00:0/104` plus the low 24 bits of `addr`.
#[inline]
pub const fn solicited_node_multicast(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        ((o[14] as u16) << 8) | o[15] as u16,
    )
}

/// A view over an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn checksum_v6(buf: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, len);
    checksum::finish(ph + checksum::sum(buf))
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer after [`Icmpv6Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
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

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type(self.buffer.as_ref()[field::TYPE])
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

    /// MTU of a Packet Too Big message (the 32 bits after the checksum).
    #[inline]
    pub fn mtu(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::REST)
    }

    /// Echo payload, or the quoted packet of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// True when the checksum over the pseudo-header and whole message is correct.
    #[inline]
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        checksum_v6(self.buffer.as_ref(), src, dst) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type (checksum not updated).
    #[inline]
    pub fn set_msg_type(&mut self, v: Icmpv6Type) {
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

    /// Sets the Packet Too Big MTU.
    #[inline]
    pub fn set_mtu(&mut self, v: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::REST, v);
    }

    /// Mutable data.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes and stores the checksum over the pseudo-header and whole message.
    #[inline]
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum_v6(self.buffer.as_ref(), src, dst);
        self.set_checksum(c);
    }
}

/// ND option types.
pub mod nd_option {
    /// Source Link-Layer Address.
    pub const SOURCE_LL_ADDR: u8 = 1;
    /// Target Link-Layer Address.
    pub const TARGET_LL_ADDR: u8 = 2;
    /// Prefix Information.
    pub const PREFIX_INFO: u8 = 3;
    /// Redirected Header.
    pub const REDIRECTED_HEADER: u8 = 4;
    /// MTU.
    pub const MTU: u8 = 5;
}

/// One Neighbor Discovery option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdOption<'a> {
    /// Source Link-Layer Address (type 1).
    SourceLinkLayer(MacAddr),
    /// Target Link-Layer Address (type 2).
    TargetLinkLayer(MacAddr),
    /// Any other option: its type and the bytes after the type and length octets.
    Other {
        /// Option type.
        kind: u8,
        /// Option body.
        data: &'a [u8],
    },
}

/// Length of a link-layer address option for Ethernet.
pub const LL_ADDR_OPTION_LEN: usize = 8;

/// Iterator over ND options. Yields `Err` once and stops on a zero-length option
/// (`Malformed`) or one running past the buffer (`Truncated`).
#[derive(Debug, Clone)]
pub struct NdOptionsIter<'a> {
    bytes: &'a [u8],
}

impl<'a> NdOptionsIter<'a> {
    /// Iterates over the options in `bytes`.
    #[inline]
    pub const fn new(bytes: &'a [u8]) -> NdOptionsIter<'a> {
        NdOptionsIter { bytes }
    }
}

impl<'a> Iterator for NdOptionsIter<'a> {
    type Item = Result<NdOption<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.bytes;
        if b.is_empty() {
            return None;
        }
        let (kind, len) = match b {
            [kind, len, ..] => (*kind, usize::from(*len) * 8),
            _ => {
                self.bytes = &[];
                return Some(Err(WireError::Truncated));
            }
        };
        if len == 0 {
            self.bytes = &[];
            return Some(Err(WireError::Malformed));
        }
        let Some(opt) = b.get(..len) else {
            self.bytes = &[];
            return Some(Err(WireError::Truncated));
        };
        self.bytes = &b[len..];
        let data = &opt[2..];
        let mac = || bytes::mac_at(data, 0);
        Some(Ok(match kind {
            nd_option::SOURCE_LL_ADDR => NdOption::SourceLinkLayer(mac()),
            nd_option::TARGET_LL_ADDR => NdOption::TargetLinkLayer(mac()),
            _ => NdOption::Other { kind, data },
        }))
    }
}

impl core::iter::FusedIterator for NdOptionsIter<'_> {}

#[inline]
fn check_nd_len(buf: &[u8]) -> Result<()> {
    let Some(options) = buf.get(ND_HEADER_LEN..) else {
        return Err(WireError::Truncated);
    };
    for opt in NdOptionsIter::new(options) {
        opt?;
    }
    Ok(())
}

#[inline]
fn emit_ll_option(buf: &mut [u8], kind: u8, mac: MacAddr) {
    buf[0] = kind;
    buf[1] = 1;
    buf[2..LL_ADDR_OPTION_LEN].copy_from_slice(&mac.0);
}

macro_rules! nd_view_common {
    ($view:ident) => {
        impl<T: AsRef<[u8]>> $view<T> {
            /// Wraps a buffer without checking it.
            #[inline]
            pub const fn new_unchecked(buffer: T) -> $view<T> {
                $view { buffer }
            }

            /// Wraps a buffer after `check_len`.
            #[inline]
            pub fn new_checked(buffer: T) -> Result<$view<T>> {
                let p = Self::new_unchecked(buffer);
                p.check_len()?;
                Ok(p)
            }

            /// Ensures the 24-byte message and that every option is well formed.
            #[inline]
            pub fn check_len(&self) -> Result<()> {
                check_nd_len(self.buffer.as_ref())
            }

            /// Returns the underlying buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }

            /// The ICMPv6 view of the same bytes.
            #[inline]
            pub fn icmp(&self) -> Icmpv6Packet<&[u8]> {
                Icmpv6Packet::new_unchecked(self.buffer.as_ref())
            }

            /// Target address.
            #[inline]
            pub fn target_addr(&self) -> Ipv6Addr {
                bytes::ipv6_at(self.buffer.as_ref(), field::ND_TARGET)
            }

            /// Raw option bytes.
            #[inline]
            pub fn options(&self) -> &[u8] {
                &self.buffer.as_ref()[field::ND_OPTIONS..]
            }

            /// Iterator over the options.
            #[inline]
            pub fn options_iter(&self) -> NdOptionsIter<'_> {
                NdOptionsIter::new(self.options())
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $view<T> {
            /// Sets the target address.
            #[inline]
            pub fn set_target_addr(&mut self, a: &Ipv6Addr) {
                bytes::put_bytes(self.buffer.as_mut(), field::ND_TARGET, &a.octets());
            }

            /// Mutable option bytes.
            #[inline]
            pub fn options_mut(&mut self) -> &mut [u8] {
                &mut self.buffer.as_mut()[field::ND_OPTIONS..]
            }

            /// The mutable ICMPv6 view of the same bytes (type, code, checksum).
            #[inline]
            pub fn icmp_mut(&mut self) -> Icmpv6Packet<&mut [u8]> {
                Icmpv6Packet::new_unchecked(self.buffer.as_mut())
            }
        }
    };
}

/// A view over a Neighbor Solicitation (type 135).
#[derive(Debug, Clone)]
pub struct NeighborSolicit<T: AsRef<[u8]>> {
    buffer: T,
}

nd_view_common!(NeighborSolicit);

impl<T: AsRef<[u8]>> NeighborSolicit<T> {
    /// The first Source Link-Layer Address option, if any.
    #[inline]
    pub fn source_ll_addr(&self) -> Option<MacAddr> {
        self.options_iter()
            .map_while(|o| o.ok())
            .find_map(|o| match o {
                NdOption::SourceLinkLayer(m) => Some(m),
                _ => None,
            })
    }
}

/// A view over a Neighbor Advertisement (type 136).
#[derive(Debug, Clone)]
pub struct NeighborAdvert<T: AsRef<[u8]>> {
    buffer: T,
}

nd_view_common!(NeighborAdvert);

const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

impl<T: AsRef<[u8]>> NeighborAdvert<T> {
    #[inline]
    fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::ND_FLAGS]
    }

    /// R flag: the sender is a router.
    #[inline]
    pub fn router_flag(&self) -> bool {
        self.flags() & NA_ROUTER != 0
    }

    /// S flag: sent in response to a solicitation.
    #[inline]
    pub fn solicited_flag(&self) -> bool {
        self.flags() & NA_SOLICITED != 0
    }

    /// O flag: override an existing cache entry.
    #[inline]
    pub fn override_flag(&self) -> bool {
        self.flags() & NA_OVERRIDE != 0
    }

    /// The first Target Link-Layer Address option, if any.
    #[inline]
    pub fn target_ll_addr(&self) -> Option<MacAddr> {
        self.options_iter()
            .map_while(|o| o.ok())
            .find_map(|o| match o {
                NdOption::TargetLinkLayer(m) => Some(m),
                _ => None,
            })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NeighborAdvert<T> {
    /// Sets the R, S and O flags (and zeroes the reserved bits).
    #[inline]
    pub fn set_flags(&mut self, router: bool, solicited: bool, override_: bool) {
        let mut f = 0;
        if router {
            f |= NA_ROUTER;
        }
        if solicited {
            f |= NA_SOLICITED;
        }
        if override_ {
            f |= NA_OVERRIDE;
        }
        bytes::put_u32(self.buffer.as_mut(), field::ND_FLAGS, u32::from(f) << 24);
    }
}

/// A parsed ICMPv6 message of a type the router handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr<'a> {
    /// Echo Request (type 128).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Echo Reply (type 129).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Destination Unreachable (type 1).
    DstUnreachable {
        /// Code, see [`dst_unreachable`].
        code: u8,
        /// Quoted packet.
        data: &'a [u8],
    },
    /// Packet Too Big (type 2).
    PacketTooBig {
        /// MTU of the next-hop link.
        mtu: u32,
        /// Quoted packet.
        data: &'a [u8],
    },
    /// Time Exceeded (type 3).
    TimeExceeded {
        /// Code, see [`time_exceeded`].
        code: u8,
        /// Quoted packet.
        data: &'a [u8],
    },
    /// Neighbor Solicitation (type 135).
    NeighborSolicit {
        /// Address being resolved (never multicast).
        target_addr: Ipv6Addr,
        /// The sender's MAC, if the option was present.
        source_ll_addr: Option<MacAddr>,
    },
    /// Neighbor Advertisement (type 136).
    NeighborAdvert {
        /// R flag.
        router_flag: bool,
        /// S flag.
        solicited_flag: bool,
        /// O flag.
        override_flag: bool,
        /// Address advertised (never multicast).
        target_addr: Ipv6Addr,
        /// The advertised MAC, if the option was present.
        target_ll_addr: Option<MacAddr>,
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses a message. Other types are `Unsupported`; an invalid code, a multicast
    /// ND target or bad ND options are errors. The checksum and the ND hop limit
    /// (255) are not checked: call [`Icmpv6Packet::verify_checksum`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv6Packet<&'a T>) -> Result<Icmpv6Repr<'a>> {
        packet.check_len()?;
        let buf: &'a [u8] = packet.buffer.as_ref();
        let data = &buf[field::DATA..];
        let echo = |request: bool| {
            let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
            if request {
                Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                }
            } else {
                Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                }
            }
        };
        match (packet.msg_type(), packet.code()) {
            (Icmpv6Type::ECHO_REQUEST, 0) => Ok(echo(true)),
            (Icmpv6Type::ECHO_REPLY, 0) => Ok(echo(false)),
            (Icmpv6Type::DST_UNREACHABLE, code) if code <= dst_unreachable::MAX => {
                Ok(Icmpv6Repr::DstUnreachable { code, data })
            }
            (Icmpv6Type::PACKET_TOO_BIG, 0) => Ok(Icmpv6Repr::PacketTooBig {
                mtu: packet.mtu(),
                data,
            }),
            (Icmpv6Type::TIME_EXCEEDED, code) if code <= time_exceeded::REASSEMBLY => {
                Ok(Icmpv6Repr::TimeExceeded { code, data })
            }
            (Icmpv6Type::NEIGHBOR_SOLICIT, 0) => {
                let ns = NeighborSolicit::new_checked(buf)?;
                let target_addr = ns.target_addr();
                if target_addr.is_multicast() {
                    return Err(WireError::Malformed);
                }
                Ok(Icmpv6Repr::NeighborSolicit {
                    target_addr,
                    source_ll_addr: ns.source_ll_addr(),
                })
            }
            (Icmpv6Type::NEIGHBOR_ADVERT, 0) => {
                let na = NeighborAdvert::new_checked(buf)?;
                let target_addr = na.target_addr();
                if target_addr.is_multicast() {
                    return Err(WireError::Malformed);
                }
                Ok(Icmpv6Repr::NeighborAdvert {
                    router_flag: na.router_flag(),
                    solicited_flag: na.solicited_flag(),
                    override_flag: na.override_flag(),
                    target_addr,
                    target_ll_addr: na.target_ll_addr(),
                })
            }
            (
                Icmpv6Type::ECHO_REQUEST
                | Icmpv6Type::ECHO_REPLY
                | Icmpv6Type::DST_UNREACHABLE
                | Icmpv6Type::PACKET_TOO_BIG
                | Icmpv6Type::TIME_EXCEEDED
                | Icmpv6Type::NEIGHBOR_SOLICIT
                | Icmpv6Type::NEIGHBOR_ADVERT,
                _,
            ) => Err(WireError::Malformed),
            _ => Err(WireError::Unsupported),
        }
    }

    /// The leading part of an offending packet to quote in an error message.
    #[inline]
    pub fn quote(packet: &[u8]) -> &[u8] {
        &packet[..packet.len().min(MAX_ERROR_QUOTE)]
    }

    /// Message length.
    pub fn buffer_len(&self) -> usize {
        match *self {
            Icmpv6Repr::EchoRequest { data, .. }
            | Icmpv6Repr::EchoReply { data, .. }
            | Icmpv6Repr::DstUnreachable { data, .. }
            | Icmpv6Repr::PacketTooBig { data, .. }
            | Icmpv6Repr::TimeExceeded { data, .. } => HEADER_LEN + data.len(),
            Icmpv6Repr::NeighborSolicit {
                source_ll_addr: ll, ..
            }
            | Icmpv6Repr::NeighborAdvert {
                target_ll_addr: ll, ..
            } => ND_HEADER_LEN + if ll.is_some() { LL_ADDR_OPTION_LEN } else { 0 },
        }
    }

    /// Writes the message and its checksum for the given IPv6 addresses. The
    /// buffer must be exactly [`Icmpv6Repr::buffer_len`] bytes, as the checksum
    /// covers all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        packet: &mut Icmpv6Packet<T>,
    ) {
        let buf = packet.buffer.as_mut();
        let (ty, code, rest, data): (Icmpv6Type, u8, u32, &[u8]) = match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (
                Icmpv6Type::ECHO_REQUEST,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
                data,
            ),
            Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (
                Icmpv6Type::ECHO_REPLY,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
                data,
            ),
            Icmpv6Repr::DstUnreachable { code, data } => {
                (Icmpv6Type::DST_UNREACHABLE, code, 0, data)
            }
            Icmpv6Repr::PacketTooBig { mtu, data } => (Icmpv6Type::PACKET_TOO_BIG, 0, mtu, data),
            Icmpv6Repr::TimeExceeded { code, data } => (Icmpv6Type::TIME_EXCEEDED, code, 0, data),
            Icmpv6Repr::NeighborSolicit {
                target_addr,
                source_ll_addr,
            } => {
                bytes::put_bytes(buf, field::ND_TARGET, &target_addr.octets());
                if let Some(mac) = source_ll_addr {
                    emit_ll_option(
                        &mut buf[field::ND_OPTIONS..],
                        nd_option::SOURCE_LL_ADDR,
                        mac,
                    );
                }
                (Icmpv6Type::NEIGHBOR_SOLICIT, 0, 0, &[])
            }
            Icmpv6Repr::NeighborAdvert {
                router_flag,
                solicited_flag,
                override_flag,
                target_addr,
                target_ll_addr,
            } => {
                bytes::put_bytes(buf, field::ND_TARGET, &target_addr.octets());
                if let Some(mac) = target_ll_addr {
                    emit_ll_option(
                        &mut buf[field::ND_OPTIONS..],
                        nd_option::TARGET_LL_ADDR,
                        mac,
                    );
                }
                let flags = (u32::from(router_flag) << 31)
                    | (u32::from(solicited_flag) << 30)
                    | (u32::from(override_flag) << 29);
                (Icmpv6Type::NEIGHBOR_ADVERT, 0, flags, &[])
            }
        };
        buf[field::TYPE] = ty.0;
        buf[field::CODE] = code;
        bytes::put_u32(buf, field::REST, rest);
        bytes::put_bytes(buf, field::DATA, data);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    let a = Ipv6Addr::LOCALHOST;
    if let Ok(p) = Icmpv6Packet::new_checked(bytes) {
        let _ = (
            p.msg_type(),
            p.code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq_no(),
        );
        let _ = (p.mtu(), p.data().len(), p.verify_checksum(&a, &a));
        let _ = Icmpv6Repr::parse(&p);
    }
    if let Ok(ns) = NeighborSolicit::new_checked(bytes) {
        let _ = (
            ns.target_addr(),
            ns.source_ll_addr(),
            ns.options().len(),
            ns.icmp().code(),
        );
        assert!(ns.options_iter().all(|o| o.is_ok()));
    }
    if let Ok(na) = NeighborAdvert::new_checked(bytes) {
        let _ = (na.router_flag(), na.solicited_flag(), na.override_flag());
        let _ = (na.target_addr(), na.target_ll_addr(), na.options().len());
        assert!(na.options_iter().all(|o| o.is_ok()));
    }
    assert!(NdOptionsIter::new(bytes).count() <= bytes.len() / 8 + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    // NS for 2001:db8::2 from fe80::5054:ff:fe12:3456 to ff02::1:ff00:2, SLLA 52:54:00:12:34:56.
    const NS: [u8; 32] = [
        0x87, 0x00, 0x42, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01, 0x52, 0x54, //
        0x00, 0x12, 0x34, 0x56,
    ];
    // Solicited + Override NA for 2001:db8::2 back to fe80::5054:ff:fe12:3456, TLLA 02::02.
    const NA: [u8; 32] = [
        0x88, 0x00, 0x35, 0xee, 0x60, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x01, 0x02, 0x00, //
        0x00, 0x00, 0x00, 0x02,
    ];
    const LL: &str = "fe80::5054:ff:fe12:3456";

    #[test]
    fn parse_real_ns() {
        let p = Icmpv6Packet::new_checked(&NS[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Type::NEIGHBOR_SOLICIT);
        assert!(p.verify_checksum(&addr(LL), &addr("ff02::1:ff00:2")));
        let ns = NeighborSolicit::new_checked(&NS[..]).unwrap();
        assert_eq!(ns.target_addr(), addr("2001:db8::2"));
        let mac = MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56);
        assert_eq!(ns.source_ll_addr(), Some(mac));
        assert_eq!(
            Icmpv6Repr::parse(&p),
            Ok(Icmpv6Repr::NeighborSolicit {
                target_addr: addr("2001:db8::2"),
                source_ll_addr: Some(mac)
            })
        );
        assert_eq!(
            solicited_node_multicast(ns.target_addr()),
            addr("ff02::1:ff00:2")
        );
    }

    #[test]
    fn parse_real_na() {
        let p = Icmpv6Packet::new_checked(&NA[..]).unwrap();
        assert!(p.verify_checksum(&addr("2001:db8::2"), &addr(LL)));
        let na = NeighborAdvert::new_checked(&NA[..]).unwrap();
        assert!(!na.router_flag() && na.solicited_flag() && na.override_flag());
        assert_eq!(na.target_ll_addr(), Some(MacAddr::new(2, 0, 0, 0, 0, 2)));
        assert!(matches!(
            Icmpv6Repr::parse(&p),
            Ok(Icmpv6Repr::NeighborAdvert {
                solicited_flag: true,
                ..
            })
        ));
    }

    #[test]
    fn nd_option_errors() {
        // Zero-length option: rejected, not looped on.
        let mut b = NS;
        b[25] = 0;
        assert_eq!(
            NeighborSolicit::new_checked(&b[..]).err(),
            Some(WireError::Malformed)
        );
        let mut it = NdOptionsIter::new(&b[24..]);
        assert_eq!(it.next(), Some(Err(WireError::Malformed)));
        assert_eq!(it.next(), None);
        assert_eq!(
            Icmpv6Repr::parse(&Icmpv6Packet::new_unchecked(&b[..])),
            Err(WireError::Malformed)
        );
        // Option longer than the buffer.
        let mut b = NS;
        b[25] = 2;
        assert_eq!(
            NeighborSolicit::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
        // A lone type byte.
        assert_eq!(
            NeighborSolicit::new_checked(&NS[..25]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            NeighborSolicit::new_checked(&NS[..23]).err(),
            Some(WireError::Truncated)
        );
        // No options at all is fine.
        let ns = NeighborSolicit::new_checked(&NS[..24]).unwrap();
        assert_eq!(ns.source_ll_addr(), None);
        // Unknown options are skipped over.
        let mut v = NS[..24].to_vec();
        v.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        v.extend_from_slice(&NS[24..]);
        let ns = NeighborSolicit::new_checked(&v[..]).unwrap();
        assert_eq!(
            ns.options_iter().next(),
            Some(Ok(NdOption::Other {
                kind: 14,
                data: &[1, 2, 3, 4, 5, 6]
            }))
        );
        assert_eq!(
            ns.source_ll_addr(),
            Some(MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56))
        );
    }

    #[test]
    fn invalid_reprs() {
        let mut b = NS;
        b[8] = 0xff; // multicast target
        assert_eq!(
            Icmpv6Repr::parse(&Icmpv6Packet::new_unchecked(&b[..])),
            Err(WireError::Malformed)
        );
        let mut b = NS;
        b[1] = 1;
        assert_eq!(
            Icmpv6Repr::parse(&Icmpv6Packet::new_unchecked(&b[..])),
            Err(WireError::Malformed)
        );
        b[0] = 134;
        assert_eq!(
            Icmpv6Repr::parse(&Icmpv6Packet::new_unchecked(&b[..])),
            Err(WireError::Unsupported)
        );
        assert_eq!(
            Icmpv6Packet::new_checked(&NS[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn every_prefix_is_safe() {
        for pkt in [&NS[..], &NA[..]] {
            for n in 0..=pkt.len() {
                read_all(&pkt[..n]);
            }
        }
    }

    #[test]
    fn round_trips_and_etherparse() {
        let (src, dst) = (addr("2001:200::1"), addr("2001:200::2"));
        let quote = Icmpv6Repr::quote(&[0x60u8; 1500]);
        assert_eq!(quote.len(), MAX_ERROR_QUOTE);
        let reprs = [
            Icmpv6Repr::EchoRequest {
                ident: 1,
                seq_no: 2,
                data: b"0123456789",
            },
            Icmpv6Repr::EchoReply {
                ident: 0xffff,
                seq_no: 0,
                data: b"",
            },
            Icmpv6Repr::DstUnreachable {
                code: dst_unreachable::NO_ROUTE,
                data: &quote[..100],
            },
            Icmpv6Repr::PacketTooBig {
                mtu: 1400,
                data: quote,
            },
            Icmpv6Repr::TimeExceeded {
                code: time_exceeded::HOP_LIMIT,
                data: &quote[..48],
            },
            Icmpv6Repr::NeighborSolicit {
                target_addr: dst,
                source_ll_addr: None,
            },
            Icmpv6Repr::NeighborSolicit {
                target_addr: dst,
                source_ll_addr: Some(MacAddr::new(2, 0, 0, 0, 0, 7)),
            },
            Icmpv6Repr::NeighborAdvert {
                router_flag: true,
                solicited_flag: false,
                override_flag: true,
                target_addr: src,
                target_ll_addr: Some(MacAddr::new(2, 0, 0, 0, 0, 8)),
            },
        ];
        for repr in reprs {
            let mut b = vec![0xa5u8; repr.buffer_len()];
            let mut p = Icmpv6Packet::new_unchecked(&mut b[..]);
            repr.emit(&src, &dst, &mut p);
            assert!(p.verify_checksum(&src, &dst), "{repr:?}");
            let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
            assert_eq!(Icmpv6Repr::parse(&p), Ok(repr));

            let s = etherparse::Icmpv6Slice::from_slice(&b).unwrap();
            assert!(s.is_checksum_valid(src.octets(), dst.octets()), "{repr:?}");
            use etherparse::Icmpv6Type as E;
            match (repr, s.icmp_type()) {
                (Icmpv6Repr::EchoRequest { ident, seq_no, .. }, E::EchoRequest(e))
                | (Icmpv6Repr::EchoReply { ident, seq_no, .. }, E::EchoReply(e)) => {
                    assert_eq!((e.id, e.seq), (ident, seq_no));
                }
                (Icmpv6Repr::DstUnreachable { code, .. }, E::DestinationUnreachable(c)) => {
                    assert_eq!(c.code_u8(), code);
                }
                (Icmpv6Repr::PacketTooBig { mtu, .. }, E::PacketTooBig { mtu: m }) => {
                    assert_eq!(m, mtu)
                }
                (Icmpv6Repr::TimeExceeded { code, .. }, E::TimeExceeded(c)) => {
                    assert_eq!(c.code_u8(), code)
                }
                (
                    Icmpv6Repr::NeighborSolicit { .. },
                    E::Unknown {
                        type_u8, code_u8, ..
                    },
                ) => {
                    assert_eq!((type_u8, code_u8), (135, 0));
                }
                (
                    Icmpv6Repr::NeighborAdvert { .. },
                    E::Unknown {
                        type_u8, bytes5to8, ..
                    },
                ) => {
                    assert_eq!(type_u8, 136);
                    assert_eq!(bytes5to8, [0xa0, 0, 0, 0]);
                }
                other => panic!("mismatch {other:?}"),
            }
        }
    }

    #[test]
    fn multicast_helpers() {
        assert_eq!(
            solicited_node_multicast(addr("2001:db8::abcd:ef01:2345")),
            addr("ff02::1:ff01:2345")
        );
        assert_eq!(
            MacAddr::from_ipv6_multicast(solicited_node_multicast(addr("fe80::5054:ff:fe12:3456"))),
            MacAddr::new(0x33, 0x33, 0xff, 0x12, 0x34, 0x56)
        );
    }
}

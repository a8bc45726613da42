//! Definitions shared by IPv4 and IPv6.

use core::fmt;

/// An IP protocol / IPv6 next-header number; the constants name the ones the
/// router looks at.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 Hop-by-Hop Options.
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    /// ICMP.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// IGMP.
    pub const IGMP: IpProtocol = IpProtocol(2);
    /// IPv4 encapsulation.
    pub const IPV4: IpProtocol = IpProtocol(4);
    /// TCP.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 encapsulation.
    pub const IPV6: IpProtocol = IpProtocol(41);
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    /// GRE.
    pub const GRE: IpProtocol = IpProtocol(47);
    /// IPsec Encapsulating Security Payload.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// IPsec Authentication Header.
    pub const AH: IpProtocol = IpProtocol(51);
    /// ICMPv6.
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 No Next Header.
    pub const IPV6_NO_NEXT: IpProtocol = IpProtocol(59);
    /// IPv6 Destination Options.
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            IpProtocol::HOP_BY_HOP => "HopByHop",
            IpProtocol::ICMP => "ICMP",
            IpProtocol::IGMP => "IGMP",
            IpProtocol::IPV4 => "IPv4",
            IpProtocol::TCP => "TCP",
            IpProtocol::UDP => "UDP",
            IpProtocol::IPV6 => "IPv6",
            IpProtocol::IPV6_ROUTE => "IPv6Route",
            IpProtocol::IPV6_FRAG => "IPv6Frag",
            IpProtocol::GRE => "GRE",
            IpProtocol::ESP => "ESP",
            IpProtocol::AH => "AH",
            IpProtocol::ICMPV6 => "ICMPv6",
            IpProtocol::IPV6_NO_NEXT => "IPv6NoNext",
            IpProtocol::IPV6_OPTS => "IPv6Opts",
            _ => return write!(f, "IpProtocol({})", self.0),
        };
        f.write_str(name)
    }
}

impl From<u8> for IpProtocol {
    #[inline]
    fn from(v: u8) -> IpProtocol {
        IpProtocol(v)
    }
}

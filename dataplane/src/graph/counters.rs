//! Every named counter of the pipeline in one list, like VPP's `*_error.def`.
//!
//! A counter is either a drop reason (the packet was freed, counted here) or
//! an event (something happened to a packet that went on: learned, replied,
//! rate-limited). `vrouterd` prints the non-zero ones on exit and on SIGUSR1;
//! the control socket will expose them by name.

macro_rules! counters {
    ($($variant:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        /// A named pipeline counter. The name is stable: operators grep for it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Counter { $($variant,)* }

        impl Counter {
            /// All counters, in declaration order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Number of counters.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable, kebab-case name (`ip4-ttl-expired`).
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }

            /// One line saying what the counter means.
            pub const fn help(self) -> &'static str {
                match self { $(Counter::$variant => $help,)* }
            }

            /// True if packets counted here were dropped.
            pub const fn is_drop(self) -> bool {
                match self { $(Counter::$variant => matches!(CounterKind::$kind, CounterKind::Drop),)* }
            }

            /// The counter with this index, if any.
            pub fn from_index(i: u16) -> Option<Counter> {
                Self::ALL.get(i as usize).copied()
            }
        }
    };
}

#[allow(dead_code)]
enum CounterKind {
    Drop,
    Event,
}

counters! {
    // Port input.
    RxOversize = "rx-oversize", Drop, "frame larger than a buffer, dropped at the port";
    RxNoBuffer = "rx-no-buffer", Drop, "no free frame to receive into";
    // ethernet-input
    EthRunt = "ethernet-runt", Drop, "frame shorter than an Ethernet header";
    EthUnknownInterface = "ethernet-unknown-interface", Drop, "no interface configured for this port and VLAN";
    EthNotForUs = "ethernet-not-for-us", Drop, "routed interface: destination MAC is neither ours nor broadcast/multicast";
    EthUnknownEthertype = "ethernet-unknown-ethertype", Drop, "routed interface: EtherType is not IPv4, IPv6 or ARP";
    EthBadVlan = "ethernet-bad-vlan", Drop, "VLAN tag truncated, or stacked tags (QinQ) not supported";
    // L2
    L2Learned = "l2-learned", Event, "new MAC learned";
    L2StationMove = "l2-station-move", Event, "learned MAC moved to another interface";
    L2MacLimit = "l2-mac-limit", Event, "bridge domain at its MAC limit: source not learned (frame still forwarded)";
    L2TableFull = "l2-table-full", Event, "no free slot in the MAC table bucket: source not learned";
    L2StaticMove = "l2-static-mac-moved", Drop, "source MAC is a static entry on another interface (spoofed)";
    L2BadSourceMac = "l2-bad-source-mac", Drop, "source MAC is multicast, broadcast or zero";
    L2SameInterface = "l2-same-interface", Drop, "destination MAC is behind the interface the frame came in on";
    L2SplitHorizon = "l2-split-horizon", Drop, "destination is in the ingress interface's split-horizon group";
    L2FloodNoBuffer = "l2-flood-no-buffer", Drop, "no frame to replicate a flooded packet into (a copy not made: not a received packet)";
    L2FloodEmpty = "l2-flood-empty", Drop, "flooded frame had no other member to go to";
    L2UnknownDropped = "l2-unknown-unicast-dropped", Drop, "unknown unicast in a domain that does not flood it";
    L2Flooded = "l2-flooded", Event, "frame flooded (unknown unicast, broadcast or multicast)";
    L2FloodCopies = "l2-flood-copies", Event, "copies made of flooded frames (packets the router adds: RX + copies = TX + drops)";
    L2MtuExceeded = "l2-mtu-exceeded", Drop, "bridged frame larger than the output interface MTU";
    // ARP
    ArpMalformed = "arp-malformed", Drop, "ARP packet truncated or not Ethernet/IPv4";
    ArpNotForUs = "arp-not-for-us", Drop, "ARP request for an address that is not ours";
    ArpReplySent = "arp-reply-sent", Event, "ARP reply sent for one of our addresses";
    ArpLearned = "arp-neighbor-learned", Event, "neighbour learned or refreshed from ARP";
    ArpConsumed = "arp-consumed", Drop, "ARP reply or gratuitous ARP consumed after learning";
    ArpRequestSent = "arp-request-sent", Event, "ARP request sent to resolve a next hop";
    // ip4-input
    Ip4Truncated = "ip4-truncated", Drop, "IPv4 header or total length beyond the frame";
    Ip4BadVersion = "ip4-bad-version", Drop, "IP version field is not 4";
    Ip4BadIhl = "ip4-bad-ihl", Drop, "IPv4 header length below 20 bytes";
    Ip4BadLength = "ip4-bad-length", Drop, "IPv4 total length smaller than its header";
    Ip4BadChecksum = "ip4-bad-checksum", Drop, "IPv4 header checksum is wrong";
    Ip4BadSource = "ip4-bad-source", Drop, "IPv4 source is multicast, broadcast or loopback";
    // ip4-lookup / rewrite
    Ip4NoRoute = "ip4-no-route", Drop, "no IPv4 route (ICMP unreachable sent when allowed)";
    Ip4Blackhole = "ip4-blackhole", Drop, "IPv4 route says drop";
    Ip4TtlExpired = "ip4-ttl-expired", Drop, "IPv4 TTL would reach 0 (ICMP time exceeded sent when allowed)";
    Ip4MtuExceeded = "ip4-mtu-exceeded", Drop, "IPv4 packet with DF larger than the egress MTU (ICMP frag-needed sent)";
    Ip4FragmentNeeded = "ip4-fragmentation-unsupported", Drop, "IPv4 packet without DF larger than the egress MTU: vrouterd does not fragment";
    Ip4BadNextHop = "ip4-bad-next-hop", Drop, "route points to a next hop that no longer exists";
    // ip4-local
    Ip4LocalFragment = "ip4-local-fragment", Drop, "fragment addressed to the router (no reassembly)";
    Ip4LocalUnknown = "ip4-local-unknown-protocol", Drop, "packet for the router with a protocol it does not serve";
    Ip4EchoReply = "ip4-echo-reply-sent", Event, "ICMP echo reply sent";
    Icmp4Malformed = "icmp4-malformed", Drop, "ICMP packet for the router truncated or with a bad checksum";
    Icmp4Ignored = "icmp4-ignored", Drop, "ICMP message for the router that needs no answer";
    Udp4PortUnreachable = "udp4-port-unreachable", Drop, "UDP packet for the router: no service (ICMP port unreachable sent)";
    // ICMPv4 errors
    Icmp4ErrorSent = "icmp4-error-sent", Event, "ICMP error generated";
    Icmp4RateLimited = "icmp4-error-rate-limited", Event, "ICMP error suppressed by the rate limiter";
    Icmp4ErrorSuppressed = "icmp4-error-suppressed", Event, "ICMP error not allowed for this packet (RFC 1812: ICMP error, fragment, broadcast or bad source)";
    // glean (neighbour resolution)
    GleanQueued = "glean-queued", Event, "packet held while its next hop is resolved";
    GleanQueueFull = "glean-queue-full", Drop, "neighbour resolution queue full";
    GleanTimeout = "glean-timeout", Drop, "next hop did not resolve in time";
    // ip6
    Ip6Truncated = "ip6-truncated", Drop, "IPv6 header or payload length beyond the frame";
    Ip6BadVersion = "ip6-bad-version", Drop, "IP version field is not 6";
    Ip6BadSource = "ip6-bad-source", Drop, "IPv6 source is multicast or loopback";
    Ip6BadExtHeader = "ip6-bad-extension-header", Drop, "IPv6 extension header chain malformed or too long";
    Ip6NoRoute = "ip6-no-route", Drop, "no IPv6 route (ICMPv6 unreachable sent when allowed)";
    Ip6Blackhole = "ip6-blackhole", Drop, "IPv6 route says drop";
    Ip6HopLimitExpired = "ip6-hop-limit-expired", Drop, "IPv6 hop limit would reach 0 (ICMPv6 time exceeded sent when allowed)";
    Ip6MtuExceeded = "ip6-mtu-exceeded", Drop, "IPv6 packet larger than the egress MTU (ICMPv6 packet too big sent)";
    Ip6BadNextHop = "ip6-bad-next-hop", Drop, "route points to a next hop that no longer exists";
    Ip6LocalUnknown = "ip6-local-unknown-protocol", Drop, "packet for the router with a protocol it does not serve";
    Ip6EchoReply = "ip6-echo-reply-sent", Event, "ICMPv6 echo reply sent";
    Icmp6Malformed = "icmp6-malformed", Drop, "ICMPv6 packet for the router truncated or with a bad checksum";
    Icmp6Ignored = "icmp6-ignored", Drop, "ICMPv6 message for the router that needs no answer";
    Udp6PortUnreachable = "udp6-port-unreachable", Drop, "UDP packet for the router: no service (ICMPv6 port unreachable sent)";
    NdMalformed = "nd-malformed", Drop, "neighbour discovery message malformed (length, hop limit, options)";
    NdNotForUs = "nd-not-for-us", Drop, "neighbour solicitation for an address that is not ours";
    NdAdvertSent = "nd-advert-sent", Event, "neighbour advertisement sent for one of our addresses";
    NdLearned = "nd-neighbor-learned", Event, "neighbour learned or refreshed from ND";
    NdConsumed = "nd-consumed", Drop, "neighbour advertisement consumed after learning";
    NdSolicitSent = "nd-solicit-sent", Event, "neighbour solicitation sent to resolve a next hop";
    Icmp6ErrorSent = "icmp6-error-sent", Event, "ICMPv6 error generated";
    Icmp6RateLimited = "icmp6-error-rate-limited", Event, "ICMPv6 error suppressed by the rate limiter";
    Icmp6ErrorSuppressed = "icmp6-error-suppressed", Event, "ICMPv6 error not allowed for this packet (RFC 4443 2.4(e))";
    // VXLAN
    VxlanBadHeader = "vxlan-bad-header", Drop, "VXLAN packet truncated, UDP length wrong, I flag clear, or inner frame too short";
    VxlanBadChecksum = "vxlan-bad-udp-checksum", Drop, "VXLAN packet with a non-zero, wrong UDP checksum";
    VxlanUnknownVni = "vxlan-unknown-vni", Drop, "VXLAN packet for a VNI the VTEP does not have";
    VxlanUnknownVtep = "vxlan-unknown-vtep", Drop, "VXLAN packet from a remote VTEP not configured for its VNI";
    VxlanInnerVlan = "vxlan-inner-vlan", Drop, "decapsulated frame carries a VLAN tag";
    VxlanNotForUs = "vxlan-not-for-us", Drop, "L3 VNI: inner destination MAC is neither ours nor broadcast/multicast";
    VxlanArpSuppressed = "vxlan-arp-suppressed", Event, "ARP request for a known overlay endpoint answered locally";
    // pod-guard (anti-spoofing), ipN-conntrack: services, conntrack, NetworkPolicy
    SpoofedSource = "spoofed-source", Drop, "pod port: source MAC or IP address is not the bound pod's own";
    SpoofedNd = "spoofed-nd", Drop, "pod port: neighbour discovery claiming an address or MAC not the pod's own, or a router advertisement/redirect";
    SpoofedArp = "spoofed-arp", Drop, "pod port: ARP whose sender MAC or IPv4 is not the pod's own";
    CtFragment = "ct-fragment", Drop, "IP fragment to a service VIP or to/from an isolated pod (no reassembly)";
    CtMalformed = "ct-malformed", Drop, "TCP/UDP/ICMP header too short to track or translate";
    CtTableFull = "ct-table-full", Drop, "new flow refused: conntrack table (or SNAT ports) full; existing flows kept";
    CtPodQuota = "ct-pod-quota", Drop, "new flow refused: the pod's interface is at its conntrack quota";
    CtIcmpUnrelated = "ct-icmp-unrelated", Drop, "ICMP error to an isolated pod that quotes no tracked flow";
    CtFlowCreated = "ct-flow-created", Event, "conntrack flow created";
    CtFlowRemoved = "ct-flow-removed", Event, "conntrack flow expired and freed";
    PolicyDenied = "policy-denied", Drop, "new connection denied by NetworkPolicy (isolated pod, no rule allows it)";
    SvcNoEndpoints = "svc-no-endpoints", Drop, "service without endpoints (ICMP port unreachable sent when allowed)";
    SvcRejectSent = "svc-reject-sent", Event, "TCP RST sent for a service without endpoints";
    // output
    TxRingFull = "tx-ring-full", Drop, "port could not take the packet (TX ring full or port error)";
    GraphLoop = "graph-loop", Drop, "packet still in the graph after the pass limit (a forwarding loop inside the router)";
    GraphNoSpace = "graph-no-space", Drop, "no room in the vector for a generated packet";
    GraphLost = "graph-lost", Drop, "packet left the graph without a decision (a bug; freed)";
    EventQueueFull = "event-queue-full", Event, "event for the control thread lost: queue full";
    NoBuffer = "no-buffer", Event, "no free frame to build a packet the router sends (ARP, ND)";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_kebab_case() {
        let mut seen = HashSet::new();
        for c in Counter::ALL {
            assert!(seen.insert(c.name()), "duplicate counter name {}", c.name());
            assert!(
                c.name()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            );
            assert!(!c.help().is_empty());
        }
        assert_eq!(
            Counter::from_index(Counter::Ip4TtlExpired as u16),
            Some(Counter::Ip4TtlExpired)
        );
        assert!(Counter::Ip4TtlExpired.is_drop());
        assert!(!Counter::L2Learned.is_drop());
        assert_eq!(Counter::from_index(Counter::COUNT as u16), None);
    }
}

//! Every header view of `vrouter-wire` on arbitrary bytes: each checked
//! constructor, every getter and every `Repr::parse` (`fuzz_api::read_all`),
//! then, where etherparse (an independent implementation) also accepts the
//! bytes, the fields must agree. The input is read both from its first byte
//! and from an offset chosen by the first byte, so a header also lands at
//! odd positions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vrouter_wire::{
    EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, VlanTag, fuzz_api,
};

fn cross_check(b: &[u8]) {
    fuzz_api::read_all(b);
    if let (Ok(f), Ok((e, _))) = (
        EthernetFrame::new_checked(b),
        etherparse::Ethernet2Header::from_slice(b),
    ) {
        assert_eq!(f.dst_addr().octets(), e.destination);
        assert_eq!(f.src_addr().octets(), e.source);
        assert_eq!(f.ethertype().0, e.ether_type.0);
        assert_eq!(f.payload().len(), b.len() - 14);
    }
    if let (Ok(v), Ok((e, _))) = (
        VlanTag::new_checked(b),
        etherparse::SingleVlanHeader::from_slice(b),
    ) {
        assert_eq!(v.pcp(), e.pcp.value());
        assert_eq!(v.dei(), e.drop_eligible_indicator);
        assert_eq!(v.vid(), e.vlan_id.value());
        assert_eq!(v.ethertype().0, e.ether_type.0);
    }
    if let (Ok(p), Ok((e, _))) = (
        Ipv4Packet::new_checked(b),
        etherparse::Ipv4Header::from_slice(b),
    ) {
        assert_eq!(p.header_len(), e.header_len() as u8);
        assert_eq!(p.dscp(), e.dscp.value());
        assert_eq!(p.ecn(), e.ecn.value());
        assert_eq!(p.total_len(), e.total_len);
        assert_eq!(p.ident(), e.identification);
        assert_eq!(p.dont_frag(), e.dont_fragment);
        assert_eq!(p.more_frags(), e.more_fragments);
        assert_eq!(p.frag_offset(), e.fragment_offset.value() * 8);
        assert_eq!(p.ttl(), e.time_to_live);
        assert_eq!(p.protocol().0, e.protocol.0);
        assert_eq!(p.checksum(), e.header_checksum);
        assert_eq!(p.src_addr().octets(), e.source);
        assert_eq!(p.dst_addr().octets(), e.destination);
        assert_eq!(p.options(), e.options.as_slice());
        // etherparse's header has no reserved flag bit (RFC 791 bit 0), so
        // its checksum of such a header is not the wire's.
        if b[6] & 0x80 == 0 {
            assert_eq!(
                p.verify_checksum(),
                e.calc_header_checksum() == e.header_checksum
            );
        }
    }
    if let (Ok(p), Ok((e, _))) = (
        Ipv6Packet::new_checked(b),
        etherparse::Ipv6Header::from_slice(b),
    ) {
        assert_eq!(p.traffic_class(), e.traffic_class);
        assert_eq!(p.flow_label(), e.flow_label.value());
        assert_eq!(p.payload_len(), e.payload_length);
        assert_eq!(p.next_header().0, e.next_header.0);
        assert_eq!(p.hop_limit(), e.hop_limit);
        assert_eq!(p.src_addr().octets(), e.source);
        assert_eq!(p.dst_addr().octets(), e.destination);
    }
    if let (Ok(p), Ok((e, _))) = (
        UdpPacket::new_checked(b),
        etherparse::UdpHeader::from_slice(b),
    ) {
        assert_eq!(p.src_port(), e.source_port);
        assert_eq!(p.dst_port(), e.destination_port);
        assert_eq!(p.len(), e.length);
        assert_eq!(p.checksum(), e.checksum);
    }
    if let (Ok(p), Ok((e, _))) = (
        TcpPacket::new_checked(b),
        etherparse::TcpHeader::from_slice(b),
    ) {
        assert_eq!(p.src_port(), e.source_port);
        assert_eq!(p.dst_port(), e.destination_port);
        assert_eq!(p.seq_number(), e.sequence_number);
        assert_eq!(p.ack_number(), e.acknowledgment_number);
        assert_eq!(usize::from(p.header_len()), e.header_len());
        assert_eq!(
            (p.fin(), p.syn(), p.rst(), p.psh(), p.ack(), p.urg()),
            (e.fin, e.syn, e.rst, e.psh, e.ack, e.urg)
        );
        assert_eq!(p.window_len(), e.window_size);
        assert_eq!(p.checksum(), e.checksum);
        assert_eq!(p.urgent_at(), e.urgent_pointer);
        assert_eq!(p.options(), e.options.as_slice());
    }
}

fuzz_target!(|data: &[u8]| {
    cross_check(data);
    if let Some(&k) = data.first() {
        let off = usize::from(k % 64);
        if let Some(rest) = data.get(1 + off..) {
            cross_check(rest);
        }
    }
});

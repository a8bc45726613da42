//! Completing TCP/UDP checksums that a sender left to offload hardware
//! (veth and virtio pass such frames on with `CHECKSUM_PARTIAL`). Used by
//! the kernel ports only when the kernel flags a frame, never on the
//! pipeline's path.

use std::net::{Ipv4Addr, Ipv6Addr};

use vrouter_wire::checksum;

/// Computes the L4 checksum of an Ethernet frame carrying TCP or UDP over
/// IPv4 or IPv6 (no extension headers, not a fragment). Returns true if it
/// wrote one.
pub fn complete(frame: &mut [u8]) -> bool {
    let mut l3 = 14;
    if frame.len() < 14 {
        return false;
    }
    let mut et = u16::from_be_bytes([frame[12], frame[13]]);
    if et == 0x8100 && frame.len() >= 18 {
        et = u16::from_be_bytes([frame[16], frame[17]]);
        l3 = 18;
    }
    let (proto, l4, pseudo) = match et {
        0x0800 => {
            let Some(ip) = frame.get(l3..l3 + 20) else {
                return false;
            };
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            if ihl < 20
                || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0
                || total < ihl
                || l3 + total > frame.len()
            {
                return false;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let len = total - ihl;
            (
                ip[9],
                l3 + ihl..l3 + total,
                checksum::pseudo_header_v4(src, dst, ip[9], len as u16),
            )
        }
        0x86dd => {
            let Some(ip) = frame.get(l3..l3 + 40) else {
                return false;
            };
            let len = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            if l3 + 40 + len > frame.len() {
                return false;
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let src = Ipv6Addr::from(a);
            a.copy_from_slice(&ip[24..40]);
            let dst = Ipv6Addr::from(a);
            (
                ip[6],
                l3 + 40..l3 + 40 + len,
                checksum::pseudo_header_v6(&src, &dst, ip[6], len as u32),
            )
        }
        _ => return false,
    };
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    let seg = &mut frame[l4];
    if seg.len() < at + 2 {
        return false;
    }
    seg[at..at + 2].fill(0);
    let mut c = checksum::finish(pseudo + checksum::sum(seg));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_udp_and_tcp_checksums_like_etherparse() {
        use etherparse::PacketBuilder;
        let mut v4 = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(1, 2)
            .write(&mut v4, b"hello")
            .unwrap();
        let good = v4.clone();
        v4[40..42].copy_from_slice(&[0x12, 0x34]);
        assert!(complete(&mut v4));
        assert_eq!(v4, good);
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .tcp(1, 2, 3, 4)
            .write(&mut v6, b"world")
            .unwrap();
        let good = v6.clone();
        v6[14 + 40 + 16] ^= 0xff;
        assert!(complete(&mut v6));
        assert_eq!(v6, good);
        assert!(!complete(&mut [0u8; 10]));
    }
}

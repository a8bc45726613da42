//! Frame templates: every (flow, size) frame the generator sends is built
//! once, before the run, into one contiguous buffer. Sending a packet is a
//! copy of its template plus a patch of the 18-byte stamp (magic, sequence
//! number, timestamp) at the start of the L4 payload and an incremental
//! update of the L4 checksum: no allocation, no header building per packet.
//!
//! Sizes are Ethernet frame sizes *including* the 4-byte FCS, as in RFC 2544
//! (a "64-byte frame" is 60 bytes handed to the NIC; IMIX's 1518 fits a
//! 1500-byte MTU).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vrouter_wire::checksum::{fold, pseudo_header_v4, pseudo_header_v6, sum};

use super::PktgenError;

/// Bytes of the stamp at the start of the L4 payload.
pub const STAMP_LEN: usize = 18;
/// First two bytes of every stamp.
pub const MAGIC: u16 = 0x7650;
/// The FCS the NIC appends (counted in frame sizes, never written).
pub const FCS: usize = 4;
/// UDP port of VXLAN (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// IMIX as 7:4:1 of 64, 570 and 1518-byte frames.
pub const IMIX: [(u16, u32); 3] = [(64, 7), (570, 4), (1518, 1)];
/// At most this many bytes of precomputed frames.
const MAX_TEMPLATE_BYTES: usize = 512 << 20;

/// An inclusive range of addresses or ports, walked from `lo` to `hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<T> {
    pub lo: T,
    pub hi: T,
}

impl Range<IpAddr> {
    /// Parses `A` or `A-B` (both of one family, A ≤ B).
    pub fn parse_ip(s: &str) -> Result<Self, PktgenError> {
        let bad = |why: &str| PktgenError::Config(format!("address range `{s}`: {why}"));
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let lo: IpAddr = a.trim().parse().map_err(|_| bad("not an IP address"))?;
        let hi: IpAddr = b.trim().parse().map_err(|_| bad("not an IP address"))?;
        if lo.is_ipv4() != hi.is_ipv4() {
            return Err(bad("mixes IPv4 and IPv6"));
        }
        if ip_bits(lo) > ip_bits(hi) {
            return Err(bad("the first address is above the last"));
        }
        Ok(Range { lo, hi })
    }

    /// Number of addresses.
    pub fn len(&self) -> u128 {
        ip_bits(self.hi) - ip_bits(self.lo) + 1
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`-th address (i < len).
    pub fn nth(&self, i: u128) -> IpAddr {
        match self.lo {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() + i as u32)),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() + i)),
        }
    }
}

impl Range<u16> {
    /// Parses `P` or `P-Q` (P ≤ Q).
    pub fn parse_port(s: &str) -> Result<Self, PktgenError> {
        let bad = |why: &str| PktgenError::Config(format!("port range `{s}`: {why}"));
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let lo: u16 = a.trim().parse().map_err(|_| bad("not a port number"))?;
        let hi: u16 = b.trim().parse().map_err(|_| bad("not a port number"))?;
        if lo > hi {
            return Err(bad("the first port is above the last"));
        }
        Ok(Range { lo, hi })
    }

    /// Number of ports.
    pub fn len(&self) -> u32 {
        u32::from(self.hi - self.lo) + 1
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn ip_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], PktgenError> {
    let bad = || PktgenError::Config(format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(m)
}

/// L4 protocol of the generated frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Udp,
    /// TCP data segments (ACK|PSH, seq 1) of a connection already under way.
    Tcp,
    /// TCP SYNs: every flow a new connection attempt (a SYN flood).
    Syn,
    /// ARP requests "who has DST? tell SRC" (ports ignored, no stamp).
    Arp,
    /// Gratuitous ARP requests announcing SRC (DST and ports ignored, no stamp).
    Garp,
}

impl Proto {
    /// True for ARP frames: no IP header, no stamp.
    pub fn is_arp(self) -> bool {
        matches!(self, Proto::Arp | Proto::Garp)
    }
}

/// VXLAN encapsulation around the generated frames.
#[derive(Debug, Clone)]
pub struct VxlanSpec {
    pub vni: u32,
    /// Outer IPv4 source and destination (the VTEPs).
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Inner Ethernet addresses.
    pub inner_src_mac: [u8; 6],
    pub inner_dst_mac: [u8; 6],
}

/// What to build.
#[derive(Debug, Clone)]
pub struct TemplateSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Range<IpAddr>,
    pub dst: Range<IpAddr>,
    pub sport: Range<u16>,
    pub dport: Range<u16>,
    pub proto: Proto,
    pub vxlan: Option<VxlanSpec>,
    /// Frame sizes (with FCS) and their weights.
    pub sizes: Vec<(u16, u32)>,
}

/// One precomputed frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef {
    pub off: u32,
    pub len: u16,
    /// Offset of the stamp in the frame.
    pub stamp: u16,
    /// Offset of the L4 checksum field.
    pub csum: u16,
    /// One's-complement sum of the L4 checksum's coverage with the
    /// sequence and timestamp fields zero.
    pub partial: u16,
    /// UDP: a computed 0 is sent as 0xffff.
    pub udp: bool,
}

/// The precomputed frames: `frames[flow * sizes + size_class]`, and the
/// order in which size classes are sent (IMIX weights spread out).
#[derive(Debug)]
pub struct Templates {
    pub data: Vec<u8>,
    pub frames: Vec<FrameRef>,
    pub flows: usize,
    pub size_classes: usize,
    /// Size class of packet `i` is `pattern[i % pattern.len()]`.
    pub pattern: Vec<u8>,
    /// Largest frame handed to the NIC (without FCS).
    pub max_len: usize,
    /// Largest IP packet on the wire (the outer one for VXLAN).
    pub max_ip_len: usize,
    /// Smallest frame size (with FCS) this template can have.
    pub min_size: usize,
}

/// Header bytes before the stamp for a spec.
pub fn header_len(spec: &TemplateSpec) -> usize {
    // The 28-byte ARP body stands for the IP header.
    let ip = match (spec.proto.is_arp(), spec.src.lo.is_ipv4()) {
        (true, _) => 28,
        (false, true) => 20,
        (false, false) => 40,
    };
    let l4 = match spec.proto {
        Proto::Udp => 8,
        Proto::Tcp | Proto::Syn => 20,
        Proto::Arp | Proto::Garp => 0,
    };
    let outer = if spec.vxlan.is_some() {
        14 + 20 + 8 + 8
    } else {
        0
    };
    outer + 14 + ip + l4
}

/// The flow count of a spec.
pub fn flow_count(spec: &TemplateSpec) -> u128 {
    spec.src.len() * spec.dst.len() * u128::from(spec.sport.len()) * u128::from(spec.dport.len())
}

impl Templates {
    /// Builds every frame of `spec`.
    pub fn build(spec: &TemplateSpec) -> Result<Templates, PktgenError> {
        if spec.src.lo.is_ipv4() != spec.dst.lo.is_ipv4() {
            return Err(PktgenError::Config(
                "--src and --dst must be of one address family".into(),
            ));
        }
        if spec.proto.is_arp() && (!spec.src.lo.is_ipv4() || spec.vxlan.is_some()) {
            return Err(PktgenError::Config(
                "ARP frames need IPv4 addresses and no VXLAN".into(),
            ));
        }
        if let Some(v) = &spec.vxlan
            && (v.vni == 0 || v.vni > 0x00ff_ffff)
        {
            return Err(PktgenError::Config(format!(
                "VNI {} is not in 1..=16777215",
                v.vni
            )));
        }
        let hdr = header_len(spec);
        let min_size = hdr + STAMP_LEN + FCS;
        for &(s, _) in &spec.sizes {
            let s = usize::from(s);
            if s < min_size {
                return Err(PktgenError::Config(format!(
                    "frame size {s} is too small for this template: its headers and the {STAMP_LEN}-byte stamp need at least {min_size} bytes (FCS included)"
                )));
            }
            if s - FCS > vrouter_buf::MAX_PACKET {
                return Err(PktgenError::Config(format!(
                    "frame size {s} is larger than a buffer ({} bytes)",
                    vrouter_buf::MAX_PACKET + FCS
                )));
            }
        }
        let flows = flow_count(spec);
        let total: u128 = flows * spec.sizes.iter().map(|&(s, _)| s as u128).sum::<u128>();
        if flows > 1 << 22 || total > MAX_TEMPLATE_BYTES as u128 {
            return Err(PktgenError::Config(format!(
                "{flows} flows × {} sizes need {} MiB of templates; at most 4M flows and {} MiB",
                spec.sizes.len(),
                total >> 20,
                MAX_TEMPLATE_BYTES >> 20
            )));
        }
        let flows = flows as usize;
        let mut t = Templates {
            data: Vec::with_capacity(total as usize),
            frames: Vec::with_capacity(flows * spec.sizes.len()),
            flows,
            size_classes: spec.sizes.len(),
            pattern: pattern(&spec.sizes),
            max_len: 0,
            max_ip_len: 0,
            min_size,
        };
        // Flow i: destination port varies fastest, then source port, then
        // destination, then source address.
        let (nd, ns, nda) = (
            u128::from(spec.dport.len()),
            u128::from(spec.sport.len()),
            spec.dst.len(),
        );
        for i in 0..flows as u128 {
            let dport = spec.dport.lo + (i % nd) as u16;
            let sport = spec.sport.lo + ((i / nd) % ns) as u16;
            let dst = spec.dst.nth((i / nd / ns) % nda);
            let src = spec.src.nth(i / nd / ns / nda);
            for &(size, _) in &spec.sizes {
                let f = build_frame(spec, &mut t.data, src, dst, sport, dport, size as usize);
                t.max_len = t.max_len.max(f.len as usize);
                let ip_len = f.len as usize - 14;
                t.max_ip_len = t.max_ip_len.max(ip_len);
                t.frames.push(f);
            }
        }
        Ok(t)
    }

    /// Sets the (outer) source MAC of every frame.
    pub fn set_src_mac(&mut self, mac: [u8; 6]) {
        for f in &self.frames {
            let o = f.off as usize;
            self.data[o + 6..o + 12].copy_from_slice(&mac);
        }
    }

    /// The frame of `flow` in size class `class`.
    #[inline(always)]
    pub fn frame(&self, flow: usize, class: usize) -> (&FrameRef, &[u8]) {
        let f = &self.frames[flow * self.size_classes + class];
        (
            f,
            &self.data[f.off as usize..f.off as usize + f.len as usize],
        )
    }
}

/// Writes the stamp into `frame` (a copy of a template) and fixes its L4
/// checksum.
#[inline(always)]
pub fn stamp(f: &FrameRef, frame: &mut [u8], seq: u64, ts: u64) {
    let s = f.stamp as usize;
    if s == 0 {
        return;
    }
    frame[s + 2..s + 10].copy_from_slice(&seq.to_be_bytes());
    frame[s + 10..s + 18].copy_from_slice(&ts.to_be_bytes());
    let words =
        |v: u64| ((v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff)) as u32;
    let total = u32::from(f.partial) + words(seq) + words(ts);
    let mut c = !fold(total);
    if c == 0 && f.udp {
        c = 0xffff;
    }
    let o = f.csum as usize;
    frame[o..o + 2].copy_from_slice(&c.to_be_bytes());
}

/// A pseudo-random, locally administered unicast MAC for frame `n` (a
/// hash of `n`: a run is reproducible, and 2^46 values make repeats rare).
#[inline(always)]
pub fn random_mac(n: u64) -> [u8; 6] {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let b = z.to_le_bytes();
    [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// Size classes in sending order: weights interleaved (7:4:1 becomes a
/// 12-long pattern with the classes spread), so a short run is still IMIX.
fn pattern(sizes: &[(u16, u32)]) -> Vec<u8> {
    let total: u32 = sizes.iter().map(|s| s.1).sum();
    let mut credit: Vec<i64> = vec![0; sizes.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        // Smooth weighted round robin.
        for (c, s) in credit.iter_mut().zip(sizes) {
            *c += i64::from(s.1);
        }
        let (best, _) = credit
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))
            .unwrap_or((0, &0));
        credit[best] -= i64::from(total);
        out.push(best as u8);
    }
    out
}

fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_be_bytes());
}

/// A simple flow hash for the outer UDP source port (as VTEPs do).
fn flow_hash(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |x: u128| {
        h ^= x as u64 ^ (x >> 64) as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        h ^= h >> 29;
    };
    mix(ip_bits(src));
    mix(ip_bits(dst));
    mix(u128::from(sport) << 16 | u128::from(dport));
    (h ^ (h >> 16) ^ (h >> 32)) as u16
}

/// Writes an IPv4 header (checksum filled) at `o`.
fn ipv4(b: &mut [u8], o: usize, total: usize, proto: u8, src: Ipv4Addr, dst: Ipv4Addr) {
    b[o] = 0x45;
    b[o + 1] = 0;
    put16(b, o + 2, total as u16);
    put16(b, o + 4, 0); // id
    put16(b, o + 6, 0x4000); // DF
    b[o + 8] = 64;
    b[o + 9] = proto;
    b[o + 12..o + 16].copy_from_slice(&src.octets());
    b[o + 16..o + 20].copy_from_slice(&dst.octets());
    let c = !fold(sum(&b[o..o + 20]));
    put16(b, o + 10, c);
}

#[allow(clippy::too_many_arguments)]
fn build_frame(
    spec: &TemplateSpec,
    data: &mut Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    size: usize,
) -> FrameRef {
    let len = size - FCS;
    let start = data.len();
    data.resize(start + len, 0);
    let b = &mut data[start..];
    let mut o = 0;
    if let Some(v) = &spec.vxlan {
        b[0..6].copy_from_slice(&spec.dst_mac);
        b[6..12].copy_from_slice(&spec.src_mac);
        put16(b, 12, 0x0800);
        ipv4(b, 14, len - 14, 17, v.src, v.dst);
        let usrc = 49152 | (flow_hash(src, dst, sport, dport) & 0x3fff);
        put16(b, 34, usrc);
        put16(b, 36, VXLAN_PORT);
        put16(b, 38, (len - 34) as u16);
        put16(b, 40, 0); // outer UDP checksum: none (RFC 7348 allows it)
        b[42] = 0x08; // I flag
        b[46..49].copy_from_slice(&v.vni.to_be_bytes()[1..]);
        o = 50;
        b[o..o + 6].copy_from_slice(&v.inner_dst_mac);
        b[o + 6..o + 12].copy_from_slice(&v.inner_src_mac);
    } else {
        b[0..6].copy_from_slice(&spec.dst_mac);
        b[6..12].copy_from_slice(&spec.src_mac);
    }
    if let (true, IpAddr::V4(s), IpAddr::V4(d)) = (spec.proto.is_arp(), src, dst) {
        let target = if spec.proto == Proto::Garp { s } else { d };
        put16(b, 12, 0x0806);
        put16(b, 14, 1); // Ethernet
        put16(b, 16, 0x0800);
        b[18] = 6;
        b[19] = 4;
        put16(b, 20, 1); // request
        b[22..28].copy_from_slice(&spec.src_mac);
        b[28..32].copy_from_slice(&s.octets());
        b[38..42].copy_from_slice(&target.octets());
        // No stamp (offset 0): `stamp` leaves the frame alone.
        return FrameRef {
            off: start as u32,
            len: len as u16,
            stamp: 0,
            csum: 0,
            partial: 0,
            udp: false,
        };
    }
    let (proto, l4_len_hdr) = match spec.proto {
        Proto::Udp => (17u8, 8usize),
        Proto::Tcp | Proto::Syn => (6u8, 20usize),
        Proto::Arp | Proto::Garp => (0u8, 0usize),
    };
    let l3 = o + 14;
    let (l4, pseudo) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put16(b, o + 12, 0x0800);
            ipv4(b, l3, len - l3, proto, s, d);
            let l4_len = len - l3 - 20;
            (l3 + 20, pseudo_header_v4(s, d, proto, l4_len as u16))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put16(b, o + 12, 0x86dd);
            let payload = len - l3 - 40;
            b[l3] = 0x60;
            put16(b, l3 + 4, payload as u16);
            b[l3 + 6] = proto;
            b[l3 + 7] = 64;
            b[l3 + 8..l3 + 24].copy_from_slice(&s.octets());
            b[l3 + 24..l3 + 40].copy_from_slice(&d.octets());
            (l3 + 40, pseudo_header_v6(&s, &d, proto, payload as u32))
        }
        // Checked in `build`.
        _ => (l3 + 20, 0),
    };
    put16(b, l4, sport);
    put16(b, l4 + 2, dport);
    let csum = match spec.proto {
        Proto::Udp => {
            put16(b, l4 + 4, (len - l4) as u16);
            l4 + 6
        }
        Proto::Tcp | Proto::Syn | Proto::Arp | Proto::Garp => {
            // A data segment of an established connection (ACK|PSH, seq 1),
            // or the SYN opening one.
            b[l4 + 4..l4 + 8].copy_from_slice(&1u32.to_be_bytes());
            if spec.proto == Proto::Syn {
                b[l4 + 13] = 0x02;
            } else {
                b[l4 + 8..l4 + 12].copy_from_slice(&1u32.to_be_bytes());
                b[l4 + 13] = 0x18;
            }
            b[l4 + 12] = 5 << 4;
            put16(b, l4 + 14, 65535);
            l4 + 16
        }
    };
    let st = l4 + l4_len_hdr;
    put16(b, st, MAGIC);
    let partial = fold(pseudo + sum(&b[l4..len]));
    FrameRef {
        off: start as u32,
        len: len as u16,
        stamp: st as u16,
        csum: csum as u16,
        partial,
        udp: spec.proto == Proto::Udp,
    }
}

/// What the receiver finds in a frame: the stamp (sequence, timestamp) if
/// the frame is ours, after VXLAN decapsulation when there is one.
#[inline]
pub fn parse_stamp(f: &[u8]) -> Option<(u64, u64)> {
    let mut o = 0usize;
    for _depth in 0..2 {
        let mut et = u16::from_be_bytes([*f.get(o + 12)?, *f.get(o + 13)?]);
        let mut l3 = o + 14;
        if et == 0x8100 {
            et = u16::from_be_bytes([*f.get(o + 16)?, *f.get(o + 17)?]);
            l3 += 4;
        }
        let (proto, l4) = match et {
            0x0800 => {
                let ihl = usize::from(*f.get(l3)? & 0x0f) * 4;
                (*f.get(l3 + 9)?, l3 + ihl)
            }
            0x86dd => (*f.get(l3 + 6)?, l3 + 40),
            _ => return None,
        };
        let pay = match proto {
            17 => {
                let dport = u16::from_be_bytes([*f.get(l4 + 2)?, *f.get(l4 + 3)?]);
                if dport == VXLAN_PORT && f.get(l4 + 8)? & 0x08 != 0 {
                    o = l4 + 16;
                    continue;
                }
                l4 + 8
            }
            6 => l4 + usize::from(*f.get(l4 + 12)? >> 4) * 4,
            _ => return None,
        };
        let s = f.get(pay..pay + STAMP_LEN)?;
        if u16::from_be_bytes([s[0], s[1]]) != MAGIC {
            return None;
        }
        let seq = u64::from_be_bytes(s[2..10].try_into().ok()?);
        let ts = u64::from_be_bytes(s[10..18].try_into().ok()?);
        return Some((seq, ts));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(src: &str, dst: &str, proto: Proto, vx: bool, size: u16) -> TemplateSpec {
        TemplateSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Range::parse_ip(src).unwrap(),
            dst: Range::parse_ip(dst).unwrap(),
            sport: Range::parse_port("1000-1001").unwrap(),
            dport: Range::parse_port("2000").unwrap(),
            proto,
            vxlan: vx.then(|| VxlanSpec {
                vni: 4242,
                src: "198.18.0.1".parse().unwrap(),
                dst: "198.18.0.2".parse().unwrap(),
                inner_src_mac: [2, 0, 0, 0, 1, 1],
                inner_dst_mac: [2, 0, 0, 0, 1, 2],
            }),
            sizes: vec![(size, 1)],
        }
    }

    #[test]
    fn ranges_and_flows() {
        let s = spec("198.18.1.2-198.18.1.4", "198.18.2.2", Proto::Udp, false, 64);
        assert_eq!(flow_count(&s), 6);
        assert!(Range::parse_ip("198.18.1.5-198.18.1.4").is_err());
        assert!(Range::parse_ip("198.18.1.5-2001:db8::1").is_err());
        assert!(Range::parse_port("5-4").is_err());
        assert_eq!(parse_mac("02:00:00:00:00:0a").unwrap()[5], 10);
        assert!(parse_mac("02:00:00:00:00").is_err());
    }

    #[test]
    fn imix_pattern_is_7_4_1() {
        let p = pattern(&IMIX);
        assert_eq!(p.len(), 12);
        assert_eq!(p.iter().filter(|&&c| c == 0).count(), 7);
        assert_eq!(p.iter().filter(|&&c| c == 2).count(), 1);
    }

    #[test]
    fn frames_checksum_and_parse() {
        for (src, dst, proto, vx, size) in [
            ("198.18.1.2", "198.18.2.2", Proto::Udp, false, 64),
            ("198.18.1.2", "198.18.2.2", Proto::Tcp, false, 128),
            ("2001:db8::1", "2001:db8:1::1", Proto::Udp, false, 200),
            ("2001:db8::1", "2001:db8:1::1", Proto::Tcp, true, 300),
            ("198.18.1.2", "198.18.2.2", Proto::Udp, true, 128),
        ] {
            let s = spec(src, dst, proto, vx, size);
            let t = Templates::build(&s).unwrap();
            assert_eq!(t.frames.len(), 2);
            let (f, bytes) = t.frame(1, 0);
            assert_eq!(bytes.len(), usize::from(size) - FCS);
            let mut b = bytes.to_vec();
            stamp(f, &mut b, 0xdead_beef_1234, 987_654_321);
            assert_eq!(parse_stamp(&b), Some((0xdead_beef_1234, 987_654_321)));
            // Cross-check with etherparse: the L4 checksum verifies.
            let inner = if vx { &b[50..] } else { &b[..] };
            let p = etherparse::SlicedPacket::from_ethernet(inner).unwrap();
            let ok = match (p.net.unwrap(), p.transport.unwrap()) {
                (etherparse::NetSlice::Ipv4(ip), etherparse::TransportSlice::Udp(u)) => {
                    u.to_header()
                        .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
                        .unwrap()
                        == u.checksum()
                }
                (etherparse::NetSlice::Ipv4(ip), etherparse::TransportSlice::Tcp(t)) => {
                    t.to_header()
                        .calc_checksum_ipv4(&ip.header().to_header(), t.payload())
                        .unwrap()
                        == t.checksum()
                }
                (etherparse::NetSlice::Ipv6(ip), etherparse::TransportSlice::Udp(u)) => {
                    u.to_header()
                        .calc_checksum_ipv6(&ip.header().to_header(), u.payload())
                        .unwrap()
                        == u.checksum()
                }
                (etherparse::NetSlice::Ipv6(ip), etherparse::TransportSlice::Tcp(t)) => {
                    t.to_header()
                        .calc_checksum_ipv6(&ip.header().to_header(), t.payload())
                        .unwrap()
                        == t.checksum()
                }
                _ => false,
            };
            assert!(ok, "checksum of {src} {proto:?} vxlan={vx}");
        }
    }

    #[test]
    fn too_small_is_refused() {
        let s = spec("2001:db8::1", "2001:db8::2", Proto::Tcp, false, 64);
        let e = Templates::build(&s).unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
    }

    #[test]
    fn syn_and_arp_frames() {
        let s = spec("198.18.1.2", "198.18.2.2", Proto::Syn, false, 80);
        let t = Templates::build(&s).unwrap();
        let (f, d) = t.frame(0, 0);
        let mut d = d.to_vec();
        stamp(f, &mut d, 7, 9);
        assert_eq!(d[14 + 20 + 13], 0x02, "SYN only");
        assert_eq!(parse_stamp(&d), Some((7, 9)));

        let mut s = spec("198.18.1.2-198.18.1.3", "198.18.1.1", Proto::Arp, false, 64);
        s.sport = Range::parse_port("1").unwrap();
        let t = Templates::build(&s).unwrap();
        assert_eq!(t.flows, 2);
        let (f, d) = t.frame(1, 0);
        let mut d = d.to_vec();
        let before = d.clone();
        stamp(f, &mut d, 7, 9);
        assert_eq!(d, before, "ARP frames carry no stamp");
        assert_eq!(d.len(), 60);
        assert_eq!(&d[12..14], &[0x08, 0x06]);
        assert_eq!(&d[20..22], &[0, 1], "request");
        assert_eq!(&d[22..28], &s.src_mac);
        assert_eq!(&d[28..32], &[198, 18, 1, 3], "sender");
        assert_eq!(&d[38..42], &[198, 18, 1, 1], "target");

        s.proto = Proto::Garp;
        let t = Templates::build(&s).unwrap();
        let d = t.frame(0, 0).1;
        assert_eq!(&d[28..32], &d[38..42], "gratuitous: sender = target");

        let s = spec("2001:db8::1", "2001:db8::2", Proto::Arp, false, 64);
        assert!(Templates::build(&s).is_err());
    }

    #[test]
    fn random_macs_are_unicast_local_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..100_000u64 {
            let m = random_mac(n);
            assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
            seen.insert(m);
        }
        assert_eq!(seen.len(), 100_000);
    }
}

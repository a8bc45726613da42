//! ARP suppression for L2 overlays: an ARP request from a local member of a
//! bridge domain stretched over a VNI, for an IPv4 address of a known
//! remote endpoint (a static remote MAC configured with its IP), is
//! answered locally instead of being replicated to every remote VTEP.
//!
//! Called by `l2-flood` for broadcast frames only. Gratuitous ARP and
//! requests from the overlay itself are never answered here (they flood as
//! usual). Must never: answer for an address that was not configured.

use vrouter_wire::MacAddr;

use crate::tables::Tables;

/// The MAC to answer an ARP request `frame` (untagged) in bridge domain
/// `bd` with, if its target is a known overlay endpoint.
#[inline]
pub fn known_target(t: &Tables, bd: u16, frame: &[u8]) -> Option<MacAddr> {
    let a = frame.get(14..42)?;
    if frame[12..14] != [0x08, 0x06] || a[0..8] != [0, 1, 0x08, 0x00, 6, 4, 0, 1] {
        return None;
    }
    let (spa, tpa) = (&a[14..18], &a[24..28]);
    if spa == tpa {
        return None;
    }
    let tpa = u32::from_be_bytes([tpa[0], tpa[1], tpa[2], tpa[3]]);
    let vx = &*t.vxlan;
    let n = vx.vnis.iter().find(|n| {
        n.arp_suppress && matches!(n.kind, super::VniKind::Bridge { bd: b } if b == bd)
    })?;
    n.arp
        .binary_search_by_key(&tpa, |e| e.0)
        .ok()
        .and_then(|k| n.arp.get(k))
        .map(|e| e.1)
}

/// Turns ARP request `frame` into the reply from `mac` in place.
#[inline]
pub fn reply(frame: &mut [u8], mac: MacAddr) {
    if frame.len() < 42 {
        return;
    }
    let (sha, spa, tpa) = (
        <[u8; 6]>::try_from(&frame[22..28]).unwrap_or_default(),
        <[u8; 4]>::try_from(&frame[28..32]).unwrap_or_default(),
        <[u8; 4]>::try_from(&frame[38..42]).unwrap_or_default(),
    );
    frame[0..6].copy_from_slice(&sha);
    frame[6..12].copy_from_slice(mac.as_bytes());
    frame[21] = 2;
    frame[22..28].copy_from_slice(mac.as_bytes());
    frame[28..32].copy_from_slice(&tpa);
    frame[32..38].copy_from_slice(&sha);
    frame[38..42].copy_from_slice(&spa);
}

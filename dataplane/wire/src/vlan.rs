//! IEEE 802.1Q / 802.1ad VLAN tags.
//!
//! The view covers the 4 bytes that follow a TPID (0x8100 or 0x88a8): the Tag
//! Control Information (PCP, DEI, VID) and the inner EtherType. The TPID itself is
//! the enclosing frame's EtherType.
//!
//! Contract: once [`VlanTag::check_len`] passed, no getter panics.

use crate::{EtherType, Result, WireError, bytes};

mod field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// Length of a VLAN tag (without TPID).
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Largest valid VLAN ID (4095 is reserved).
pub const VID_MAX: u16 = 4094;

/// A view over a VLAN tag.
#[derive(Debug, Clone)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> VlanTag<T> {
        VlanTag { buffer }
    }

    /// Wraps a buffer after [`VlanTag::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<VlanTag<T>> {
        let t = Self::new_unchecked(buffer);
        t.check_len()?;
        Ok(t)
    }

    /// Ensures the buffer holds the 4-byte tag.
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

    /// The whole 16-bit Tag Control Information.
    #[inline]
    pub fn tci(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::TCI)
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// EtherType of the encapsulated payload.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(bytes::u16_at(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the whole Tag Control Information.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::TCI, tci);
    }

    /// Sets the priority code point (low 3 bits of `pcp`).
    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 0x7) << 13);
        self.set_tci(tci);
    }

    /// Sets the drop eligible indicator.
    #[inline]
    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the VLAN identifier (low 12 bits of `vid`).
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    /// Sets the inner EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ty: EtherType) {
        bytes::put_u16(self.buffer.as_mut(), field::ETHERTYPE, ty.0);
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// A parsed VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanRepr {
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 0..=4094 (0 means priority-tagged).
    pub vid: u16,
    /// Inner EtherType.
    pub ethertype: EtherType,
}

impl VlanRepr {
    /// Parses a tag; VID 4095 is reserved and rejected as malformed.
    pub fn parse<T: AsRef<[u8]>>(tag: &VlanTag<T>) -> Result<VlanRepr> {
        tag.check_len()?;
        if tag.vid() > VID_MAX {
            return Err(WireError::Malformed);
        }
        Ok(VlanRepr {
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
            ethertype: tag.ethertype(),
        })
    }

    /// Tag length (4).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the tag; the buffer must be at least 4 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, tag: &mut VlanTag<T>) {
        let tci = (u16::from(self.pcp & 7) << 13)
            | if self.dei { 0x1000 } else { 0 }
            | (self.vid & 0x0fff);
        tag.set_tci(tci);
        tag.set_ethertype(self.ethertype);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_all(bytes: &[u8]) {
    if let Ok(t) = VlanTag::new_checked(bytes) {
        let _ = (
            t.tci(),
            t.pcp(),
            t.dei(),
            t.vid(),
            t.ethertype(),
            t.payload().len(),
        );
        let _ = VlanRepr::parse(&t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EthernetFrame, MacAddr};

    // Tagged frame: VLAN 100, PCP 5, inner IPv4 (header start only).
    const FRAME: [u8; 22] = [
        0x00, 0x1b, 0x21, 0x3c, 0x4d, 0x5e, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, 0x81, 0x00, //
        0xa0, 0x64, 0x08, 0x00, 0x45, 0x00, 0x00, 0x54,
    ];

    #[test]
    fn parse_tagged_frame() {
        let eth = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(
            eth.src_addr(),
            MacAddr::new(0x52, 0x54, 0, 0xaa, 0xbb, 0xcc)
        );
        assert!(eth.ethertype().is_vlan());
        let tag = VlanTag::new_checked(eth.payload()).unwrap();
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.pcp(), 5);
        assert!(!tag.dei());
        assert_eq!(tag.ethertype(), EtherType::IPV4);
        assert_eq!(tag.payload(), &[0x45, 0x00, 0x00, 0x54]);
    }

    #[test]
    fn truncated_and_reserved_vid() {
        assert_eq!(
            VlanTag::new_checked(&[0u8; 3][..]).err(),
            Some(WireError::Truncated)
        );
        let t = VlanTag::new_checked(&[0x0f, 0xff, 0x08, 0x00][..]).unwrap();
        assert_eq!(t.vid(), 4095);
        assert_eq!(VlanRepr::parse(&t), Err(WireError::Malformed));
    }

    #[test]
    fn every_prefix_is_safe() {
        for n in 0..=FRAME.len() - 14 {
            read_all(&FRAME[14..14 + n]);
        }
    }

    #[test]
    fn setters_keep_other_bits() {
        let mut b = [0u8; 4];
        let mut t = VlanTag::new_unchecked(&mut b[..]);
        t.set_vid(4094);
        t.set_pcp(7);
        t.set_dei(true);
        t.set_vid(7);
        assert_eq!((t.pcp(), t.dei(), t.vid()), (7, true, 7));
        t.set_dei(false);
        t.set_pcp(1);
        assert_eq!(t.tci(), 0x2007);
    }

    #[test]
    fn repr_round_trip_and_etherparse() {
        let repr = VlanRepr {
            pcp: 3,
            dei: true,
            vid: 4000,
            ethertype: EtherType::IPV6,
        };
        let mut b = [0u8; 4];
        repr.emit(&mut VlanTag::new_unchecked(&mut b[..]));
        assert_eq!(
            VlanRepr::parse(&VlanTag::new_checked(&b[..]).unwrap()),
            Ok(repr)
        );
        let (h, _) = etherparse::SingleVlanHeader::from_slice(&b).unwrap();
        assert_eq!(h.pcp.value(), 3);
        assert!(h.drop_eligible_indicator);
        assert_eq!(h.vlan_id.value(), 4000);
        assert_eq!(h.ether_type, etherparse::EtherType::IPV6);
    }
}

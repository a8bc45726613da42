//! Big-endian field readers and writers shared by the views.
//!
//! Each takes one range-checked slice and then works on a fixed-size copy, so the
//! optimiser emits one bounds check per field.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::MacAddr;

#[inline(always)]
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

#[inline(always)]
pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(b, at))
}

#[inline(always)]
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(b, at))
}

#[inline(always)]
pub(crate) fn mac_at(b: &[u8], at: usize) -> MacAddr {
    MacAddr(array(b, at))
}

#[inline(always)]
pub(crate) fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(array::<4>(b, at))
}

#[inline(always)]
pub(crate) fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    Ipv6Addr::from(array::<16>(b, at))
}

#[inline(always)]
pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn put_bytes(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

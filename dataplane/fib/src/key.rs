//! Address keys: the few bit operations the RIB and the table writer need,
//! implemented for `u32` (IPv4) and `u128` (IPv6), both in host order with the
//! first address bit as the most significant bit.
//!
//! Owns nothing but arithmetic. It must never be used on the lookup path: the
//! readers are written against the concrete integer types.

use core::fmt::Debug;
use core::ops::{BitAnd, BitOr, BitXor, Not, Shl, Shr};

/// An address as an unsigned integer, most significant bit first.
pub(crate) trait Key:
    Copy
    + Eq
    + Ord
    + Debug
    + BitAnd<Output = Self>
    + BitOr<Output = Self>
    + BitXor<Output = Self>
    + Not<Output = Self>
    + Shl<u32, Output = Self>
    + Shr<u32, Output = Self>
{
    /// Address width in bits (32 or 128).
    const BITS: u8;
    /// The all-zero address.
    const ZERO: Self;

    /// The low bits of `self` as an index (truncating).
    fn low_usize(self) -> usize;
    /// `i` as a key (`i` always fits: it is an entry index).
    fn from_usize(i: usize) -> Self;
    /// `self + 1`, or `None` past the last address.
    fn checked_inc(self) -> Option<Self>;
    /// `self - 1`, or `None` for the zero address.
    fn checked_dec(self) -> Option<Self>;
    /// Number of leading zero bits.
    fn lz(self) -> u32;

    /// The network mask of a prefix of `len` bits (`len <= BITS`).
    #[inline]
    fn mask(len: u8) -> Self {
        if len == 0 {
            Self::ZERO
        } else {
            !Self::ZERO << u32::from(Self::BITS - len)
        }
    }

    /// Bit `pos` counted from the most significant bit (`pos < BITS`), as 0 or 1.
    #[inline]
    fn bit(self, pos: u8) -> usize {
        (self >> u32::from(Self::BITS - 1 - pos)).low_usize() & 1
    }

    /// Length of the common leading bits of two keys.
    #[inline]
    fn common_len(self, other: Self) -> u8 {
        // At most BITS (<= 128), so the narrowing cannot lose anything.
        u8::try_from((self ^ other).lz()).unwrap_or(Self::BITS)
    }

    /// The last address of the prefix `self/len`.
    #[inline]
    fn last(self, len: u8) -> Self {
        self | !Self::mask(len)
    }
}

macro_rules! impl_key {
    ($t:ty) => {
        impl Key for $t {
            const BITS: u8 = <$t>::BITS as u8;
            const ZERO: Self = 0;

            #[inline]
            fn low_usize(self) -> usize {
                // Truncation is the point: callers mask the result.
                self as usize
            }
            #[inline]
            fn from_usize(i: usize) -> Self {
                i as $t
            }
            #[inline]
            fn checked_inc(self) -> Option<Self> {
                self.checked_add(1)
            }
            #[inline]
            fn checked_dec(self) -> Option<Self> {
                self.checked_sub(1)
            }
            #[inline]
            fn lz(self) -> u32 {
                self.leading_zeros()
            }
        }
    };
}

impl_key!(u32);
impl_key!(u128);

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn masks_and_bits() {
        assert_eq!(<u32 as Key>::mask(0), 0);
        assert_eq!(<u32 as Key>::mask(32), u32::MAX);
        assert_eq!(<u32 as Key>::mask(24), 0xffff_ff00);
        assert_eq!(<u128 as Key>::mask(128), u128::MAX);
        assert_eq!(<u128 as Key>::mask(1), 1u128 << 127);
        assert_eq!(0x8000_0000u32.bit(0), 1);
        assert_eq!(0x8000_0000u32.bit(1), 0);
        assert_eq!(1u32.bit(31), 1);
        assert_eq!(0xc0a8_0000u32.common_len(0xc0a8_8000), 16);
        assert_eq!(5u32.common_len(5), 32);
        assert_eq!(0x0a00_0000u32.last(8), 0x0aff_ffff);
    }
}

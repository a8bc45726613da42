//! Arbitrary bytes never panic any checked view, its getters or its `Repr::parse`.

use proptest::prelude::*;

fn read_everything(bytes: &[u8]) {
    crate::ethernet::read_all(bytes);
    crate::vlan::read_all(bytes);
    crate::arp::read_all(bytes);
    crate::ipv4::read_all(bytes);
    crate::ipv6::read_all(bytes);
    crate::icmpv4::read_all(bytes);
    crate::icmpv6::read_all(bytes);
    crate::udp::read_all(bytes);
    crate::tcp::read_all(bytes);
    crate::vxlan::read_all(bytes);
}

/// Bytes that look like the headers (valid version nibbles, plausible lengths) more
/// often than uniform noise would.
fn header_like() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 0..200),
        0u8..4,
        any::<u8>(),
    )
        .prop_map(|(mut v, kind, len)| {
            if let Some(b) = v.first_mut() {
                *b = match kind {
                    0 => 0x40 | (*b & 0x0f),
                    1 => 0x60,
                    2 => *b,
                    _ => 135,
                };
            }
            if v.len() > 5 {
                v[3] = len;
                v[5] = len;
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        read_everything(&bytes);
    }

    #[test]
    fn header_like_bytes_never_panic(bytes in header_like()) {
        read_everything(&bytes);
    }
}

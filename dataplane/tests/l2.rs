//! Bridge behaviour through the real pipeline: learning, flooding, aging,
//! station moves, static entries, MAC limits, split horizon, VLAN tags.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use vrouter_dataplane::graph::Counter;

const A: &str = "02:00:00:00:00:0a";
const B: &str = "02:00:00:00:00:0b";
const C: &str = "02:00:00:00:00:0c";

fn cfg(extra: &str) -> String {
    format!(
        r#"
[[port]]
name = "p1"
driver = "memory"
[[port]]
name = "p2"
driver = "memory"
[[port]]
name = "p3"
driver = "memory"
[[bridge]]
name = "br"
mac-limit = 64
mac-age = 60
[[interface]]
name = "p1"
bridge = "br"
[[interface]]
name = "p2"
bridge = "br"
{extra}
"#
    )
}

fn p3_plain() -> String {
    cfg("[[interface]]\nname = \"p3\"\nbridge = \"br\"\n")
}

fn frame(src: &str, dst: &str) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&mac(dst));
    f.extend_from_slice(&mac(src));
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    f.extend_from_slice(&[0x55; 46]);
    f
}

#[test]
fn unknown_unicast_floods_then_learned_destination_is_unicast() {
    let mut h = Harness::new(&p3_plain());
    h.inject(0, frame(A, B));
    assert_eq!(h.out(0).len(), 0, "never back to the ingress port");
    assert_eq!(h.out(1).len(), 1);
    assert_eq!(h.out(2).len(), 1);
    assert_eq!(h.counter(Counter::L2Flooded), 1);
    // B answers: A is known, so only p1 gets it; B is learned on p2.
    h.inject(1, frame(B, A));
    assert_eq!((h.out(0).len(), h.out(2).len()), (1, 0));
    h.inject(0, frame(A, B));
    assert_eq!((h.out(1).len(), h.out(2).len()), (1, 0));
    assert_eq!(h.counter(Counter::L2Learned), 2);
    assert_eq!(h.frames_in_use(), 0, "every frame went back to the pool");
}

#[test]
fn broadcast_and_multicast_flood() {
    let mut h = Harness::new(&p3_plain());
    h.inject(0, frame(A, "ff:ff:ff:ff:ff:ff"));
    h.inject(0, frame(A, "01:00:5e:00:00:01"));
    assert_eq!((h.out(0).len(), h.out(1).len(), h.out(2).len()), (0, 2, 2));
    // Flooded copies are byte-identical to the original.
    let f = frame(A, "ff:ff:ff:ff:ff:ff");
    h.inject(1, f.clone());
    assert_eq!(h.out(0), vec![f.clone()]);
    assert_eq!(h.out(2), vec![f]);
}

#[test]
fn station_move_follows_the_mac() {
    let mut h = Harness::new(&p3_plain());
    h.inject(0, frame(A, B));
    h.inject(2, frame(A, B)); // A moved to p3
    assert_eq!(h.counter(Counter::L2StationMove), 1);
    h.out(0);
    h.out(1);
    h.out(2);
    h.inject(1, frame(B, A));
    assert_eq!((h.out(0).len(), h.out(2).len()), (0, 1));
}

#[test]
fn static_entry_wins_and_spoofed_source_is_dropped() {
    let mut h = Harness::new(&cfg(&format!(
        "[[interface]]\nname = \"p3\"\nbridge = \"br\"\n[[static-mac]]\nbridge = \"br\"\nmac = \"{C}\"\ninterface = \"p3\"\n"
    )));
    h.inject(0, frame(A, C));
    assert_eq!(
        (h.out(1).len(), h.out(2).len()),
        (0, 1),
        "static destination: no flood"
    );
    h.inject(0, frame(C, B)); // C spoofed on p1
    assert_eq!(h.counter(Counter::L2StaticMove), 1);
    assert_eq!((h.out(1).len(), h.out(2).len()), (0, 0));
    h.inject(1, frame(B, C));
    assert_eq!(h.out(2).len(), 1, "C still on p3");
}

#[test]
fn mac_limit_stops_learning_but_not_forwarding() {
    let mut h = Harness::new(&p3_plain().replace("mac-limit = 64", "mac-limit = 3"));
    for k in 0..5u8 {
        h.inject(
            0,
            frame(&format!("02:00:00:00:01:{k:02x}"), "ff:ff:ff:ff:ff:ff"),
        );
    }
    assert_eq!(h.counter(Counter::L2Learned), 3);
    assert_eq!(h.counter(Counter::L2MacLimit), 2);
    assert_eq!(h.out(1).len(), 5, "all frames forwarded");
    assert_eq!(h.router.tables().bds[0].macs.len(), 3);
}

#[test]
fn aged_entries_flood_again() {
    let mut h = Harness::new(&p3_plain());
    h.inject(1, frame(B, A));
    h.out(0);
    h.out(2);
    h.inject(0, frame(A, B));
    assert_eq!(h.out(2).len(), 0);
    h.router.tick(120); // two minutes on; the age is 60 s
    assert_eq!(h.router.stats.macs_aged, 2);
    h.inject(0, frame(A, B));
    assert_eq!(h.out(2).len(), 1, "B unknown after aging: flooded");
}

#[test]
fn split_horizon_group_members_do_not_talk() {
    let c = cfg("[[interface]]\nname = \"p3\"\nbridge = \"br\"\nsplit-horizon-group = 1\n")
        .replace(
            "name = \"p2\"\nbridge = \"br\"",
            "name = \"p2\"\nbridge = \"br\"\nsplit-horizon-group = 1",
        );
    let mut h = Harness::new(&c);
    h.inject(1, frame(B, "ff:ff:ff:ff:ff:ff"));
    assert_eq!((h.out(0).len(), h.out(2).len()), (1, 0));
    h.inject(2, frame(C, B)); // B is known on p2, same group
    assert_eq!(h.counter(Counter::L2SplitHorizon), 1);
    assert_eq!(h.out(1).len(), 0);
}

#[test]
fn same_interface_destination_is_dropped() {
    let mut h = Harness::new(&p3_plain());
    h.inject(0, frame(A, "ff:ff:ff:ff:ff:ff"));
    h.inject(0, frame(B, A)); // B and A both behind p1
    assert_eq!(h.counter(Counter::L2SameInterface), 1);
}

#[test]
fn bad_source_mac_is_dropped() {
    let mut h = Harness::new(&p3_plain());
    h.inject(0, frame("01:00:00:00:00:01", B));
    h.inject(0, frame("00:00:00:00:00:00", B));
    assert_eq!(h.counter(Counter::L2BadSourceMac), 2);
    assert_eq!(h.out(1).len(), 0);
}

#[test]
fn vlan_subinterface_pops_and_pushes_its_tag() {
    let mut h = Harness::new(&cfg(
        "[[interface]]\nname = \"p3.10\"\nport = \"p3\"\nvlan = 10\nbridge = \"br\"\n",
    ));
    let mut tagged = Vec::new();
    tagged.extend_from_slice(&mac("ff:ff:ff:ff:ff:ff"));
    tagged.extend_from_slice(&mac(C));
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x88, 0xb5]);
    tagged.extend_from_slice(&[0x55; 46]);
    h.inject(2, tagged);
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    assert_eq!(
        &out[0][12..14],
        &[0x88, 0xb5],
        "tag removed towards untagged members"
    );
    h.inject(0, frame(A, C));
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    assert_eq!(
        &out[0][12..16],
        &[0x81, 0x00, 0x00, 0x0a],
        "tag pushed towards the VLAN member"
    );
    assert_eq!(out[0].len(), 64);
    // A frame on a VLAN the port has no interface for.
    let mut other = frame(C, A);
    other.splice(12..12, [0x81, 0x00, 0x00, 0x0b]);
    h.inject(2, other);
    assert_eq!(h.counter(Counter::EthUnknownInterface), 1);
}

#[test]
fn runts_are_counted() {
    let mut h = Harness::new(&p3_plain());
    h.inject(0, vec![0xff; 13]);
    h.inject(0, vec![]);
    assert_eq!(h.counter(Counter::EthRunt), 2);
}

#[test]
fn jumbo_frames_over_the_mtu_are_dropped() {
    let mut h = Harness::new(&p3_plain());
    let mut big = frame(A, "ff:ff:ff:ff:ff:ff");
    big.resize(14 + 1501, 0x55);
    h.inject(0, big);
    assert_eq!(h.counter(Counter::L2MtuExceeded), 2, "one per flooded copy");
    let mut ok = frame(A, "ff:ff:ff:ff:ff:ff");
    ok.resize(14 + 1500, 0x55);
    h.inject(0, ok);
    assert_eq!(h.out(1).len(), 1);
    // Larger than a buffer: refused by the port itself, before the pipeline.
    let mut huge = frame(A, B);
    huge.resize(9000, 0);
    h.inject(0, huge);
    assert_eq!(h.worker.ports[0].stats().snapshot().rx_dropped, 1);
    assert_eq!(h.frames_in_use(), 0);
}

/// Known unicast is sent by `l2-input` itself (no `interface-output`
/// pass): the same MTU check, and the output interface's transmit
/// counters.
#[test]
fn known_unicast_checks_the_mtu_and_counts_on_the_output_interface() {
    let mut h = Harness::new(&p3_plain());
    h.inject(1, frame(B, A));
    h.out(0);
    h.out(2);
    let links = h.router.shared().worker_links();
    let before = vrouter_dataplane::report::iface(&links, 1);
    let mut big = frame(A, B);
    big.resize(14 + 1501, 0x55);
    h.inject(0, big);
    assert_eq!(h.counter(Counter::L2MtuExceeded), 1);
    assert!(h.out(1).is_empty());
    let mut ok = frame(A, B);
    ok.resize(14 + 1500, 0x55);
    h.inject(0, ok.clone());
    assert_eq!(h.out(1), vec![ok]);
    let after = vrouter_dataplane::report::iface(&links, 1);
    assert_eq!(
        (
            after.tx_packets - before.tx_packets,
            after.tx_bytes - before.tx_bytes
        ),
        (1, 14 + 1500)
    );
    assert_eq!(h.frames_in_use(), 0);
}

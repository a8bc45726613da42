//! Every table and queue fed from outside has a limit and counts what it
//! refused (issue 9, part 3). Tests here cover the limits that no other
//! test does: the neighbour table (and its aging), the glean queue,
//! control connections and the subscriber backlog, and that each refusal is visible in `show
//! counters` / `show errors` and the Prometheus page. The others are tested
//! next to their feature: the MAC table (l2.rs
//! `mac_limit_stops_learning_but_not_forwarding`), conntrack
//! (services.rs `full_table_refuses_new_flows_and_keeps_old_ones`,
//! conntrack `quota_refuses_one_owner_only`), ICMP errors (ip4.rs
//! `icmp_errors_are_rate_limited`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::Value;
use vrouter_control::proto::Op;
use vrouter_dataplane::api::Api;
use vrouter_dataplane::graph::Counter;

fn cfg() -> String {
    "[dataplane]\nmax-neighbors = 4\nneighbor-age = 60\nglean-hold = 4\nglean-timeout-ms = 200\n"
        .to_string()
        + &two_nets(None, &["198.18.1.1/24"], &["198.18.2.1/24"])
        + &neighbor("net2", "198.18.2.2", H2)
}

fn api(h: &Harness, tag: &str, max_connections: usize) -> Api {
    let uids = vec![0, my_uid()];
    bind_api(
        &format!("limits-{tag}"),
        port_infos(&h.router),
        uids,
        max_connections,
    )
}

/// This process's uid (the test may run as any user).
fn my_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `show counters` (or `show errors`) as name → (value, drop).
fn counters(h: &mut Harness, a: &mut Api, errors_only: bool) -> Vec<(String, u64, bool)> {
    let op = if errors_only {
        Op::ShowErrors
    } else {
        Op::ShowCounters
    };
    let v: Value = a.handle(&mut h.router, &op).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["value"].as_u64().unwrap(),
                c["drop"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn value(list: &[(String, u64, bool)], name: &str) -> u64 {
    list.iter().find(|c| c.0 == name).map_or(0, |c| c.1)
}

fn arp_request(k: u8) -> Vec<u8> {
    let sha = [0x02, 0, 0, 0, 0x01, k];
    pad60(arp(
        1,
        [0xff; 6],
        sha,
        [198, 18, 1, k],
        [0; 6],
        [198, 18, 1, 1],
    ))
}

fn udp_to(dst: [u8; 4], sport: u16) -> Vec<u8> {
    udp4(H2, R2, [198, 18, 2, 2], dst, 64, sport, 9, &[0xab; 20])
}

#[test]
fn neighbour_table_stops_at_max_neighbors_and_counts() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "nbr", 4);
    // An ARP storm: 20 hosts ask for the router; the first 4 are learned.
    for k in 10..30 {
        h.inject(0, arp_request(k));
    }
    assert_eq!(
        h.counter(Counter::ArpReplySent),
        20,
        "every request answered"
    );
    assert_eq!(h.router.neighbor_count(), 1 + 4, "static + max-neighbors");
    assert_eq!(h.router.stats.neighbors_refused, 16);
    // A learned neighbour is forwarded to directly; a refused one is gleaned.
    h.out(0);
    h.inject(1, udp_to([198, 18, 1, 10], 1000));
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &[0x02, 0, 0, 0, 0x01, 10]);
    // Static entries are configuration: the limit does not apply to them.
    h.router
        .set_neighbor(
            0,
            "198.18.1.200".parse().unwrap(),
            "02:00:00:00:01:c8".parse().unwrap(),
            true,
        )
        .unwrap();
    assert_eq!(h.router.neighbor_count(), 6);
    // Refusals are shown as errors, by name.
    let errors = counters(&mut h, &mut a, true);
    assert_eq!(value(&errors, "neighbor-limit"), 16, "{errors:?}");
    assert!(errors.iter().all(|c| c.2), "show errors lists drops only");
    let all = counters(&mut h, &mut a, false);
    assert_eq!(value(&all, "neighbor-limit"), 16);
    assert_eq!(value(&all, "arp-reply-sent"), 20);
    let page = vrouter_dataplane::metrics::render(&h.router, &[], std::iter::empty(), None);
    assert!(
        page.contains("vrouter_neighbors_refused_total 16"),
        "{page}"
    );
    // Removing one makes room for one more.
    h.router
        .del_neighbor(0, "198.18.1.10".parse().unwrap())
        .unwrap();
    h.inject(0, arp_request(40));
    h.inject(0, arp_request(41));
    assert_eq!(h.router.neighbor_count(), 6);
    assert_eq!(h.router.stats.neighbors_refused, 17);
    // A learned neighbour made static frees its learned slot.
    h.router
        .set_neighbor(
            0,
            "198.18.1.11".parse().unwrap(),
            "02:00:00:00:01:0b".parse().unwrap(),
            true,
        )
        .unwrap();
    h.inject(0, arp_request(42));
    assert_eq!(h.router.neighbor_count(), 7);
    assert_eq!(h.router.stats.neighbors_refused, 17);
}

#[test]
fn glean_queue_holds_at_most_glean_hold_packets() {
    let mut h = Harness::new(&cfg());
    // Ten packets to ten unresolved hosts: four are held, six refused.
    for k in 0..10u8 {
        h.send(1, udp_to([198, 18, 1, 100 + k], 1000 + u16::from(k)));
    }
    h.run();
    assert_eq!(h.counter(Counter::GleanQueued), 4);
    assert_eq!(h.counter(Counter::GleanQueueFull), 6);
    // The held ones time out and give their frames back.
    std::thread::sleep(std::time::Duration::from_millis(250));
    for _ in 0..3 {
        h.run();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(h.counter(Counter::GleanTimeout), 4);
    assert_eq!(h.frames_in_use(), 0);
    // A full queue never stopped resolution of what was held: ARP requests
    // went out, at most one per target per retry interval.
    let requests = h.counter(Counter::ArpRequestSent);
    assert!((4..=10).contains(&requests), "{requests}");
}

#[test]
fn control_connections_beyond_the_limit_are_refused_and_counted() {
    use std::io::Read;
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "conns", 2);
    let keep: Vec<_> = (0..2)
        .map(|_| std::os::unix::net::UnixStream::connect(a.path()).unwrap())
        .collect();
    for _ in 0..5 {
        a.poll(&mut h.router, std::time::Duration::from_millis(5));
    }
    assert_eq!(a.connections(), 2);
    let mut extra = std::os::unix::net::UnixStream::connect(a.path()).unwrap();
    for _ in 0..5 {
        a.poll(&mut h.router, std::time::Duration::from_millis(5));
    }
    extra
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut got = String::new();
    let _ = extra.read_to_string(&mut got);
    assert!(got.contains("too_many_connections"), "{got}");
    assert_eq!(a.connections(), 2);
    assert_eq!(a.stats.refused_limit, 1);
    let errors = counters(&mut h, &mut a, true);
    assert_eq!(value(&errors, "control-refused-limit"), 1, "{errors:?}");
    let page =
        vrouter_dataplane::metrics::render(&h.router, &[], std::iter::empty(), Some(&a.stats));
    assert!(
        page.contains("vrouter_control_connections_refused_total{reason=\"limit\"} 1"),
        "{page}"
    );
    drop(keep);
}

#[test]
fn subscriber_backlog_follows_the_configuration() {
    use std::io::Write;
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "backlog", 4);
    a.set_event_backlog(4096);
    let mut s = std::os::unix::net::UnixStream::connect(a.path()).unwrap();
    s.write_all(
        b"{\"id\":1,\"op\":\"hello\",\"args\":{\"version\":1}}\n{\"id\":2,\"op\":\"subscribe\",\"args\":{\"events\":[\"port\"]}}\n",
    )
    .unwrap();
    for _ in 0..20 {
        a.poll(&mut h.router, std::time::Duration::from_millis(5));
    }
    // The client does not read. The socket buffer takes some; beyond it at
    // most 4 KiB (plus one event) is kept for the client.
    for k in 0..20_000 {
        a.publish_link(&format!("port{k}"), "veth-with-a-long-name", k % 2 == 0);
    }
    let dropped = a.stats.events_dropped;
    assert!(dropped > 10_000, "{:?}", a.stats);
    assert_eq!(a.connections(), 1, "the subscriber stays connected");
    let all = counters(&mut h, &mut a, false);
    assert_eq!(value(&all, "control-events-dropped"), dropped);
}

#[test]
fn learned_neighbours_age_out_and_free_their_slots() {
    let mut h = Harness::new(&cfg());
    for k in 10..20 {
        h.inject(0, arp_request(k));
    }
    assert_eq!(h.router.neighbor_count(), 1 + 4);
    let now = (h.router.shared().now() / 1_000_000_000) as u32;
    h.router.tick(now + 58);
    assert_eq!(h.router.neighbor_count(), 5, "nothing is 60 s old yet");
    h.router.tick(now + 61);
    assert_eq!(h.router.stats.neighbors_aged, 4, "learned entries aged out");
    assert_eq!(h.router.neighbor_count(), 1, "the static one stays");
    // The storm is over: a new host is learned again.
    h.inject(0, arp_request(50));
    assert_eq!(h.router.neighbor_count(), 2);
    let page = vrouter_dataplane::metrics::render(&h.router, &[], std::iter::empty(), None);
    assert!(page.contains("vrouter_neighbors_aged_total 4"), "{page}");
    // Traffic to an aged-out host is resolved again (glean), not lost.
    h.out(0);
    h.send(1, udp_to([198, 18, 1, 11], 1000));
    h.run();
    assert_eq!(h.counter(Counter::GleanQueued), 1);
    let out = h.out(0);
    assert_eq!(out.len(), 1, "one ARP request");
    assert_eq!(&out[0][12..14], &[0x08, 0x06]);
}

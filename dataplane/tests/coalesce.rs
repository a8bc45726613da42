//! Pipelined changes on one connection are published together: each
//! request is applied (and, on failure, rolled back) on its own, the
//! responses come in request order and only after the one publish that
//! covers them, and a request that is not a change is answered after the
//! changes before it were published.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vrouter_dataplane::service::vip_key;

fn cfg() -> String {
    two_nets(None, &["198.18.1.1/24"], &["198.18.2.1/24"])
}

fn svc(name: &str, vip: &str, backend: &str) -> Value {
    json!({"namespace": "default", "name": name, "ips": [vip], "port": 80,
           "backends": [{"ip": backend, "port": 8080}]})
}

fn sync_line(id: u64, scope: &str, services: Vec<Value>) -> String {
    json!({"id": id, "op": "sync", "args": {"scope": scope, "generation": 1, "services": services}})
        .to_string()
        + "\n"
}

fn vip(a: [u8; 4]) -> u64 {
    vip_key(u32::from_be_bytes(a), 80, 6)
}

/// Reads `n` response lines, polling the API between reads.
fn responses(
    a: &mut vrouter_dataplane::api::Api,
    h: &mut Harness,
    r: &mut BufReader<UnixStream>,
    n: usize,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut line = String::new();
    for _ in 0..2000 {
        if out.len() == n {
            break;
        }
        a.poll(&mut h.router, Duration::from_millis(2));
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(k) if k > 0 => out.push(serde_json::from_str(&line).unwrap()),
                _ => break,
            }
        }
    }
    assert_eq!(out.len(), n, "{out:?}");
    out
}

#[test]
fn pipelined_syncs_publish_once_ack_in_order_and_roll_back_alone() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "coalesce");
    let s = UnixStream::connect(a.path()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(b"{\"id\":1,\"op\":\"hello\",\"args\":{\"version\":1}}\n")
        .unwrap();
    responses(&mut a, &mut h, &mut r, 1);

    let before = h.router.stats.publishes;
    let mut burst = String::new();
    burst += &sync_line(2, "t/0", vec![svc("a/http", "198.19.0.1", "198.18.2.10")]);
    // The second request fails on its second service: its first one is
    // rolled back, the requests around it stay applied.
    burst += &sync_line(
        3,
        "t/1",
        vec![
            svc("b/http", "198.19.0.2", "198.18.2.11"),
            svc("c/http", "198.19.0.3", "not-an-address"),
        ],
    );
    burst += &sync_line(4, "t/2", vec![svc("d/http", "198.19.0.4", "198.18.2.12")]);
    // A plain change and a batch are coalesced too.
    burst +=
        &(json!({"id": 5, "op": "service.add", "args": svc("e/http", "198.19.0.5", "198.18.2.13")})
            .to_string() + "\n");
    burst += &(json!({"id": 6, "op": "batch", "args": {"ops": [
        {"op": "service.add", "args": svc("f/http", "198.19.0.6", "198.18.2.14")}]}})
    .to_string()
        + "\n");
    w.write_all(burst.as_bytes()).unwrap();
    let got = responses(&mut a, &mut h, &mut r, 5);
    let ids: Vec<u64> = got.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [2, 3, 4, 5, 6], "responses in request order");
    assert_eq!(got[0]["result"]["added"], 1, "{}", got[0]);
    assert_eq!(got[1]["error"]["code"], "invalid", "{}", got[1]);
    assert!(
        got[1]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("sync t/1: op 1:"),
        "{}",
        got[1]
    );
    assert_eq!(got[2]["result"]["added"], 1, "{}", got[2]);
    assert_eq!(got[3]["result"]["ok"], true, "{}", got[3]);
    assert_eq!(got[4]["result"]["applied"], 1, "{}", got[4]);
    assert_eq!(
        h.router.stats.publishes - before,
        1,
        "five pipelined changes, one publish"
    );
    // Acknowledged = in the snapshot the workers read.
    let t = h.router.shared().tables.load();
    for (v, present) in [
        ([198, 19, 0, 1], true),
        ([198, 19, 0, 2], false),
        ([198, 19, 0, 3], false),
        ([198, 19, 0, 4], true),
        ([198, 19, 0, 5], true),
        ([198, 19, 0, 6], true),
    ] {
        assert_eq!(
            t.services.vips.contains_key(&vip(v)),
            present,
            "VIP {v:?} in the published snapshot"
        );
    }

    // A show after a change sees it, and is answered after it.
    let before = h.router.stats.publishes;
    let mut burst = sync_line(7, "t/1", vec![svc("b/http", "198.19.0.2", "198.18.2.11")]);
    burst += "{\"id\":8,\"op\":\"show.services\"}\n";
    burst += &sync_line(9, "t/0", vec![]);
    w.write_all(burst.as_bytes()).unwrap();
    let got = responses(&mut a, &mut h, &mut r, 3);
    let ids: Vec<u64> = got.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [7, 8, 9]);
    let names: Vec<&str> = got[1]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "default/a/http",
            "default/b/http",
            "default/d/http",
            "default/e/http",
            "default/f/http"
        ]
    );
    assert_eq!(got[2]["result"]["removed"], 1, "{}", got[2]);
    assert_eq!(
        h.router.stats.publishes - before,
        2,
        "the show ends the first run of changes"
    );
    let t = h.router.shared().tables.load();
    assert!(!t.services.vips.contains_key(&vip([198, 19, 0, 1])));
    assert!(t.services.vips.contains_key(&vip([198, 19, 0, 2])));
}

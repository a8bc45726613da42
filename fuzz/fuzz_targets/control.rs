//! The control protocol: arbitrary text as the lines a client writes to
//! the control socket. Each line goes through `proto::parse_request` (bad
//! JSON, unknown ops and bad arguments must be told apart, never panic),
//! and each request that parses is served by `Api::handle` against a
//! router that lives across inputs, as vrouterd's does (routes, neighbours, addresses, bridges, VTEPs, services,
//! policies, endpoints, `batch` with its all-or-nothing undo, `sync` scopes,
//! `trace.packet`), in order, so later lines see what earlier ones changed.
//! The same lines are also decoded as the client decodes replies
//! (`proto::Response`, `info::*`).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use vrouter_control::proto::{self, info};
use vrouter_dataplane::api::{Api, ApiConfig, PortInfo};
use vrouter_dataplane::config::Config;
use vrouter_dataplane::control::Router;

const CFG: &str = r#"
[[port]]
name = "net1"
driver = "memory"
mac = "02:00:00:00:01:01"
[[port]]
name = "net2"
driver = "memory"
mac = "02:00:00:00:02:01"
[[port]]
name = "pod1"
driver = "memory"
mac = "02:00:00:00:03:01"
[[vrf]]
name = "red"
[[bridge]]
name = "b"
mac-limit = 100
gateway = { addresses = ["198.18.3.1/24", "2001:db8:3::1/64"] }
[[interface]]
name = "net1"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "net2"
vrf = "red"
addresses = ["198.18.2.1/24"]
[[interface]]
name = "pod1"
bridge = "b"
[[neighbor]]
interface = "net1"
ip = "198.18.1.2"
mac = "02:00:00:00:01:02"
[[route]]
prefix = "0.0.0.0/0"
via = ["198.18.1.2"]
[[vtep]]
name = "vtep0"
local = "198.18.1.1"
[[vni]]
vtep = "vtep0"
vni = 100
bridge = "b"
flood = ["198.18.1.9"]
[[vni]]
vtep = "vtep0"
vni = 1
vrf = "default"
routes = [{ prefix = "198.19.2.0/24", remote = "198.18.1.9", mac = "02:00:00:00:0b:02" }]
[services]
maglev-table-size = 251
"#;

/// Lines served per input (the fuzzer finds depth, not volume).
const MAX_LINES: usize = 32;

fn fresh() -> (Router, Api) {
    let cfg = Config::parse("fuzz.toml", CFG).unwrap_or_else(|e| panic!("setup: {e}"));
    let router = Router::from_config(&cfg, &[None, None, None], "fuzz.toml")
        .unwrap_or_else(|e| panic!("setup: {e}"));
    let ports = cfg
        .ports
        .iter()
        .map(|p| PortInfo {
            name: p.name.clone(),
            driver: "memory".into(),
            mac: vrouter_wire::MacAddr::ZERO,
            stats: Vec::new(),
        })
        .collect();
    let path = std::env::temp_dir().join(format!("vrouter-fuzz-ctl-{}.sock", std::process::id()));
    let api = Api::bind(
        ApiConfig {
            path,
            allowed_uids: vec![0],
            allowed_gids: vec![],
            max_connections: 1,
        },
        ports,
    )
    .unwrap_or_else(|e| panic!("setup: {e}"));
    (router, api)
}

/// Inputs served by one router before a fresh one replaces it: a router
/// costs about a second to build (each VRF's FIB touches 64 MiB), and a
/// bounded history keeps a crash close to the inputs that led to it.
const RESET_EVERY: u32 = 2000;

thread_local! {
    static SERVED: RefCell<(u32, Option<(Router, Api)>)> = const { RefCell::new((0, None)) };
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    SERVED.with(|served| {
        let mut served = served.borrow_mut();
        served.0 += 1;
        if served.0 >= RESET_EVERY {
            *served = (0, None);
        }
        for line in text.lines().take(MAX_LINES) {
            let _ = serde_json::from_str::<proto::Response>(line);
            let _ = serde_json::from_str::<Vec<info::Interface>>(line);
            let _ = serde_json::from_str::<Vec<info::Route>>(line);
            match proto::parse_request(line) {
                Ok(req) => {
                    let (router, api) = served.1.get_or_insert_with(fresh);
                    if let Err(e) = api.handle(router, &req.op) {
                        assert!(!e.code.is_empty() && !e.message.is_empty(), "{e:?}");
                    }
                }
                Err((_, e)) => assert!(!e.code.is_empty(), "an error without a code"),
            }
        }
    });
});

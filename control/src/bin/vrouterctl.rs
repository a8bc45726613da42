//! vrouterctl: the operator's command line for a running vrouterd, over its
//! control socket. Tables by default, JSON with `--json`.
//!
//! Exit codes: 0 done; 1 vrouterd refused the request (its error is
//! printed); 2 bad command line; 3 vrouterd could not be reached.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use vrouter_control::proto::{self, Op};
use vrouter_control::{Client, ClientError};

#[derive(Parser, Debug)]
#[command(version, about = "Inspect and change a running vrouterd through its control socket.", long_about = None,
    after_help = "Exit codes: 0 done, 1 request refused by vrouterd, 2 bad command line, 3 vrouterd unreachable.\n\
Examples:\n  vrouterctl show routes\n  vrouterctl trace add 10; vrouterctl trace show\n  vrouterctl trace packet --in-port a --src 198.18.1.2 --dst 198.18.2.2 --proto udp --dport 53\n  vrouterctl capture --drops --count 50 -w drops.pcapng\n  vrouterctl events mac port\n  vrouterctl route add 198.19.0.0/16 via 198.18.1.2\n  vrouterctl neighbor add net1 198.18.1.2 02:00:00:00:01:02\n  vrouterctl --json show counters")]
struct Cli {
    /// Control socket of vrouterd.
    #[arg(short, long, env = "VROUTER_SOCKET", default_value = proto::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show state and counters.
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Static routes.
    Route {
        #[command(subcommand)]
        cmd: RouteCmd,
    },
    /// Overlay routes: a prefix reached through a remote VTEP of the VRF's
    /// L3 VNI, with the remote VXLAN device's MAC as inner destination.
    Overlay {
        #[command(subcommand)]
        cmd: OverlayCmd,
    },
    /// Static neighbours (ARP/ND entries).
    Neighbor {
        #[command(subcommand)]
        cmd: NeighborCmd,
    },
    /// Interface addresses.
    Address {
        #[command(subcommand)]
        cmd: AddressCmd,
    },
    /// Static MAC entries and flushing.
    Mac {
        #[command(subcommand)]
        cmd: MacCmd,
    },
    /// Endpoints (pods).
    Endpoint {
        #[command(subcommand)]
        cmd: EndpointCmd,
    },
    /// VXLAN flood lists and static remote MACs.
    Vxlan {
        #[command(subcommand)]
        cmd: VxlanCmd,
    },
    /// Services (load balancing): the object is JSON, inline or @file
    /// (`{"namespace","name","ips","port","protocol","node_port","backends":[{"ip","port"}]}`).
    Service {
        #[command(subcommand)]
        cmd: ObjCmd,
    },
    /// NetworkPolicies: the object is JSON, inline or @file
    /// (`{"namespace","name","pods","types","ingress":[{"peers","ports"}],"egress":[...]}`).
    Policy {
        #[command(subcommand)]
        cmd: ObjCmd,
    },
    /// Apply the changes in a JSON file (an array of {"op","args"}) all or nothing.
    Batch { file: PathBuf },
    /// Replace the state of a scope with a JSON file ({"scope","generation","routes",...}).
    Sync { file: PathBuf },
    /// Print events as they happen (mac, neighbor, port).
    Events {
        #[arg(default_values = ["mac", "neighbor", "port"])]
        kinds: Vec<String>,
    },
    /// Send one raw request ({"op": ..., "args": ...}; the id is added).
    Raw { request: String },
    /// Packet traces: record the path of received packets through the
    /// nodes, or run a synthetic packet through the live tables.
    Trace {
        #[command(subcommand)]
        cmd: TraceCmd,
    },
    /// Capture dropped packets (with their reason) or a port's traffic into
    /// a pcap-ng file (tshark/wireshark show the drop reason as the comment).
    Capture(CaptureArgs),
}

#[derive(Subcommand, Debug)]
enum TraceCmd {
    /// Trace the next N packets each worker receives.
    Add { count: u32 },
    /// Print the recorded traces: the packet, each node and its decision.
    Show,
    /// Stop tracing and forget the traces.
    Clear,
    /// Run a synthetic packet through the live tables (never transmitted)
    /// and print every decision: table generation, next hop, rewrite,
    /// output port or drop reason.
    Packet(TracePacketArgs),
}

#[derive(Args, Debug)]
struct TracePacketArgs {
    /// Port the packet arrives on.
    #[arg(long)]
    in_port: String,
    #[arg(long)]
    src: String,
    #[arg(long)]
    dst: String,
    /// icmp, tcp or udp.
    #[arg(long, default_value = "icmp")]
    proto: String,
    #[arg(long)]
    sport: Option<u16>,
    #[arg(long)]
    dport: Option<u16>,
    /// Default: a locally administered MAC.
    #[arg(long)]
    src_mac: Option<String>,
    /// Default: the MAC of the interface the packet enters.
    #[arg(long)]
    dst_mac: Option<String>,
    #[arg(long)]
    vlan: Option<u16>,
    #[arg(long)]
    ttl: Option<u8>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["drops", "port"])))]
struct CaptureArgs {
    /// Dropped packets, each with its drop reason.
    #[arg(long)]
    drops: bool,
    /// Packets received and transmitted on this port.
    #[arg(long)]
    port: Option<String>,
    /// Stop after this many packets.
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Keep one packet in N (a sample under heavy drops).
    #[arg(long, default_value_t = 1)]
    sample: u32,
    /// pcap-ng file to write.
    #[arg(short = 'w', long = "write")]
    write: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Show {
    Ports,
    Interfaces,
    Vrfs,
    Bridge,
    /// MAC table (of one bridge, or all).
    Mac {
        bridge: Option<String>,
    },
    Routes {
        #[arg(long)]
        vrf: Option<String>,
        /// ipv4 or ipv6
        #[arg(long)]
        family: Option<String>,
    },
    Neighbors,
    Endpoints,
    /// Every non-zero named counter.
    Counters,
    /// Drop counters only.
    Errors,
    /// Per-node calls, packets and clocks per packet.
    Runtime,
    /// VXLAN VTEPs and their tunnels (VNI, remote VTEP) with counters.
    Vteps,
    /// Overlay routes: prefix, VNI, remote VTEP, inner MAC.
    OverlayRoutes {
        #[arg(long)]
        vrf: Option<String>,
    },
    /// Services with their VIPs and backends.
    Services,
    /// NetworkPolicies with per-rule counters.
    Policies,
    /// Conntrack capacity, flows, fill ratio and refusals.
    Conntrack,
}

#[derive(Subcommand, Debug)]
enum ObjCmd {
    /// Add (fails if it exists).
    Add { object: String },
    /// Add or replace.
    Replace { object: String },
    Del {
        /// namespace/name
        name: String,
    },
}

/// A JSON object given inline or as @file.
fn object<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    let text = match s.strip_prefix('@') {
        Some(f) => std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
        None => s.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| format!("object: {e}"))
}

#[derive(Args, Debug)]
struct RouteArgs {
    prefix: String,
    /// Gateways (`via 198.18.1.2 198.18.2.2` or just the addresses).
    gateways: Vec<String>,
    #[arg(long)]
    interface: Option<String>,
    #[arg(long)]
    vrf: Option<String>,
    #[arg(long, conflicts_with_all = ["unreachable"])]
    drop: bool,
    #[arg(long)]
    unreachable: bool,
}

#[derive(Subcommand, Debug)]
enum RouteCmd {
    Add(RouteArgs),
    Replace(RouteArgs),
    Del {
        prefix: String,
        #[arg(long)]
        vrf: Option<String>,
    },
}

#[derive(Args, Debug)]
struct OverlayArgs {
    /// Another node's pod CIDR (IPv4 or IPv6).
    prefix: String,
    /// Its VTEP address.
    remote: String,
    /// Inner destination MAC (that node's VXLAN device on the VNI).
    mac: String,
    /// The L3 VNI (default: the one bound to the VRF).
    #[arg(long)]
    vni: Option<u32>,
    /// The local VTEP (needed only when several carry the VNI).
    #[arg(long)]
    vtep: Option<String>,
    #[arg(long)]
    vrf: Option<String>,
}

#[derive(Subcommand, Debug)]
enum OverlayCmd {
    /// `overlay add 198.19.2.0/24 198.18.100.2 02:76:78:00:00:01`
    Add(OverlayArgs),
    /// Add or replace.
    Replace(OverlayArgs),
    Del {
        prefix: String,
        #[arg(long)]
        vrf: Option<String>,
    },
}

fn overlay(a: OverlayArgs) -> proto::Route {
    proto::Route {
        vrf: a.vrf,
        prefix: a.prefix,
        remote: Some(a.remote),
        mac: Some(a.mac),
        vni: a.vni,
        vtep: a.vtep,
        ..Default::default()
    }
}

#[derive(Subcommand, Debug)]
enum NeighborCmd {
    Add {
        interface: String,
        ip: String,
        mac: String,
    },
    Del {
        interface: String,
        ip: String,
    },
}

#[derive(Subcommand, Debug)]
enum AddressCmd {
    Add { interface: String, address: String },
    Del { interface: String, address: String },
}

#[derive(Subcommand, Debug)]
enum MacCmd {
    Add {
        bridge: String,
        mac: String,
        interface: String,
    },
    Del {
        bridge: String,
        mac: String,
        interface: String,
    },
    Flush {
        bridge: String,
        interface: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum VxlanCmd {
    /// Add a remote VTEP to an L2 VNI's flood list (`vxlan flood add vtep0 100 198.18.100.3`).
    FloodAdd {
        vtep: String,
        vni: u32,
        remote: String,
    },
    /// Remove a remote VTEP from an L2 VNI's flood list.
    FloodDel {
        vtep: String,
        vni: u32,
        remote: String,
    },
    /// A static remote MAC behind a remote VTEP of an L2 VNI.
    MacAdd {
        vtep: String,
        vni: u32,
        mac: String,
        remote: String,
        /// The endpoint's IPv4 address (ARP requests for it are answered locally).
        #[arg(long)]
        ip: Option<String>,
    },
    MacDel {
        vtep: String,
        vni: u32,
        mac: String,
        remote: String,
    },
}

#[derive(Subcommand, Debug)]
enum EndpointCmd {
    Add {
        /// namespace/name
        pod: String,
        #[arg(long)]
        interface: String,
        #[arg(long)]
        mac: String,
        #[arg(long = "ip", required = true)]
        ips: Vec<String>,
        #[arg(long, default_value = "")]
        node: String,
    },
    Del {
        pod: String,
    },
}

fn route(a: RouteArgs) -> proto::Route {
    let via = a.gateways.into_iter().filter(|g| g != "via").collect();
    let action = if a.drop {
        Some("drop".to_string())
    } else if a.unreachable {
        Some("unreachable".to_string())
    } else {
        None
    };
    proto::Route {
        vrf: a.vrf,
        prefix: a.prefix,
        via,
        interface: a.interface,
        action,
        ..Default::default()
    }
}

fn pod(s: &str) -> Result<(String, String), String> {
    s.split_once('/')
        .map(|(n, p)| (n.to_string(), p.to_string()))
        .ok_or_else(|| format!("`{s}` is not namespace/name"))
}

fn read_json(path: &PathBuf) -> Result<Value, String> {
    let t = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&t).map_err(|e| format!("{}: {e}", path.display()))
}

/// The request a command sends (None for commands handled otherwise).
fn op_of(cmd: Cmd) -> Result<Op, String> {
    Ok(match cmd {
        Cmd::Show { what } => match what {
            Show::Ports => Op::ShowPorts,
            Show::Interfaces => Op::ShowInterfaces,
            Show::Vrfs => Op::ShowVrfs,
            Show::Bridge => Op::ShowBridges,
            Show::Mac { bridge } => Op::ShowMac(proto::BridgeSel { bridge }),
            Show::Routes { vrf, family } => Op::ShowRoutes(proto::RouteSel { vrf, family }),
            Show::Neighbors => Op::ShowNeighbors,
            Show::Endpoints => Op::ShowEndpoints,
            Show::Counters => Op::ShowCounters,
            Show::Errors => Op::ShowErrors,
            Show::Runtime => Op::ShowRuntime,
            Show::Vteps => Op::ShowVteps,
            Show::OverlayRoutes { vrf } => Op::ShowOverlayRoutes(proto::OverlaySel { vrf }),
            Show::Services => Op::ShowServices,
            Show::Policies => Op::ShowPolicies,
            Show::Conntrack => Op::ShowConntrack,
        },
        Cmd::Vxlan { cmd } => match cmd {
            VxlanCmd::FloodAdd { vtep, vni, remote } => {
                Op::VxlanFloodAdd(proto::VxlanRemote { vtep, vni, remote })
            }
            VxlanCmd::FloodDel { vtep, vni, remote } => {
                Op::VxlanFloodDel(proto::VxlanRemote { vtep, vni, remote })
            }
            VxlanCmd::MacAdd {
                vtep,
                vni,
                mac,
                remote,
                ip,
            } => Op::VxlanMacAdd(proto::VxlanMac {
                vtep,
                vni,
                mac,
                remote,
                ip,
            }),
            VxlanCmd::MacDel {
                vtep,
                vni,
                mac,
                remote,
            } => Op::VxlanMacDel(proto::VxlanMac {
                vtep,
                vni,
                mac,
                remote,
                ip: None,
            }),
        },
        Cmd::Overlay { cmd } => match cmd {
            OverlayCmd::Add(a) => Op::RouteAdd(overlay(a)),
            OverlayCmd::Replace(a) => Op::RouteReplace(overlay(a)),
            OverlayCmd::Del { prefix, vrf } => Op::RouteDel(proto::RouteKey { vrf, prefix }),
        },
        Cmd::Route { cmd } => match cmd {
            RouteCmd::Add(a) => Op::RouteAdd(route(a)),
            RouteCmd::Replace(a) => Op::RouteReplace(route(a)),
            RouteCmd::Del { prefix, vrf } => Op::RouteDel(proto::RouteKey { vrf, prefix }),
        },
        Cmd::Neighbor { cmd } => match cmd {
            NeighborCmd::Add { interface, ip, mac } => {
                Op::NeighborAdd(proto::Neighbor { interface, ip, mac })
            }
            NeighborCmd::Del { interface, ip } => {
                Op::NeighborDel(proto::NeighborKey { interface, ip })
            }
        },
        Cmd::Address { cmd } => match cmd {
            AddressCmd::Add { interface, address } => {
                Op::AddressAdd(proto::Address { interface, address })
            }
            AddressCmd::Del { interface, address } => {
                Op::AddressDel(proto::Address { interface, address })
            }
        },
        Cmd::Mac { cmd } => match cmd {
            MacCmd::Add {
                bridge,
                mac,
                interface,
            } => Op::StaticMacAdd(proto::StaticMac {
                bridge,
                mac,
                interface,
            }),
            MacCmd::Del {
                bridge,
                mac,
                interface,
            } => Op::StaticMacDel(proto::StaticMac {
                bridge,
                mac,
                interface,
            }),
            MacCmd::Flush { bridge, interface } => {
                Op::MacFlush(proto::MacFlush { bridge, interface })
            }
        },
        Cmd::Endpoint { cmd } => match cmd {
            EndpointCmd::Add {
                pod: p,
                interface,
                mac,
                ips,
                node,
            } => {
                let (namespace, name) = pod(&p)?;
                Op::EndpointAdd(proto::Endpoint {
                    namespace,
                    name,
                    node,
                    ips,
                    mac,
                    interface,
                })
            }
            EndpointCmd::Del { pod: p } => {
                let (namespace, name) = pod(&p)?;
                Op::EndpointDel(proto::EndpointKey { namespace, name })
            }
        },
        Cmd::Service { cmd } => match cmd {
            ObjCmd::Add { object: o } => Op::ServiceAdd(object(&o)?),
            ObjCmd::Replace { object: o } => Op::ServiceReplace(object(&o)?),
            ObjCmd::Del { name } => {
                let (namespace, name) = pod(&name)?;
                Op::ServiceDel(proto::ObjectKey { namespace, name })
            }
        },
        Cmd::Policy { cmd } => match cmd {
            ObjCmd::Add { object: o } => Op::PolicyAdd(object(&o)?),
            ObjCmd::Replace { object: o } => Op::PolicyReplace(object(&o)?),
            ObjCmd::Del { name } => {
                let (namespace, name) = pod(&name)?;
                Op::PolicyDel(proto::ObjectKey { namespace, name })
            }
        },
        Cmd::Batch { file } => {
            let v = read_json(&file)?;
            let ops: Vec<proto::BatchOp> =
                serde_json::from_value(v).map_err(|e| format!("{}: {e}", file.display()))?;
            Op::Batch(proto::Batch { ops })
        }
        Cmd::Sync { file } => {
            let v = read_json(&file)?;
            Op::Sync(serde_json::from_value(v).map_err(|e| format!("{}: {e}", file.display()))?)
        }
        Cmd::Events { kinds } => Op::Subscribe(proto::Subscribe { events: kinds }),
        Cmd::Trace { cmd } => match cmd {
            TraceCmd::Add { count } => Op::TraceAdd(proto::TraceAdd { count }),
            TraceCmd::Show => Op::TraceShow,
            TraceCmd::Clear => Op::TraceClear,
            TraceCmd::Packet(a) => Op::TracePacket(proto::TracePacket {
                in_port: a.in_port,
                src: a.src,
                dst: a.dst,
                proto: Some(a.proto),
                sport: a.sport,
                dport: a.dport,
                src_mac: a.src_mac,
                dst_mac: a.dst_mac,
                vlan: a.vlan,
                ttl: a.ttl,
            }),
        },
        Cmd::Raw { .. } | Cmd::Capture(_) => return Err("not a single request".into()),
    })
}

/// Prints an array of objects as a table with the given columns.
fn table(v: &Value, cols: &[&str]) {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    cols.iter()
                        .map(|c| match o.get(*c) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => "-".to_string(),
                            Some(Value::Array(a)) => a
                                .iter()
                                .map(|x| x.as_str().map_or(x.to_string(), str::to_string))
                                .collect::<Vec<_>>()
                                .join(","),
                            Some(Value::Number(n)) if n.is_f64() => {
                                format!("{:.1}", n.as_f64().unwrap_or(0.0))
                            }
                            Some(x) => x.to_string(),
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(k, c)| {
            rows.iter()
                .map(|r| r[k].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(cols.iter().map(|c| c.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn print(what: &Op, v: &Value) {
    match what {
        Op::ShowPorts => table(
            v,
            &[
                "name",
                "driver",
                "mac",
                "rx_packets",
                "rx_dropped",
                "tx_packets",
                "tx_dropped",
                "rx_fill_empty",
            ],
        ),
        Op::ShowInterfaces => table(
            v,
            &[
                "name",
                "port",
                "vlan",
                "mode",
                "bridge",
                "vrf",
                "mac",
                "mtu",
                "addresses",
                "rx_packets",
                "tx_packets",
                "drops",
            ],
        ),
        Op::ShowBridges => table(
            v,
            &[
                "name",
                "members",
                "gateway",
                "macs",
                "mac_limit",
                "mac_age",
                "learning",
            ],
        ),
        Op::ShowMac(_) => table(v, &["bridge", "mac", "interface", "static", "age"]),
        Op::ShowRoutes(_) => table(v, &["vrf", "prefix", "source", "next_hop"]),
        Op::ShowOverlayRoutes(_) => table(
            v,
            &["vrf", "prefix", "vtep", "vni", "remote", "mac", "interface"],
        ),
        Op::ShowNeighbors => table(v, &["interface", "ip", "mac", "static"]),
        Op::ShowEndpoints => table(v, &["namespace", "name", "node", "interface", "mac", "ips"]),
        Op::ShowCounters | Op::ShowErrors => table(v, &["name", "value", "drop", "help"]),
        Op::ShowRuntime => table(v, &["name", "calls", "packets", "clocks_per_packet"]),
        Op::ShowServices => table(
            v,
            &["name", "ips", "port", "protocol", "node_port", "endpoints"],
        ),
        Op::ShowPolicies => table(
            v,
            &["name", "pods", "ingress", "egress", "rule_hits", "denied"],
        ),
        Op::TraceShow => {
            let traces = v["traces"].as_array().cloned().unwrap_or_default();
            if traces.is_empty() {
                println!("no traces (vrouterctl trace add N, then send traffic)");
            }
            for (k, t) in traces.iter().enumerate() {
                print_trace(k + 1, t);
            }
            if v["lost"].as_u64().unwrap_or(0) > 0 {
                println!("{} traces lost (queue full)", v["lost"]);
            }
        }
        Op::TracePacket(_) => {
            println!("tables generation {}", v["generation"]);
            for (k, t) in v["traces"].as_array().into_iter().flatten().enumerate() {
                print_trace(k + 1, t);
            }
        }
        Op::ShowVteps => {
            table(
                v,
                &[
                    "name",
                    "local",
                    "udp_port",
                    "vrf",
                    "interface",
                    "inner_mtu",
                    "ttl",
                    "dscp",
                    "source_ports",
                    "rx_packets",
                    "tx_packets",
                ],
            );
            let tunnels: Vec<Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.get("tunnels").and_then(Value::as_array))
                .flatten()
                .cloned()
                .collect();
            println!();
            table(
                &Value::Array(tunnels),
                &[
                    "vtep",
                    "vni",
                    "bound",
                    "remote",
                    "flood",
                    "accepted",
                    "rx_packets",
                    "rx_bytes",
                    "tx_packets",
                    "tx_bytes",
                ],
            );
        }
        _ => println!(
            "{}",
            if v.is_object() || v.is_array() {
                serde_json::to_string_pretty(v).unwrap_or_default()
            } else {
                v.to_string()
            }
        ),
    }
}

fn print_trace(k: usize, t: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let worker = t
        .get("worker")
        .map_or(String::new(), |w| format!("worker {w}, "));
    println!(
        "Packet {k} ({worker}port {}): {}",
        s(&t["rx_port"]),
        s(&t["packet"])
    );
    for st in t["path"].as_array().into_iter().flatten() {
        println!(
            "  {:<18} → {:<18} {}",
            s(&st["node"]),
            s(&st["next"]),
            s(&st["detail"])
        );
    }
    println!("  result: {}", s(&t["result"]));
    if let Some(o) = t.get("output") {
        println!("  output: {}", s(o));
    }
    if let Some(r) = t.get("rewrite") {
        let mut parts = vec![
            format!("dst {}", s(&r["dst_mac"])),
            format!("src {}", s(&r["src_mac"])),
        ];
        if let Some(ttl) = r.get("ttl") {
            parts.push(format!("ttl {}", s(ttl)));
        }
        println!("  rewrite: {}", parts.join(", "));
    }
    println!();
}

/// Prints one event of a subscription as `type key=value ...`.
fn print_event(e: &Value) {
    let Some(o) = e.as_object() else {
        println!("{e}");
        return;
    };
    let mut line = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("event")
        .to_string();
    for (k, v) in o.iter().filter(|(k, _)| *k != "type") {
        line += &format!(" {k}={}", v.as_str().map_or(v.to_string(), str::to_string));
    }
    println!("{line}");
}

fn parse_hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A pcap-ng writer: one Ethernet interface, an enhanced packet block per
/// packet with its direction and a comment (the drop reason).
struct PcapNg(Vec<u8>);

impl PcapNg {
    fn block(&mut self, kind: u32, body: &[u8]) {
        let len = (12 + body.len()) as u32;
        self.0.extend_from_slice(&kind.to_le_bytes());
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(body);
        self.0.extend_from_slice(&len.to_le_bytes());
    }

    fn opt(body: &mut Vec<u8>, code: u16, val: &[u8]) {
        body.extend_from_slice(&code.to_le_bytes());
        body.extend_from_slice(&(val.len() as u16).to_le_bytes());
        body.extend_from_slice(val);
        body.resize(body.len().next_multiple_of(4), 0);
    }

    fn new(comment: &str) -> PcapNg {
        let mut w = PcapNg(Vec::new());
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        Self::opt(&mut shb, 1, comment.as_bytes());
        Self::opt(&mut shb, 4, b"vrouterctl");
        Self::opt(&mut shb, 0, &[]);
        w.block(0x0A0D_0D0A, &shb);
        let mut idb = Vec::new();
        idb.extend_from_slice(&1u16.to_le_bytes()); // LINKTYPE_ETHERNET
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes());
        Self::opt(&mut idb, 9, &[9]); // if_tsresol: nanoseconds
        Self::opt(&mut idb, 0, &[]);
        w.block(1, &idb);
        w
    }

    fn packet(&mut self, ts_ns: u64, len: u32, data: &[u8], inbound: Option<bool>, comment: &str) {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts_ns as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(data);
        b.resize(b.len().next_multiple_of(4), 0);
        if let Some(i) = inbound {
            Self::opt(&mut b, 2, &(if i { 1u32 } else { 2 }).to_le_bytes());
        }
        if !comment.is_empty() {
            Self::opt(&mut b, 1, comment.as_bytes());
        }
        Self::opt(&mut b, 0, &[]);
        self.block(6, &b);
    }
}

/// `capture`: arms a capture, reads packets until the count or the time
/// is reached, writes the pcap-ng file. Returns the packets written.
fn capture(c: &mut Client, a: &CaptureArgs) -> Result<usize, ClientError> {
    c.call(Op::CaptureStart(proto::CaptureStart {
        drops: a.drops,
        port: a.port.clone(),
        count: Some(a.count),
        sample: Some(a.sample),
    }))?;
    let what = if a.drops {
        "drops".to_string()
    } else {
        format!("port {}", a.port.as_deref().unwrap_or(""))
    };
    let mut w = PcapNg::new(&format!("vrouterd capture of {what}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(a.seconds);
    let mut n = 0usize;
    let mut lost = 0;
    loop {
        let done = std::time::Instant::now() >= deadline;
        let v = if done {
            c.call(Op::CaptureStop)?
        } else {
            c.call(Op::CaptureRead)?
        };
        lost = v["lost"].as_u64().unwrap_or(lost);
        for p in v["packets"].as_array().into_iter().flatten() {
            let data = parse_hex(p["data"].as_str().unwrap_or(""));
            let reason = p["reason"].as_str().unwrap_or("");
            let dir = p["direction"].as_str().unwrap_or("");
            let comment = if reason.is_empty() {
                format!("{dir} on port {}", p["port"].as_str().unwrap_or(""))
            } else {
                format!(
                    "drop: {reason} (rx port {})",
                    p["port"].as_str().unwrap_or("")
                )
            };
            if a.drops {
                println!("{:>5}  {reason}", n + 1);
            }
            w.packet(
                p["time_ns"].as_u64().unwrap_or(0),
                p["len"].as_u64().unwrap_or(data.len() as u64) as u32,
                &data,
                match dir {
                    "rx" | "drop" => Some(true),
                    "tx" => Some(false),
                    _ => None,
                },
                &comment,
            );
            n += 1;
        }
        if done || !v["armed"].as_bool().unwrap_or(false) {
            if !done {
                c.call(Op::CaptureStop)?;
            }
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::write(&a.write, &w.0).map_err(|source| ClientError::Io {
        path: a.write.display().to_string(),
        source,
    })?;
    eprintln!(
        "vrouterctl: {n} packets written to {}{}",
        a.write.display(),
        if lost > 0 {
            format!(" ({lost} lost: capture queue full)")
        } else {
            String::new()
        }
    );
    Ok(n)
}

fn fail(e: ClientError) -> ExitCode {
    match e {
        ClientError::Api(e) => {
            eprintln!("vrouterctl: {}: {}", e.code, e.message);
            ExitCode::from(1)
        }
        other => {
            eprintln!("vrouterctl: {other}");
            ExitCode::from(3)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let mut c = match Client::connect(&cli.socket, "vrouterctl") {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Cmd::Raw { request } = &cli.cmd {
        let mut v: Value = match serde_json::from_str(request) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("vrouterctl: raw: {e}");
                return ExitCode::from(2);
            }
        };
        v["id"] = Value::from(999_999u64);
        if let Err(e) = c.send_raw(&v.to_string()) {
            return fail(e);
        }
        return match c.read_line() {
            Ok(v) => {
                println!("{v}");
                if v.get("error").is_some() {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => fail(e),
        };
    }
    if let Cmd::Capture(a) = &cli.cmd {
        return match capture(&mut c, a) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    let events = matches!(cli.cmd, Cmd::Events { .. });
    let op = match op_of(cli.cmd) {
        Ok(op) => op,
        Err(e) => {
            eprintln!("vrouterctl: {e}");
            return ExitCode::from(2);
        }
    };
    let shown = op.clone();
    match c.call(op) {
        Ok(v) => {
            if events {
                if let Err(e) = c.set_read_timeout(None) {
                    return fail(e);
                }
                loop {
                    match c.next_event() {
                        Ok(e) if json => println!("{e}"),
                        Ok(e) => print_event(&e),
                        Err(e) => return fail(e),
                    }
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print(&shown, &v);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

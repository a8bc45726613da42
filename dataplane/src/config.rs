//! vrouterd's TOML configuration: the file format, and validation that
//! refuses a bad file with the file, the key and the reason.
//!
//! Parsing (serde) rejects unknown keys and wrong types; `validate` then
//! checks references and values and returns every problem it finds, each as
//! `file: key: reason`. Nothing here touches the data path: `control::Router`
//! turns a valid `Config` into tables.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vrouter_wire::MacAddr;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// All problems found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub dataplane: DataplaneCfg,
    #[serde(default, rename = "port")]
    pub ports: Vec<PortCfg>,
    #[serde(default, rename = "bridge")]
    pub bridges: Vec<BridgeCfg>,
    #[serde(default, rename = "vrf")]
    pub vrfs: Vec<VrfCfg>,
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<IfaceCfg>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteCfg>,
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<NeighborCfg>,
    #[serde(default, rename = "static-mac")]
    pub static_macs: Vec<StaticMacCfg>,
    #[serde(default, rename = "vtep")]
    pub vteps: Vec<VtepCfg>,
    #[serde(default, rename = "vni")]
    pub vnis: Vec<VniCfg>,
    #[serde(default)]
    pub dpdk: DpdkCfg,
    #[serde(default)]
    pub control: ControlCfg,
    #[serde(default)]
    pub metrics: MetricsCfg,
    #[serde(default)]
    pub conntrack: ConntrackCfg,
    #[serde(default)]
    pub services: ServicesCfg,
    /// Static services: the control-socket object's fields.
    #[serde(default, rename = "service")]
    pub static_services: Vec<vrouter_control::proto::Service>,
    /// Static NetworkPolicies: the control-socket object's fields.
    #[serde(default, rename = "policy")]
    pub static_policies: Vec<vrouter_control::proto::Policy>,
}

/// `[conntrack]`: the flow table of services and NetworkPolicy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConntrackCfg {
    /// Flows in all, split evenly between workers (preallocated at start).
    pub max_flows: usize,
    /// IPv6 flows in all (their own table); 0 = a quarter of `max-flows`.
    pub max_flows_ip6: usize,
    /// Flows one pod interface may hold per worker; 0 = no quota.
    pub pod_quota: u32,
    pub tcp_syn_timeout_s: u32,
    pub tcp_established_timeout_s: u32,
    pub tcp_closing_timeout_s: u32,
    pub tcp_closed_timeout_s: u32,
    pub udp_timeout_s: u32,
    pub udp_stream_timeout_s: u32,
    pub icmp_timeout_s: u32,
}

impl Default for ConntrackCfg {
    fn default() -> Self {
        let t = crate::conntrack::Timeouts::default();
        let s = crate::service::Settings::default();
        ConntrackCfg {
            max_flows: s.max_flows,
            max_flows_ip6: 0,
            pod_quota: s.pod_quota,
            tcp_syn_timeout_s: t.tcp_syn,
            tcp_established_timeout_s: t.tcp_established,
            tcp_closing_timeout_s: t.tcp_closing,
            tcp_closed_timeout_s: t.tcp_closed,
            udp_timeout_s: t.udp,
            udp_stream_timeout_s: t.udp_stream,
            icmp_timeout_s: t.icmp,
        }
    }
}

/// `[services]`: load-balancing parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServicesCfg {
    /// Maglev table size per service (a prime).
    pub maglev_table_size: u32,
    /// Source ports SNAT (NodePort to a remote backend, hairpin) uses.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
}

impl Default for ServicesCfg {
    fn default() -> Self {
        let s = crate::service::Settings::default();
        ServicesCfg {
            maglev_table_size: s.maglev_size,
            snat_port_min: s.snat_ports.0,
            snat_port_max: s.snat_ports.1,
        }
    }
}

impl Config {
    /// The `[conntrack]` and `[services]` settings as the data path uses them.
    pub fn service_settings(&self) -> crate::service::Settings {
        let c = &self.conntrack;
        crate::service::Settings {
            max_flows: c.max_flows,
            max_flows_ip6: if c.max_flows_ip6 == 0 {
                c.max_flows / 4
            } else {
                c.max_flows_ip6
            },
            pod_quota: c.pod_quota,
            timeouts: crate::conntrack::Timeouts {
                tcp_syn: c.tcp_syn_timeout_s,
                tcp_established: c.tcp_established_timeout_s,
                tcp_closing: c.tcp_closing_timeout_s,
                tcp_closed: c.tcp_closed_timeout_s,
                udp: c.udp_timeout_s,
                udp_stream: c.udp_stream_timeout_s,
                icmp: c.icmp_timeout_s,
            },
            maglev_size: self.services.maglev_table_size,
            snat_ports: (self.services.snat_port_min, self.services.snat_port_max),
        }
    }
}

/// `[metrics]`: the Prometheus text endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsCfg {
    pub enabled: bool,
    /// `address:port` to listen on (loopback by default).
    pub listen: String,
}

impl Default for MetricsCfg {
    fn default() -> Self {
        MetricsCfg {
            enabled: true,
            listen: "127.0.0.1:9469".to_string(),
        }
    }
}

/// `[[vtep]]`: a local VXLAN tunnel endpoint on the underlay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VtepCfg {
    pub name: String,
    /// The local (outer source) address: an IPv4 or IPv6 address of a
    /// routed interface, whose VRF is the underlay.
    pub local: String,
    #[serde(default = "vxlan_port")]
    pub udp_port: u16,
    /// Outer TTL.
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// Outer DSCP: `"copy"` (from the inner IP header) or a number 0..=63.
    #[serde(default)]
    pub dscp: DscpCfg,
    /// Overlay MTU (largest inner IP packet); default: the underlay
    /// interface's MTU minus 50 bytes of encapsulation.
    pub inner_mtu: Option<u16>,
    /// UDP source port range, picked by the inner flow hash.
    #[serde(default = "sport_min")]
    pub source_port_min: u16,
    #[serde(default = "sport_max")]
    pub source_port_max: u16,
}

fn vxlan_port() -> u16 {
    vrouter_wire::vxlan::DEFAULT_PORT
}

fn default_ttl() -> u8 {
    64
}

fn sport_min() -> u16 {
    49152
}

fn sport_max() -> u16 {
    65535
}

/// `dscp = "copy"` or `dscp = 46`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DscpCfg {
    Fixed(u8),
    Mode(DscpMode),
}

/// The named outer DSCP behaviours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DscpMode {
    Copy,
}

impl Default for DscpCfg {
    fn default() -> Self {
        DscpCfg::Mode(DscpMode::Copy)
    }
}

/// `[[vni]]`: a VNI of a VTEP, bound to a bridge domain (L2 overlay) or a
/// VRF (L3 overlay).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VniCfg {
    pub vni: u32,
    pub vtep: String,
    /// L2 overlay: the bridge domain stretched over this VNI.
    pub bridge: Option<String>,
    /// L3 overlay: inner packets are routed in this VRF.
    pub vrf: Option<String>,
    /// L2: remote VTEPs that get a copy of broadcast, multicast and unknown
    /// unicast frames (head-end replication).
    #[serde(default)]
    pub flood: Vec<String>,
    /// More remote VTEPs accepted as sources (no flooding to them).
    #[serde(default)]
    pub remotes: Vec<String>,
    /// L2: static remote MACs.
    #[serde(default)]
    pub remote_macs: Vec<RemoteMacCfg>,
    /// L3: routes to other nodes' pod CIDRs.
    #[serde(default)]
    pub routes: Vec<OverlayRouteCfg>,
    /// L3: our inner MAC on this VNI (what remote nodes send to); default
    /// `02:76:78:` + the VNI.
    pub mac: Option<String>,
    /// L2: answer ARP requests for remote MACs with an `ip` locally.
    #[serde(default = "yes")]
    pub arp_suppression: bool,
}

/// `remote-macs = [{ mac = "…", remote = "…" }]` of an L2 VNI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RemoteMacCfg {
    pub mac: String,
    /// The remote VTEP behind which the MAC lives.
    pub remote: String,
    /// The endpoint's IPv4 address (for ARP suppression).
    pub ip: Option<String>,
}

/// `routes = [{ prefix = "…", remote = "…", mac = "…" }]` of an L3 VNI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OverlayRouteCfg {
    /// The remote node's pod CIDR (IPv4 or IPv6).
    pub prefix: String,
    /// The remote node's VTEP address.
    pub remote: String,
    /// Inner destination MAC: the remote node's VXLAN device.
    pub mac: String,
}

/// `[control]`: the control socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ControlCfg {
    /// Socket path; empty disables the socket.
    pub socket: String,
    /// Uids allowed to connect (vrouterd's own uid always is).
    pub allowed_uids: Vec<u32>,
    /// Gids allowed to connect.
    pub allowed_gids: Vec<u32>,
    pub max_connections: usize,
    /// Socket a new vrouterd connects to for a hot restart (`--takeover`);
    /// empty: next to the control socket (`<name>.handover.sock`).
    pub handover_socket: String,
    /// Bytes of unread output a subscriber may have before its events are
    /// dropped (counted).
    pub event_backlog: usize,
}

impl Default for ControlCfg {
    fn default() -> Self {
        ControlCfg {
            socket: vrouter_control::proto::DEFAULT_SOCKET.to_string(),
            allowed_uids: vec![0],
            allowed_gids: Vec::new(),
            max_connections: 64,
            handover_socket: String::new(),
            event_backlog: 1 << 20,
        }
    }
}

/// `[dpdk]`: EAL settings for DPDK ports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DpdkCfg {
    /// Extra EAL arguments. Without free hugepages on a mounted hugetlbfs
    /// `--no-huge -m 256` is added; `--no-pci` unless a port names a PCI
    /// device.
    pub eal_args: Vec<String>,
    /// RX and TX descriptors per queue.
    pub rx_desc: Option<u16>,
    pub tx_desc: Option<u16>,
}

/// How idle workers poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollMode {
    /// Spin on the ports (lowest latency, one core at 100%).
    #[default]
    Busy,
    /// Back off with short sleeps when idle (up to `idle-sleep-us`).
    Adaptive,
}

/// `[dataplane]`: workers and data-path parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataplaneCfg {
    /// Worker threads (one per core).
    pub workers: usize,
    /// CPU cores to pin workers to (one per worker); none = unpinned.
    pub cores: Vec<usize>,
    /// CPUs for every other vrouterd thread (control socket, metrics, EAL's
    /// threads). Absent: the CPUs it may run on minus the worker `cores`;
    /// `[]`: not pinned.
    pub control_cores: Option<Vec<usize>>,
    /// Frames in each worker's buffer pool.
    pub frames: u32,
    pub poll: PollMode,
    pub idle_sleep_us: u64,
    /// ICMP errors per second per worker, and burst.
    pub icmp_rate: u32,
    pub icmp_burst: u32,
    /// Packets a worker holds while resolving neighbours.
    pub glean_hold: u16,
    pub glean_timeout_ms: u64,
    pub glean_retry_ms: u64,
    /// Dynamic neighbours per interface.
    pub max_neighbors: usize,
    /// Seconds before a learned neighbour not heard from is removed; 0 = never.
    pub neighbor_age: u32,
}

impl Default for DataplaneCfg {
    fn default() -> Self {
        DataplaneCfg {
            workers: 1,
            cores: Vec::new(),
            control_cores: None,
            frames: 16384,
            poll: PollMode::Busy,
            idle_sleep_us: 100,
            icmp_rate: 1000,
            icmp_burst: 100,
            glean_hold: 256,
            glean_timeout_ms: 1000,
            glean_retry_ms: 250,
            max_neighbors: 4096,
            neighbor_age: 600,
        }
    }
}

/// Port drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// Capture files (offline).
    Pcap,
    /// In-memory test port (no I/O).
    Memory,
    /// AF_PACKET socket on a kernel interface (works everywhere).
    AfPacket,
    /// AF_XDP socket(s) on a kernel interface (zero-copy where the driver
    /// allows it, copy mode otherwise).
    AfXdp,
    /// A TAP device vrouterd creates: the node's own kernel stack.
    Tap,
    /// A DPDK device (PCI address or vdev); needs vrouterd built with the
    /// `dpdk` feature.
    Dpdk,
}

/// `[[port]]`: an I/O port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortCfg {
    pub name: String,
    pub driver: Driver,
    /// pcap: file to read frames from.
    pub rx_pcap: Option<PathBuf>,
    /// pcap: file to write transmitted frames to.
    pub tx_pcap: Option<PathBuf>,
    /// af-packet, af-xdp: the kernel interface (default: the port's name).
    pub interface: Option<String>,
    /// af-xdp: queues (one socket each), af-packet: sockets in a fanout
    /// group. Queue q goes to worker q modulo the worker count.
    #[serde(default = "one")]
    pub queues: u16,
    /// af-xdp: descriptors per ring (power of two).
    #[serde(default = "default_ring")]
    pub ring_size: u32,
    /// af-xdp: `auto` (zero-copy, else copy mode) or `required`.
    #[serde(default)]
    pub zero_copy: ZeroCopy,
    /// af-xdp: how the redirect program is attached: `auto` (native, else
    /// generic), `native` or `generic` (fail rather than fall back).
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// af-xdp: socket busy polling, in µs (`SO_BUSY_POLL` with
    /// `SO_PREFER_BUSY_POLL`); 0 (the default) leaves it off.
    #[serde(default)]
    pub busy_poll_us: u32,
    /// af-xdp: packets per busy-poll round (`SO_BUSY_POLL_BUDGET`).
    #[serde(default = "default_busy_poll_budget")]
    pub busy_poll_budget: u16,
    /// dpdk: a PCI address (`0000:01:00.0`) or a vdev string
    /// (`net_af_xdp0,iface=eth1`).
    pub device: Option<String>,
    pub mac: Option<String>,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

/// Whether an AF_XDP port may fall back to copy mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZeroCopy {
    #[default]
    Auto,
    Required,
}

/// How an AF_XDP port's redirect program is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// libxdp's choice: native (driver) XDP, generic (skb) as a fallback.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode: works on every interface, costs more per packet.
    Generic,
}

fn one() -> u16 {
    1
}

fn default_busy_poll_budget() -> u16 {
    64
}

fn default_ring() -> u32 {
    2048
}

fn default_mtu() -> u16 {
    1500
}

fn yes() -> bool {
    true
}

/// `[[bridge]]`: a bridge domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BridgeCfg {
    pub name: String,
    #[serde(default = "yes")]
    pub learning: bool,
    #[serde(default = "default_mac_limit")]
    pub mac_limit: u32,
    /// Seconds; 0 = learned MACs never age.
    #[serde(default = "default_mac_age")]
    pub mac_age: u32,
    #[serde(default = "yes")]
    pub flood_unknown: bool,
    /// The routed interface (BVI) of this domain.
    pub gateway: Option<GatewayCfg>,
}

fn default_mac_limit() -> u32 {
    8192
}

fn default_mac_age() -> u32 {
    300
}

/// `gateway = { … }` of a bridge: its BVI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GatewayCfg {
    #[serde(default)]
    pub addresses: Vec<String>,
    pub mac: Option<String>,
    pub vrf: Option<String>,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

/// `[[vrf]]`: a routing table besides `default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VrfCfg {
    pub name: String,
}

/// `[[interface]]`: a port, or one VLAN of it, bridged or routed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IfaceCfg {
    pub name: String,
    /// The port; defaults to the interface's name.
    pub port: Option<String>,
    pub vlan: Option<u16>,
    /// Bridge domain this interface is a member of.
    pub bridge: Option<String>,
    #[serde(default)]
    pub split_horizon_group: u8,
    /// VRF of a routed interface (default `default`).
    pub vrf: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    pub mac: Option<String>,
    pub mtu: Option<u16>,
}

/// What a route does when it has no gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteAction {
    /// Drop silently.
    Drop,
    /// Drop and send ICMP unreachable.
    Unreachable,
}

/// `[[route]]`: a static route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteCfg {
    pub vrf: Option<String>,
    pub prefix: String,
    /// Gateways; more than one makes an ECMP group.
    #[serde(default)]
    pub via: Vec<String>,
    /// Output interface (required for link-local gateways).
    pub interface: Option<String>,
    pub action: Option<RouteAction>,
}

/// `[[neighbor]]`: a static ARP/ND entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NeighborCfg {
    pub interface: String,
    pub ip: String,
    pub mac: String,
}

/// `[[static-mac]]`: a static MAC entry of a bridge domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticMacCfg {
    pub bridge: String,
    pub mac: String,
    pub interface: String,
}

/// Parses `a.b.c.d/len` or `x::y/len`. Host bits are allowed when
/// `host_bits_ok` (interface addresses), refused otherwise (route prefixes).
pub fn parse_prefix(s: &str, host_bits_ok: bool) -> Result<(IpAddr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` has no /prefix-length"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("`{a}` is not an IP address"))?;
    let len: u8 = l
        .parse()
        .map_err(|_| format!("`{l}` is not a prefix length"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("prefix length /{len} is longer than /{max}"));
    }
    if !host_bits_ok {
        let host = match addr {
            IpAddr::V4(v) => {
                u128::from(u32::from(v)) & (u128::from(u32::MAX) >> len.min(31) >> (len / 32))
            }
            IpAddr::V6(v) => u128::from(v) & (u128::MAX >> len.min(127) >> (len / 128)),
        };
        if host != 0 {
            return Err(format!("`{s}` has host bits set"));
        }
    }
    Ok((addr, len))
}

/// Parses a MAC address, refusing multicast and zero where a unicast
/// station address is required.
pub fn parse_mac(s: &str, unicast: bool) -> Result<MacAddr, String> {
    let m: MacAddr = s
        .parse()
        .map_err(|_| format!("`{s}` is not a MAC address"))?;
    if unicast && (!m.is_unicast() || m.is_zero()) {
        return Err(format!("`{s}` is not a unicast MAC address"));
    }
    Ok(m)
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                key: "-".into(),
                reason: e.to_string(),
            }])
        })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates `text`, naming `file` in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let key = e.span().map_or("-".to_string(), |s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            });
            ConfigErrors(vec![ConfigError {
                file: file.to_string(),
                key,
                reason: e.message().to_string(),
            }])
        })?;
        let errs = cfg.validate(file);
        if errs.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// The port an interface uses.
    pub fn iface_port(i: &IfaceCfg) -> &str {
        i.port.as_deref().unwrap_or(&i.name)
    }

    /// Every problem in the configuration (empty if valid).
    pub fn validate(&self, file: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |key: String, reason: String| {
            errs.push(ConfigError {
                file: file.to_string(),
                key,
                reason,
            });
        };
        if self.metrics.enabled && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            err(
                "metrics.listen".into(),
                format!(
                    "`{}` is not an address:port (e.g. 127.0.0.1:9469)",
                    self.metrics.listen
                ),
            );
        }
        if !crate::service::maglev::is_prime(self.services.maglev_table_size)
            || self.services.maglev_table_size > 1_000_003
        {
            err(
                "services.maglev-table-size".into(),
                format!(
                    "{} is not a prime up to 1000003 (e.g. 16381, 65537)",
                    self.services.maglev_table_size
                ),
            );
        }
        if self.services.snat_port_min == 0
            || self.services.snat_port_min > self.services.snat_port_max
        {
            err(
                "services.snat-port-min".into(),
                "snat-port-min must be 1..=snat-port-max".into(),
            );
        }
        if self.conntrack.max_flows < 16 || self.conntrack.max_flows > 1 << 28 {
            err(
                "conntrack.max-flows".into(),
                format!(
                    "{} is out of range 16..=268435456",
                    self.conntrack.max_flows
                ),
            );
        }
        let d = &self.dataplane;
        if d.workers == 0 || d.workers > 64 {
            err(
                "dataplane.workers".into(),
                format!("{} is out of range 1..=64", d.workers),
            );
        }
        if !d.cores.is_empty() && d.cores.len() != d.workers {
            err(
                "dataplane.cores".into(),
                format!("{} cores listed for {} workers", d.cores.len(), d.workers),
            );
        }
        if let Some(c) = d
            .control_cores
            .as_ref()
            .and_then(|cs| cs.iter().find(|&&c| c >= 1024))
        {
            err(
                "dataplane.control-cores".into(),
                format!("cpu {c} is out of range 0..1024"),
            );
        }
        if d.frames < 1024 || d.frames > 1 << 22 {
            err(
                "dataplane.frames".into(),
                format!("{} is out of range 1024..=4194304", d.frames),
            );
        }
        if d.icmp_rate == 0 && d.icmp_burst != 0 {
            err(
                "dataplane.icmp-burst".into(),
                "must be 0 when icmp-rate is 0".into(),
            );
        }
        if d.glean_hold as usize > crate::ip::glean::MAX_HELD {
            err(
                "dataplane.glean-hold".into(),
                format!("at most {}", crate::ip::glean::MAX_HELD),
            );
        }
        if d.max_neighbors == 0 {
            err(
                "dataplane.max-neighbors".into(),
                "must be at least 1".into(),
            );
        }
        let c = &self.control;
        if !(1..=4096).contains(&c.max_connections) {
            err(
                "control.max-connections".into(),
                format!("{} is out of range 1..=4096", c.max_connections),
            );
        }
        if !(4096..=1 << 30).contains(&c.event_backlog) {
            err(
                "control.event-backlog".into(),
                format!("{} is out of range 4096..=1073741824", c.event_backlog),
            );
        }

        let mut ports = HashSet::new();
        for (k, p) in self.ports.iter().enumerate() {
            let key = format!("port[{k}]");
            if p.name.is_empty() || !ports.insert(p.name.as_str()) {
                err(
                    format!("{key}.name"),
                    format!("`{}` is empty or used twice", p.name),
                );
            }
            if let Some(m) = &p.mac
                && let Err(e) = parse_mac(m, true)
            {
                err(format!("{key}.mac"), e);
            }
            if !(68..=9000).contains(&p.mtu) {
                err(
                    format!("{key}.mtu"),
                    format!("{} is out of range 68..=9000", p.mtu),
                );
            }
            match p.driver {
                Driver::Pcap if p.rx_pcap.is_none() && p.tx_pcap.is_none() => {
                    err(key.clone(), "a pcap port needs rx-pcap or tx-pcap".into())
                }
                Driver::Dpdk if p.device.is_none() => err(
                    key.clone(),
                    "a dpdk port needs `device` (PCI address or vdev string)".into(),
                ),
                Driver::Dpdk if !cfg!(feature = "dpdk") => err(
                    format!("{key}.driver"),
                    "this vrouterd was built without DPDK (cargo build --features dpdk)".into(),
                ),
                Driver::Memory
                | Driver::Pcap
                | Driver::AfPacket
                | Driver::AfXdp
                | Driver::Tap
                | Driver::Dpdk => {}
            }
            let kernel = matches!(p.driver, Driver::AfPacket | Driver::AfXdp | Driver::Tap);
            if !kernel && p.interface.is_some() {
                err(
                    format!("{key}.interface"),
                    "only kernel-interface drivers have one".into(),
                );
            }
            if p.queues == 0
                || p.queues > 64
                || (!matches!(p.driver, Driver::AfPacket | Driver::AfXdp) && p.queues != 1)
            {
                err(
                    format!("{key}.queues"),
                    format!("{} is out of range (1..=64; 1 for this driver)", p.queues),
                );
            }
            if !p.ring_size.is_power_of_two() || !(64..=16384).contains(&p.ring_size) {
                err(
                    format!("{key}.ring-size"),
                    format!("{} is not a power of two in 64..=16384", p.ring_size),
                );
            }
            if p.driver != Driver::AfXdp && (p.xdp_mode != XdpMode::Auto || p.busy_poll_us != 0) {
                err(
                    key.clone(),
                    "xdp-mode and busy-poll-us are for driver = \"af-xdp\"".into(),
                );
            }
            if p.busy_poll_us > 1_000_000 {
                err(
                    format!("{key}.busy-poll-us"),
                    format!("{} is out of range 0..=1000000", p.busy_poll_us),
                );
            }
            if p.busy_poll_budget == 0 || p.busy_poll_budget > 1024 {
                err(
                    format!("{key}.busy-poll-budget"),
                    format!("{} is out of range 1..=1024", p.busy_poll_budget),
                );
            }
            if p.driver != Driver::Pcap && (p.rx_pcap.is_some() || p.tx_pcap.is_some()) {
                err(key, "rx-pcap and tx-pcap are for driver = \"pcap\"".into());
            }
        }

        let mut vrfs: HashSet<&str> = HashSet::from(["default"]);
        for (k, v) in self.vrfs.iter().enumerate() {
            if v.name.is_empty() || !vrfs.insert(v.name.as_str()) {
                err(
                    format!("vrf[{k}].name"),
                    format!("`{}` is empty or used twice", v.name),
                );
            }
        }
        let vrf_ok = |v: &Option<String>| v.as_deref().is_none_or(|v| vrfs.contains(v));

        let mut bridges = HashSet::new();
        let mut names: HashSet<String> = HashSet::new();
        for (k, b) in self.bridges.iter().enumerate() {
            let key = format!("bridge[{k}]");
            if b.name.is_empty() || !bridges.insert(b.name.as_str()) {
                err(
                    format!("{key}.name"),
                    format!("`{}` is empty or used twice", b.name),
                );
            }
            if b.mac_limit == 0 || b.mac_limit > 1 << 22 {
                err(
                    format!("{key}.mac-limit"),
                    format!("{} is out of range 1..=4194304", b.mac_limit),
                );
            }
            if let Some(g) = &b.gateway {
                names.insert(format!("bvi-{}", b.name));
                if !vrf_ok(&g.vrf) {
                    err(
                        format!("{key}.gateway.vrf"),
                        format!("no VRF `{}`", g.vrf.as_deref().unwrap_or("")),
                    );
                }
                for (j, a) in g.addresses.iter().enumerate() {
                    if let Err(e) = parse_prefix(a, true) {
                        err(format!("{key}.gateway.addresses[{j}]"), e);
                    }
                }
                if let Some(m) = &g.mac
                    && let Err(e) = parse_mac(m, true)
                {
                    err(format!("{key}.gateway.mac"), e);
                }
                if !(68..=9000).contains(&g.mtu) {
                    err(
                        format!("{key}.gateway.mtu"),
                        format!("{} is out of range 68..=9000", g.mtu),
                    );
                }
            }
        }

        let mut port_vlans = HashSet::new();
        for (k, i) in self.interfaces.iter().enumerate() {
            let key = format!("interface[{k}]");
            if i.name.is_empty() || !names.insert(i.name.clone()) {
                err(
                    format!("{key}.name"),
                    format!("`{}` is empty or used twice", i.name),
                );
            }
            let port = Self::iface_port(i);
            if !ports.contains(port) {
                err(format!("{key}.port"), format!("no port `{port}`"));
            }
            let vid = i.vlan.unwrap_or(0);
            if i.vlan.is_some() && !(1..=4094).contains(&vid) {
                err(
                    format!("{key}.vlan"),
                    format!("{vid} is out of range 1..=4094"),
                );
            }
            if !port_vlans.insert((port, vid)) {
                err(
                    key.clone(),
                    format!("port `{port}` VLAN {vid} already has an interface"),
                );
            }
            match &i.bridge {
                Some(b) => {
                    if !bridges.contains(b.as_str()) {
                        err(format!("{key}.bridge"), format!("no bridge `{b}`"));
                    }
                    if !i.addresses.is_empty() || i.vrf.is_some() {
                        err(key.clone(), "a bridged interface has no addresses or VRF (put them on the bridge's gateway)".into());
                    }
                }
                None => {
                    if i.split_horizon_group != 0 {
                        err(
                            format!("{key}.split-horizon-group"),
                            "only bridged interfaces have one".into(),
                        );
                    }
                    if !vrf_ok(&i.vrf) {
                        err(
                            format!("{key}.vrf"),
                            format!("no VRF `{}`", i.vrf.as_deref().unwrap_or("")),
                        );
                    }
                }
            }
            for (j, a) in i.addresses.iter().enumerate() {
                if let Err(e) = parse_prefix(a, true) {
                    err(format!("{key}.addresses[{j}]"), e);
                }
            }
            if let Some(m) = &i.mac
                && let Err(e) = parse_mac(m, true)
            {
                err(format!("{key}.mac"), e);
            }
            if let Some(m) = i.mtu
                && !(68..=9000).contains(&m)
            {
                err(
                    format!("{key}.mtu"),
                    format!("{m} is out of range 68..=9000"),
                );
            }
        }
        let routed = |name: &str| {
            self.interfaces
                .iter()
                .any(|i| i.name == name && i.bridge.is_none())
                || self
                    .bridges
                    .iter()
                    .any(|b| b.gateway.is_some() && format!("bvi-{}", b.name) == name)
        };

        for (k, r) in self.routes.iter().enumerate() {
            let key = format!("route[{k}]");
            let family = match parse_prefix(&r.prefix, false) {
                Ok((a, _)) => Some(a.is_ipv4()),
                Err(e) => {
                    err(format!("{key}.prefix"), e);
                    None
                }
            };
            if !vrf_ok(&r.vrf) {
                err(
                    format!("{key}.vrf"),
                    format!("no VRF `{}`", r.vrf.as_deref().unwrap_or("")),
                );
            }
            match (r.action, r.via.is_empty(), &r.interface) {
                (Some(_), false, _) => err(
                    key.clone(),
                    "a route has either `via` or `action`, not both".into(),
                ),
                (None, true, None) => err(
                    key.clone(),
                    "a route needs `via`, `interface` or `action`".into(),
                ),
                _ => {}
            }
            for (j, v) in r.via.iter().enumerate() {
                match v.parse::<IpAddr>() {
                    Ok(a) if Some(a.is_ipv4()) != family && family.is_some() => err(
                        format!("{key}.via[{j}]"),
                        format!("`{v}` is not of the prefix's address family"),
                    ),
                    Ok(_) => {}
                    Err(_) => err(
                        format!("{key}.via[{j}]"),
                        format!("`{v}` is not an IP address"),
                    ),
                }
            }
            if let Some(ifn) = &r.interface
                && !routed(ifn)
            {
                err(
                    format!("{key}.interface"),
                    format!("no routed interface `{ifn}`"),
                );
            }
        }

        for (k, n) in self.neighbors.iter().enumerate() {
            let key = format!("neighbor[{k}]");
            if !routed(&n.interface) {
                err(
                    format!("{key}.interface"),
                    format!("no routed interface `{}`", n.interface),
                );
            }
            if n.ip.parse::<IpAddr>().is_err() {
                err(
                    format!("{key}.ip"),
                    format!("`{}` is not an IP address", n.ip),
                );
            }
            if let Err(e) = parse_mac(&n.mac, true) {
                err(format!("{key}.mac"), e);
            }
        }

        for (k, s) in self.static_macs.iter().enumerate() {
            let key = format!("static-mac[{k}]");
            if !bridges.contains(s.bridge.as_str()) {
                err(format!("{key}.bridge"), format!("no bridge `{}`", s.bridge));
            }
            if !self
                .interfaces
                .iter()
                .any(|i| i.name == s.interface && i.bridge.as_deref() == Some(&s.bridge))
            {
                err(
                    format!("{key}.interface"),
                    format!("`{}` is not a member of bridge `{}`", s.interface, s.bridge),
                );
            }
            if let Err(e) = parse_mac(&s.mac, true) {
                err(format!("{key}.mac"), e);
            }
        }
        self.validate_vxlan(&mut err, &bridges, &vrfs);
        errs
    }

    fn validate_vxlan(
        &self,
        err: &mut impl FnMut(String, String),
        bridges: &HashSet<&str>,
        vrfs: &HashSet<&str>,
    ) {
        let local_ok = |a: IpAddr| {
            self.interfaces.iter().any(|i| {
                i.bridge.is_none()
                    && i.addresses
                        .iter()
                        .any(|x| parse_prefix(x, true).is_ok_and(|(ip, _)| ip == a))
            })
        };
        let v4 = |s: &str| {
            s.parse::<std::net::Ipv4Addr>()
                .map_err(|_| format!("`{s}` is not an IPv4 address"))
        };
        // The underlay family of each VTEP, by name.
        let mut families: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
        let mut names = HashSet::new();
        for (k, v) in self.vteps.iter().enumerate() {
            let key = format!("vtep[{k}]");
            if v.name.is_empty() || !names.insert(v.name.as_str()) {
                err(
                    format!("{key}.name"),
                    format!("`{}` is empty or used twice", v.name),
                );
            }
            match v.local.parse::<IpAddr>() {
                Ok(a) if !local_ok(a) => err(
                    format!("{key}.local"),
                    format!("{a} is not an address of a routed interface"),
                ),
                Ok(a) if a.is_multicast() || a.is_unspecified() => err(
                    format!("{key}.local"),
                    format!("{a} is not a unicast address"),
                ),
                Ok(a) => {
                    families.insert(v.name.as_str(), a.is_ipv4());
                }
                Err(_) => err(
                    format!("{key}.local"),
                    format!("`{}` is not an IP address", v.local),
                ),
            }
            if v.udp_port == 0 {
                err(format!("{key}.udp-port"), "must not be 0".into());
            }
            if v.ttl == 0 {
                err(format!("{key}.ttl"), "must be at least 1".into());
            }
            if let DscpCfg::Fixed(d) = v.dscp
                && d > 63
            {
                err(
                    format!("{key}.dscp"),
                    format!("{d} is out of range 0..=63 (or \"copy\")"),
                );
            }
            if let Some(m) = v.inner_mtu
                && !(68..=9000).contains(&m)
            {
                err(
                    format!("{key}.inner-mtu"),
                    format!("{m} is out of range 68..=9000"),
                );
            }
            if v.source_port_min > v.source_port_max || v.source_port_min == 0 {
                err(
                    format!("{key}.source-port-min"),
                    format!(
                        "range {}..={} is empty or starts at 0",
                        v.source_port_min, v.source_port_max
                    ),
                );
            }
        }
        let mut seen = HashSet::new();
        let mut bound = HashSet::new();
        for (k, n) in self.vnis.iter().enumerate() {
            let key = format!("vni[{k}]");
            if n.vni == 0 || n.vni > vrouter_wire::vxlan::VNI_MAX {
                err(
                    format!("{key}.vni"),
                    format!("{} is out of range 1..=16777215", n.vni),
                );
            }
            if !names.contains(n.vtep.as_str()) {
                err(format!("{key}.vtep"), format!("no vtep `{}`", n.vtep));
            }
            if !seen.insert((n.vtep.as_str(), n.vni)) {
                err(
                    format!("{key}.vni"),
                    format!("VNI {} of vtep `{}` is configured twice", n.vni, n.vtep),
                );
            }
            match (&n.bridge, &n.vrf) {
                (Some(b), None) => {
                    if !bridges.contains(b.as_str()) {
                        err(format!("{key}.bridge"), format!("no bridge `{b}`"));
                    }
                    if !bound.insert(b.as_str()) {
                        err(
                            format!("{key}.bridge"),
                            format!("bridge `{b}` is already bound to a VNI"),
                        );
                    }
                    if !n.routes.is_empty() {
                        err(
                            format!("{key}.routes"),
                            "routes are for an L3 VNI (with `vrf`)".into(),
                        );
                    }
                    if n.mac.is_some() {
                        err(
                            format!("{key}.mac"),
                            "the inner MAC is for an L3 VNI (with `vrf`)".into(),
                        );
                    }
                    for (j, i) in self.interfaces.iter().enumerate() {
                        if i.bridge.as_deref() == Some(b.as_str())
                            && i.split_horizon_group == crate::vxlan::TUNNEL_SHG
                        {
                            err(
                                format!("interface[{j}].split-horizon-group"),
                                format!(
                                    "{} is reserved for the VXLAN tunnels of bridge `{b}`",
                                    crate::vxlan::TUNNEL_SHG
                                ),
                            );
                        }
                    }
                }
                (None, Some(v)) => {
                    if !vrfs.contains(v.as_str()) {
                        err(format!("{key}.vrf"), format!("no VRF `{v}`"));
                    }
                    if !n.flood.is_empty() || !n.remote_macs.is_empty() {
                        err(
                            key.clone(),
                            "flood and remote-macs are for an L2 VNI (with `bridge`)".into(),
                        );
                    }
                }
                _ => err(
                    key.clone(),
                    "a VNI is bound to exactly one of `bridge` (L2) or `vrf` (L3)".into(),
                ),
            }
            let family = families.get(n.vtep.as_str()).copied();
            let remote = |s: &str| match (s.parse::<IpAddr>(), family) {
                (Ok(a), Some(f)) if a.is_ipv4() != f => {
                    Err(format!("`{s}` is not of the VTEP's address family"))
                }
                (Ok(a), _) if a.is_multicast() || a.is_unspecified() => {
                    Err(format!("`{s}` is not a unicast address"))
                }
                (Ok(_), _) => Ok(()),
                (Err(_), _) => Err(format!("`{s}` is not an IP address")),
            };
            for (j, a) in n.flood.iter().enumerate() {
                if let Err(e) = remote(a) {
                    err(format!("{key}.flood[{j}]"), e);
                }
            }
            for (j, a) in n.remotes.iter().enumerate() {
                if let Err(e) = remote(a) {
                    err(format!("{key}.remotes[{j}]"), e);
                }
            }
            for (j, m) in n.remote_macs.iter().enumerate() {
                if let Err(e) = parse_mac(&m.mac, true) {
                    err(format!("{key}.remote-macs[{j}].mac"), e);
                }
                if let Err(e) = remote(&m.remote) {
                    err(format!("{key}.remote-macs[{j}].remote"), e);
                }
                if let Some(a) = &m.ip
                    && let Err(e) = v4(a)
                {
                    err(format!("{key}.remote-macs[{j}].ip"), e);
                }
            }
            for (j, r) in n.routes.iter().enumerate() {
                if let Err(e) = parse_prefix(&r.prefix, false) {
                    err(format!("{key}.routes[{j}].prefix"), e);
                }
                if let Err(e) = remote(&r.remote) {
                    err(format!("{key}.routes[{j}].remote"), e);
                }
                if let Err(e) = parse_mac(&r.mac, true) {
                    err(format!("{key}.routes[{j}].mac"), e);
                }
            }
            if let Some(m) = &n.mac
                && let Err(e) = parse_mac(m, true)
            {
                err(format!("{key}.mac"), e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Config::parse("t.toml", text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn examples_in_conf_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 2, "conf/ has the bridge and routed examples");
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let e = errors("[[port]]\nname = \"a\"\ndriver = \"memory\"\nspeed = 10\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.toml: line 4: unknown field `speed`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn control_cores_default_to_auto_and_are_checked() {
        let c = Config::parse("t.toml", "[dataplane]\ncores = [1]\n").unwrap();
        assert_eq!(c.dataplane.control_cores, None);
        let c = Config::parse("t.toml", "[dataplane]\ncontrol-cores = []\n").unwrap();
        assert_eq!(c.dataplane.control_cores, Some(vec![]));
        let e = errors("[dataplane]\ncontrol-cores = [0, 4096]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("dataplane.control-cores: cpu 4096"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn control_limits_are_checked() {
        let e = errors("[control]\nmax-connections = 0\nevent-backlog = 10\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("control.max-connections"), "{}", e[0]);
        assert!(e[1].contains("control.event-backlog"), "{}", e[1]);
        let c = Config::parse("t.toml", "[control]\nevent-backlog = 65536\n").unwrap();
        assert_eq!(c.control.event_backlog, 65536);
        assert_eq!(c.control.max_connections, 64);
    }

    #[test]
    fn af_xdp_io_knobs_are_checked() {
        let port = |driver: &str, extra: &str| {
            format!("[[port]]\nname = \"a\"\ndriver = \"{driver}\"\ninterface = \"x\"\n{extra}")
        };
        let ok = port(
            "af-xdp",
            "xdp-mode = \"generic\"\nbusy-poll-us = 50\nbusy-poll-budget = 256\n",
        );
        assert_eq!(errors(&ok), Vec::<String>::new());
        let c = Config::parse("t.toml", &ok).unwrap();
        assert_eq!(c.ports[0].xdp_mode, XdpMode::Generic);
        assert_eq!(c.ports[0].busy_poll_us, 50);
        let e = errors(&port("af-packet", "xdp-mode = \"native\"\n"));
        assert!(e[0].contains("are for driver = \"af-xdp\""), "{e:?}");
        let e = errors(&port("af-xdp", "busy-poll-budget = 0\n"));
        assert!(
            e[0].contains("busy-poll-budget: 0 is out of range"),
            "{e:?}"
        );
        let e = errors(&port("af-xdp", "xdp-mode = \"offload\"\n"));
        assert!(e[0].contains("unknown variant `offload`"), "{e:?}");
    }

    #[test]
    fn wrong_type_is_refused() {
        let e = errors("[dataplane]\nworkers = \"two\"\n");
        assert!(e[0].contains("invalid type"), "{}", e[0]);
    }

    #[test]
    fn references_and_values_are_checked() {
        let e = errors(
            r#"
[[port]]
name = "p0"
driver = "memory"
[[interface]]
name = "p0"
addresses = ["198.18.0.1/33"]
[[interface]]
name = "x"
port = "nope"
bridge = "b"
[[route]]
prefix = "198.18.1.1/24"
via = ["2001:db8::1"]
[[route]]
prefix = "198.19.0.0/16"
[[neighbor]]
interface = "p0"
ip = "198.18.0.2"
mac = "01:00:5e:00:00:01"
"#,
        );
        let want = [
            "t.toml: interface[0].addresses[0]: prefix length /33 is longer than /32",
            "t.toml: interface[1].port: no port `nope`",
            "t.toml: interface[1].bridge: no bridge `b`",
            "t.toml: route[0].prefix: `198.18.1.1/24` has host bits set",
            "t.toml: route[1]: a route needs `via`, `interface` or `action`",
            "t.toml: neighbor[0].mac: `01:00:5e:00:00:01` is not a unicast MAC address",
        ];
        for w in want {
            assert!(e.iter().any(|x| x == w), "missing {w:?} in {e:#?}");
        }
    }

    #[test]
    fn prefix_parsing() {
        assert_eq!(parse_prefix("0.0.0.0/0", false).unwrap().1, 0);
        assert!(parse_prefix("198.18.0.0/15", false).is_ok());
        assert!(parse_prefix("198.19.0.0/15", false).is_err());
        assert!(parse_prefix("198.18.0.1/32", false).is_ok());
        assert!(parse_prefix("2001:db8::/32", false).is_ok());
        assert!(parse_prefix("2001:db8::1/128", false).is_ok());
        assert!(parse_prefix("2001:db8::1/64", false).is_err());
        assert!(parse_prefix("2001:db8::1/64", true).is_ok());
        assert!(parse_prefix("::/0", false).is_ok());
        assert!(parse_prefix("x/1", true).is_err());
    }
}

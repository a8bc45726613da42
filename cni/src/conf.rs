//! The invocation: `CNI_*` environment and the network configuration on
//! stdin.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{CniError, Result, code};

/// The CNI versions this plugin speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];
/// The version of the results it writes.
pub const CNI_VERSION: &str = "1.0.0";
/// Default control socket of vrouterd.
pub const DEFAULT_SOCKET: &str = "/run/vrouter/vrouterd.sock";
/// Default IPAM directory (a subdirectory per network name).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/vrouter/ipam";

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

/// The `CNI_*` environment, checked.
#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// Empty when not given (allowed for DEL only).
    pub netns: String,
    pub ifname: String,
    /// `K8S_POD_NAMESPACE`, `K8S_POD_NAME` (else `cni` / the container id).
    pub pod_namespace: String,
    pub pod_name: String,
}

impl Env {
    /// Reads the environment from `vars`.
    pub fn parse(vars: &HashMap<String, String>) -> Result<Env> {
        let get = |k: &str| {
            vars.get(k)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let command = match get("CNI_COMMAND").as_str() {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "" => return Err(CniError::new(code::INVALID_ENV, "CNI_COMMAND is not set")),
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_COMMAND `{other}` is not ADD, DEL, CHECK or VERSION"),
                ));
            }
        };
        let mut env = Env {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            pod_namespace: String::new(),
            pod_name: String::new(),
        };
        if command == Command::Version {
            return Ok(env);
        }
        let bad = |m: String| Err(CniError::new(code::INVALID_ENV, m));
        if env.container_id.is_empty() {
            return bad("CNI_CONTAINERID is not set".into());
        }
        if !env
            .container_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return bad(format!(
                "CNI_CONTAINERID `{}` has characters other than letters, digits, `_`, `.`, `-`",
                env.container_id
            ));
        }
        if let Err(m) = check_ifname(&env.ifname) {
            return bad(format!("CNI_IFNAME: {m}"));
        }
        if env.netns.is_empty() && command != Command::Del {
            return bad("CNI_NETNS is not set".into());
        }
        for kv in get("CNI_ARGS").split(';').filter(|s| !s.is_empty()) {
            let Some((k, v)) = kv.split_once('=') else {
                return bad(format!("CNI_ARGS: `{kv}` is not KEY=VALUE"));
            };
            match k {
                "K8S_POD_NAMESPACE" => env.pod_namespace = v.to_string(),
                "K8S_POD_NAME" => env.pod_name = v.to_string(),
                _ => {} // IgnoreUnknown, K8S_POD_UID, … are not ours.
            }
        }
        if env.pod_namespace.is_empty() || env.pod_name.is_empty() {
            env.pod_namespace = "cni".into();
            env.pod_name = env.container_id.clone();
        }
        Ok(env)
    }
}

/// A Linux interface name: 1..=15 bytes, no `/`, `:`, whitespace, not `.`/`..`.
pub fn check_ifname(n: &str) -> std::result::Result<(), String> {
    if n.is_empty() {
        return Err("empty".into());
    }
    if n.len() > 15 {
        return Err(format!("`{n}` is longer than 15 bytes"));
    }
    if n == "." || n == ".." || n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!("`{n}` is not a valid interface name"));
    }
    Ok(())
}

/// The network configuration as written (runtime-added keys such as
/// `prevResult`, `runtimeConfig` or `args` are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: String,
    name: String,
    #[serde(rename = "type")]
    plugin: String,
    #[serde(default)]
    socket: Option<PathBuf>,
    bridge: String,
    ports: RawPorts,
    #[serde(default)]
    mtu: Option<u32>,
    ipam: RawIpam,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPorts {
    count: u32,
    interface: String,
    device: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIpam {
    #[serde(default, rename = "type")]
    _type: Option<String>,
    subnet: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    data_dir: Option<PathBuf>,
}

/// One port of the pool: vrouterd's interface and the kernel veth end
/// (in the node's namespace while free) whose peer vrouterd polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub index: u32,
    pub interface: String,
    pub device: String,
}

/// An IP subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: IpAddr,
    pub len: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/len` or `x::/len` with host bits zero.
    pub fn parse(s: &str) -> std::result::Result<Subnet, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not ADDRESS/LEN"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IP address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("`{l}` is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("prefix length {len} is over {max}"));
        }
        let n = Subnet { addr, len };
        if n.network() != to_u128(addr) {
            return Err(format!("`{s}` has host bits set"));
        }
        Ok(n)
    }

    /// Address bits of the family.
    pub fn bits(&self) -> u32 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    fn mask(&self) -> u128 {
        let host = self.bits() - u32::from(self.len);
        if host >= 128 {
            0
        } else {
            !((1u128 << host) - 1)
        }
    }

    /// The network address as a number.
    pub fn network(&self) -> u128 {
        let all = if self.bits() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        to_u128(self.addr) & self.mask() & all
    }

    /// The last address of the subnet as a number.
    pub fn last(&self) -> u128 {
        let host = self.bits() - u32::from(self.len);
        let span = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        self.network() | span
    }

    /// True if `ip` (same family) lies in the subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && {
            let v = to_u128(ip);
            v >= self.network() && v <= self.last()
        }
    }

    /// First and last address a pod may get (IPv4: no network or broadcast
    /// address; IPv6: no subnet-router anycast address).
    pub fn host_range(&self) -> Option<(u128, u128)> {
        let (first, last) = if self.bits() == 32 {
            (self.network() + 1, self.last().checked_sub(1)?)
        } else {
            (self.network() + 1, self.last())
        };
        (first <= last).then_some((first, last))
    }

    /// The address of family `self` for number `v`.
    pub fn ip(&self, v: u128) -> IpAddr {
        if self.bits() == 32 {
            IpAddr::from(std::net::Ipv4Addr::from(
                u32::try_from(v).unwrap_or(u32::MAX),
            ))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from(v))
        }
    }
}

/// An address as a number.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The network configuration, checked.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub socket: PathBuf,
    pub bridge: String,
    pub ports: Vec<Slot>,
    pub mtu: Option<u32>,
    pub subnet: Subnet,
    pub gateway: IpAddr,
    /// `<dataDir>/<name>`.
    pub data_dir: PathBuf,
}

/// Most ports a pool may have.
pub const MAX_PORTS: u32 = 4096;

impl NetConf {
    /// Decodes and checks the configuration read from stdin.
    pub fn parse(stdin: &str) -> Result<NetConf> {
        let v: serde_json::Value = serde_json::from_str(stdin).map_err(|e| {
            CniError::new(code::DECODE, "network configuration is not JSON").details(e)
        })?;
        let raw: RawConf = serde_json::from_value(v).map_err(|e| {
            CniError::new(code::INVALID_NETCONF, "bad network configuration").details(e)
        })?;
        if !SUPPORTED_VERSIONS.contains(&raw.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {} is not supported (supported: {})",
                    raw.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let bad = |m: String| CniError::new(code::INVALID_NETCONF, m);
        if raw.name.is_empty()
            || raw.name.len() > 128
            || !raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            || raw.name.starts_with('.')
        {
            return Err(bad(format!(
                "name `{}`: 1..=128 letters, digits, `_`, `.`, `-`, not starting with `.`",
                raw.name
            )));
        }
        if raw.plugin != "vrouter-cni" {
            return Err(bad(format!("type `{}` is not vrouter-cni", raw.plugin)));
        }
        if raw.bridge.is_empty() {
            return Err(bad("bridge: empty".into()));
        }
        let p = &raw.ports;
        if p.count == 0 || p.count > MAX_PORTS {
            return Err(bad(format!(
                "ports.count {} is not in 1..={MAX_PORTS}",
                p.count
            )));
        }
        for (k, t) in [("interface", &p.interface), ("device", &p.device)] {
            if t.matches("{}").count() != 1 {
                return Err(bad(format!(
                    "ports.{k} `{t}` must contain `{{}}` once (replaced by 0..count)"
                )));
            }
        }
        let ports: Vec<Slot> = (0..p.count)
            .map(|i| Slot {
                index: i,
                interface: p.interface.replace("{}", &i.to_string()),
                device: p.device.replace("{}", &i.to_string()),
            })
            .collect();
        for s in &ports {
            check_ifname(&s.device).map_err(|m| bad(format!("ports.device: {m}")))?;
        }
        if let Some(m) = raw.mtu
            && !(68..=9000).contains(&m)
        {
            return Err(bad(format!("mtu {m} is not in 68..=9000")));
        }
        if let Some(t) = &raw.ipam._type
            && t != "vrouter"
            && t != "host-local"
        {
            return Err(bad(format!(
                "ipam.type `{t}`: the plugin allocates addresses itself (omit it, or `vrouter`)"
            )));
        }
        let subnet =
            Subnet::parse(&raw.ipam.subnet).map_err(|m| bad(format!("ipam.subnet: {m}")))?;
        let Some((first, _)) = subnet.host_range() else {
            return Err(bad(format!(
                "ipam.subnet {}: no room for addresses",
                raw.ipam.subnet
            )));
        };
        let gateway = match &raw.ipam.gateway {
            Some(g) => {
                let ip: IpAddr = g
                    .parse()
                    .map_err(|_| bad(format!("ipam.gateway `{g}` is not an IP address")))?;
                if !subnet.contains(ip) || to_u128(ip) == subnet.network() {
                    return Err(bad(format!(
                        "ipam.gateway {g} is not a host address of {}",
                        raw.ipam.subnet
                    )));
                }
                ip
            }
            None => subnet.ip(first),
        };
        let data_dir = raw
            .ipam
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
            .join(&raw.name);
        Ok(NetConf {
            cni_version: raw.cni_version,
            name: raw.name,
            socket: raw.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            bridge: raw.bridge,
            ports,
            mtu: raw.mtu,
            subnet,
            gateway,
            data_dir,
        })
    }
}

/// The `cniVersion` of a configuration that may not parse (for errors).
pub fn version_of(stdin: &str) -> String {
    serde_json::from_str::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| CNI_VERSION.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"{"cniVersion":"1.0.0","name":"pods","type":"vrouter-cni",
        "bridge":"pods","ports":{"count":4,"interface":"pod{}","device":"vrp{}"},
        "ipam":{"subnet":"198.18.0.0/24","gateway":"198.18.0.1","dataDir":"/tmp/x"},
        "runtimeConfig":{},"prevResult":{}}"#;

    fn vars(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn good_config() {
        let c = NetConf::parse(GOOD).unwrap();
        assert_eq!(c.ports.len(), 4);
        assert_eq!(c.ports[3].interface, "pod3");
        assert_eq!(c.ports[3].device, "vrp3");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x/pods"));
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.gateway.to_string(), "198.18.0.1");
    }

    #[test]
    fn bad_configs_have_the_right_codes() {
        let e = |s: &str| NetConf::parse(s).unwrap_err().code;
        assert_eq!(e("{"), code::DECODE);
        assert_eq!(e(""), code::DECODE);
        assert_eq!(e("{}"), code::INVALID_NETCONF);
        assert_eq!(
            e(&GOOD.replace("1.0.0", "0.3.1")),
            code::INCOMPATIBLE_VERSION
        );
        for (from, to) in [
            ("198.18.0.0/24", "198.18.0.1/24"),
            ("198.18.0.0/24", "198.18.0.0/33"),
            ("198.18.0.0/24", "nonsense"),
            ("198.18.0.0/24", "198.18.0.0/32"),
            ("\"198.18.0.1\"", "\"198.18.1.1\""),
            ("\"count\":4", "\"count\":0"),
            ("pod{}", "pod"),
            ("vrp{}", "vrp{}{}"),
            ("vrp{}", "averyveryverylongname{}"),
            ("\"vrouter-cni\"", "\"bridge\""),
            ("\"name\":\"pods\"", "\"name\":\"../x\""),
            ("\"dataDir\"", "\"dataDri\""),
        ] {
            assert_eq!(e(&GOOD.replace(from, to)), code::INVALID_NETCONF, "{to}");
        }
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse("198.18.0.0/30").unwrap();
        assert_eq!(s.host_range().map(|(a, b)| b - a), Some(1));
        assert!(
            Subnet::parse("198.18.0.0/31")
                .unwrap()
                .host_range()
                .is_none()
        );
        let s = Subnet::parse("2001:db8::/126").unwrap();
        assert_eq!(s.ip(s.last()).to_string(), "2001:db8::3");
        assert!(s.contains("2001:db8::2".parse().unwrap()));
        assert!(!s.contains("198.18.0.1".parse().unwrap()));
        assert!(Subnet::parse("0.0.0.0/0").unwrap().host_range().is_some());
    }

    #[test]
    fn environment() {
        let base = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            ),
        ];
        let e = Env::parse(&vars(&base)).unwrap();
        assert_eq!(
            (e.pod_namespace.as_str(), e.pod_name.as_str()),
            ("default", "web-0")
        );
        let with = |k: &str, v: &str| {
            let mut m = vars(&base);
            m.insert(k.into(), v.into());
            Env::parse(&m).map(|_| ()).map_err(|e| e.code)
        };
        assert_eq!(with("CNI_COMMAND", "FOO"), Err(code::INVALID_ENV));
        assert_eq!(with("CNI_COMMAND", ""), Err(code::INVALID_ENV));
        assert_eq!(with("CNI_CONTAINERID", "a b"), Err(code::INVALID_ENV));
        assert_eq!(with("CNI_IFNAME", "eth0/x"), Err(code::INVALID_ENV));
        assert_eq!(
            with("CNI_IFNAME", "abcdefghijklmnop"),
            Err(code::INVALID_ENV)
        );
        assert_eq!(with("CNI_NETNS", ""), Err(code::INVALID_ENV));
        assert_eq!(with("CNI_ARGS", "junk"), Err(code::INVALID_ENV));
        let mut m = vars(&base);
        m.insert("CNI_COMMAND".into(), "DEL".into());
        m.insert("CNI_NETNS".into(), String::new());
        m.remove("CNI_ARGS");
        let e = Env::parse(&m).unwrap();
        assert_eq!(
            (e.pod_namespace.as_str(), e.pod_name.as_str()),
            ("cni", "abc-1")
        );
    }
}

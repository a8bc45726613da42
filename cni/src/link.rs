//! Kernel interface changes through iproute2 (`ip`) and util-linux
//! (`nsenter --net=`): no unsafe code, no namespace switching of our own
//! threads, and each command is logged and easy to audit. Arguments are
//! passed as an argv (never through a shell).

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::error::{CniError, Result, code};

/// Runs `ip args…`, in the namespace at `netns` when given.
fn ip(netns: Option<&str>, args: &[&str]) -> Result<String> {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={ns}")).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    c.args(args);
    tracing::debug!(?netns, ?args, "ip");
    let out = c.output().map_err(|e| {
        CniError::new(
            code::NETLINK,
            "cannot run ip/nsenter (iproute2, util-linux)",
        )
        .details(e)
    })?;
    if !out.status.success() {
        return Err(
            CniError::new(code::NETLINK, format!("`ip {}` failed", args.join(" ")))
                .details(String::from_utf8_lossy(&out.stderr).trim()),
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True if interface `dev` exists in our own namespace.
pub fn exists_here(dev: &str) -> bool {
    Path::new("/sys/class/net").join(dev).exists()
}

/// MAC address of `dev` in our own namespace.
pub fn mac_here(dev: &str) -> Result<String> {
    let p = Path::new("/sys/class/net").join(dev).join("address");
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| CniError::new(code::IO, format!("reading {}", p.display())).details(e))
}

/// Sets the MAC address of `dev` in our own namespace.
pub fn set_mac_here(dev: &str, mac: &str) -> Result<()> {
    ip(None, &["link", "set", "dev", dev, "address", mac]).map(|_| ())
}

/// True if the namespace file exists.
pub fn netns_exists(netns: &str) -> bool {
    !netns.is_empty() && Path::new(netns).exists()
}

/// Moves `dev` from our namespace into `netns`, renamed `ifname`.
pub fn move_in(dev: &str, netns: &str, ifname: &str) -> Result<()> {
    ip(
        None,
        &["link", "set", "dev", dev, "netns", netns, "name", ifname],
    )
    .map(drop)
}

/// Moves `ifname` out of `netns` back into our namespace, renamed `dev`,
/// with its addresses flushed and the link down.
pub fn move_out(netns: &str, ifname: &str, dev: &str) -> Result<()> {
    let ns = Some(netns);
    ip(ns, &["link", "set", "dev", ifname, "down"])?;
    ip(ns, &["addr", "flush", "dev", ifname])?;
    let pid = std::process::id().to_string();
    ip(
        ns,
        &["link", "set", "dev", ifname, "netns", &pid, "name", dev],
    )
    .map(drop)
}

/// True if `ifname` exists in `netns`.
pub fn exists_in(netns: &str, ifname: &str) -> bool {
    ip(Some(netns), &["link", "show", "dev", ifname]).is_ok()
}

/// Sets the pod's interface up with `addr/len`, `mtu`, and a default route
/// via `gateway`.
pub fn configure(
    netns: &str,
    ifname: &str,
    addr: IpAddr,
    len: u8,
    gateway: IpAddr,
    mtu: Option<u32>,
) -> Result<()> {
    let ns = Some(netns);
    if let Some(m) = mtu {
        ip(ns, &["link", "set", "dev", ifname, "mtu", &m.to_string()])?;
    }
    let cidr = format!("{addr}/{len}");
    let mut a = vec!["addr", "add", cidr.as_str(), "dev", ifname];
    if addr.is_ipv6() {
        a.push("nodad");
    }
    ip(ns, &a)?;
    ip(ns, &["link", "set", "dev", ifname, "up"])?;
    let fam = if addr.is_ipv6() { "-6" } else { "-4" };
    let gw = gateway.to_string();
    ip(
        ns,
        &[fam, "route", "add", "default", "via", &gw, "dev", ifname],
    )
    .map(drop)
}

/// What CHECK finds wrong with the pod's interface, if anything.
pub fn verify(
    netns: &str,
    ifname: &str,
    addr: IpAddr,
    len: u8,
    gateway: IpAddr,
) -> Result<Option<String>> {
    let ns = Some(netns);
    let Ok(out) = ip(ns, &["-j", "addr", "show", "dev", ifname]) else {
        return Ok(Some(format!("interface {ifname} is missing in {netns}")));
    };
    let v: Value = serde_json::from_str(&out)
        .map_err(|e| CniError::new(code::NETLINK, "ip -j addr: bad JSON").details(e))?;
    let link = v.get(0).cloned().unwrap_or(Value::Null);
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    if !up {
        return Ok(Some(format!("interface {ifname} is down")));
    }
    let want = addr.to_string();
    let has = link["addr_info"].as_array().is_some_and(|l| {
        l.iter()
            .any(|a| a["local"] == want.as_str() && a["prefixlen"] == u64::from(len))
    });
    if !has {
        return Ok(Some(format!(
            "interface {ifname} lacks address {addr}/{len}"
        )));
    }
    let fam = if addr.is_ipv6() { "-6" } else { "-4" };
    let out = ip(ns, &["-j", fam, "route", "show", "default"])?;
    let v: Value = serde_json::from_str(&out)
        .map_err(|e| CniError::new(code::NETLINK, "ip -j route: bad JSON").details(e))?;
    let gw = gateway.to_string();
    let route = v.as_array().is_some_and(|r| {
        r.iter()
            .any(|x| x["gateway"] == gw.as_str() && x["dev"] == ifname)
    });
    if !route {
        return Ok(Some(format!("no default route via {gateway} dev {ifname}")));
    }
    Ok(None)
}

//! The one naming convention that the CNI plugin (which wires a pod) and
//! the agent (which registers the same pod from the API) share, so that
//! both describe a pod to vrouterd identically (docs/cni.md, docs/agent.md).
//!
//! - A pod's MAC is [`pod_mac`] of its address: the plugin sets it on the
//!   pod's interface, the agent assumes it unless the Pod says otherwise
//!   (`vrouter.io/mac`).
//! - A pod's endpoint lives on the routed interface of the pod bridge,
//!   [`bridge_interface`] (`bvi-pods`), where vrouterd answers ARP/ND for
//!   it; the pod's own port is a pool port (`pod<i>`, [`pool_name`]).
//!
//! Pure functions; nothing here touches the system.

use std::net::IpAddr;

/// The bridge domain pods are bridged into, unless configured otherwise
/// (netconf `bridge`, agent `--pod-bridge`, `deploy/vrouter-pool.sh`).
pub const DEFAULT_POD_BRIDGE: &str = "pods";

/// The MAC of the pod with address `ip`: `02:58:` followed by the IPv4
/// address, or by the last four bytes of an IPv6 address (locally
/// administered, unicast; unique within a pod subnet of up to 2^32
/// addresses).
pub fn pod_mac(ip: IpAddr) -> String {
    let o = match ip {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => {
            let b = a.octets();
            [b[12], b[13], b[14], b[15]]
        }
    };
    format!("02:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// vrouterd's routed interface (BVI) of bridge domain `bridge`, where pod
/// endpoints are registered.
pub fn bridge_interface(bridge: &str) -> String {
    format!("bvi-{bridge}")
}

/// A pool name template (`pod{}`, `vrpp{}`) with `{}` replaced by `index`.
pub fn pool_name(template: &str, index: usize) -> String {
    template.replacen("{}", &index.to_string(), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_macs_follow_the_address() {
        assert_eq!(pod_mac("198.18.1.5".parse().unwrap()), "02:58:c6:12:01:05");
        assert_eq!(
            pod_mac("2001:db8::c612:105".parse().unwrap()),
            "02:58:c6:12:01:05"
        );
        assert_ne!(
            pod_mac("198.18.1.5".parse().unwrap()),
            pod_mac("198.18.1.6".parse().unwrap())
        );
    }

    #[test]
    fn interfaces_and_pool_names() {
        assert_eq!(bridge_interface(DEFAULT_POD_BRIDGE), "bvi-pods");
        assert_eq!(pool_name("pod{}", 7), "pod7");
        assert_eq!(pool_name("vrpp{}", 0), "vrpp0");
    }
}

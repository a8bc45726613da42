//! Control-socket objects of this feature: `service.*`, `policy.*`,
//! `show.services`, `show.policies`, `show.conntrack`, and what `sync`
//! needs to diff them.
//!
//! Validates the wire form (`vrouter_control::proto`) into the specs of
//! `ServiceState`, applies it to `Router::svc` and returns the op that undoes
//! it (for `batch`). Publishing is the caller's `Router::commit`.
//!
//! Must never: touch the data path directly.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{Value, json};
use vrouter_control::proto::{self, ApiError, Op, code};

use crate::control::Router;
use crate::graph::Counter;
use crate::service::{BackendSpec, PeerSpec, PolicySpec, RuleSpec, ServiceSpec};

/// The wire objects as last applied (undo and `show`), by (namespace, name).
#[derive(Debug, Default)]
pub struct Objects {
    pub services: BTreeMap<(String, String), proto::Service>,
    pub policies: BTreeMap<(String, String), proto::Policy>,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(code::INVALID, msg)
}

fn ip(obj: &str, s: &str) -> Result<IpAddr, ApiError> {
    s.parse::<IpAddr>()
        .map_err(|_| invalid(format!("{obj}: `{s}` is not an IP address")))
}

fn ipnet(obj: &str, s: &str) -> Result<(IpAddr, u8), ApiError> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr = ip(obj, a)?;
    let max = if addr.is_ipv6() { 128 } else { 32 };
    let len: u8 = match l {
        None => max,
        Some(l) => l
            .parse()
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| invalid(format!("{obj}: `{s}` is not an IP prefix")))?,
    };
    Ok((addr, len))
}

fn protocol(obj: &str, p: &Option<String>) -> Result<u8, ApiError> {
    match p.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("tcp") => Ok(6),
        Some("udp") => Ok(17),
        Some(other) => Err(invalid(format!(
            "{obj}: protocol `{other}` is not tcp or udp"
        ))),
    }
}

fn proto_name(p: u8) -> &'static str {
    if p == 17 { "udp" } else { "tcp" }
}

/// Validates a service.
pub fn service_spec(s: &proto::Service) -> Result<ServiceSpec, ApiError> {
    let obj = format!("service {}/{}", s.namespace, s.name);
    if s.port == 0 {
        return Err(invalid(format!("{obj}: port 0")));
    }
    let ips = s
        .ips
        .iter()
        .map(|a| ip(&obj, a))
        .collect::<Result<Vec<_>, _>>()?;
    if ips.is_empty() && s.node_port.unwrap_or(0) == 0 {
        return Err(invalid(format!("{obj}: no ips and no node_port")));
    }
    let mut backends = Vec::new();
    for b in &s.backends {
        if b.port == 0 {
            return Err(invalid(format!("{obj}: backend {} has port 0", b.ip)));
        }
        backends.push(BackendSpec {
            ip: ip(&obj, &b.ip)?,
            port: b.port,
            weight: b.weight.unwrap_or(1),
            local: b.local.unwrap_or(true),
        });
    }
    if backends.len() > usize::from(u16::MAX) {
        return Err(invalid(format!("{obj}: more than 65535 backends")));
    }
    Ok(ServiceSpec {
        ips,
        port: s.port,
        proto: protocol(&obj, &s.protocol)?,
        node_port: s.node_port.unwrap_or(0),
        local_only: s.external_local,
        affinity_s: s.affinity_timeout_s.unwrap_or(0),
        backends,
    })
}

fn rules(obj: &str, rs: &[proto::PolicyRule]) -> Result<Vec<RuleSpec>, ApiError> {
    rs.iter()
        .map(|r| {
            let mut peers = Vec::new();
            for p in &r.peers {
                if let Some(b) = &p.ip_block {
                    let cidr = ipnet(obj, b)?;
                    let except = p
                        .except
                        .iter()
                        .map(|e| ipnet(obj, e))
                        .collect::<Result<Vec<_>, _>>()?;
                    if except.iter().any(|e| e.0.is_ipv6() != cidr.0.is_ipv6()) {
                        return Err(invalid(format!(
                            "{obj}: `except` of {b} mixes IPv4 and IPv6"
                        )));
                    }
                    peers.push(PeerSpec::Block { cidr, except });
                } else if !p.except.is_empty() {
                    return Err(invalid(format!("{obj}: `except` without `ip_block`")));
                }
                if !p.ips.is_empty() {
                    peers.push(PeerSpec::Ips(
                        p.ips.iter().map(|a| ip(obj, a)).collect::<Result<_, _>>()?,
                    ));
                } else if p.ip_block.is_none() {
                    // A selector that resolved to no pod matches nothing.
                    peers.push(PeerSpec::Ips(Vec::new()));
                }
            }
            let mut ports = Vec::new();
            for p in &r.ports {
                let pr = protocol(obj, &p.protocol)?;
                let (lo, hi) = match (p.port, p.end_port) {
                    (None, None) => (0, u16::MAX),
                    (Some(a), None) => (a, a),
                    (Some(a), Some(b)) if b >= a => (a, b),
                    _ => {
                        return Err(invalid(format!(
                            "{obj}: end_port needs port and must not be below it"
                        )));
                    }
                };
                ports.push((pr, lo, hi));
            }
            Ok(RuleSpec {
                peers: (!r.peers.is_empty()).then_some(peers),
                ports,
            })
        })
        .collect()
}

/// Validates a policy.
pub fn policy_spec(p: &proto::Policy) -> Result<PolicySpec, ApiError> {
    let obj = format!("policy {}/{}", p.namespace, p.name);
    let mut ingress = p.types.is_empty();
    let mut egress = p.types.is_empty() && !p.egress.is_empty();
    for t in &p.types {
        match t.to_ascii_lowercase().as_str() {
            "ingress" => ingress = true,
            "egress" => egress = true,
            other => {
                return Err(invalid(format!(
                    "{obj}: type `{other}` is not ingress or egress"
                )));
            }
        }
    }
    Ok(PolicySpec {
        pods: p
            .pods
            .iter()
            .map(|a| ip(&obj, a))
            .collect::<Result<_, _>>()?,
        ingress: if ingress {
            Some(rules(&obj, &p.ingress)?)
        } else {
            None
        },
        egress: if egress {
            Some(rules(&obj, &p.egress)?)
        } else {
            None
        },
    })
}

fn key_name(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// Applies one of this feature's changes; returns the ops that undo it, or
/// `None` if `op` is not one of them.
pub fn apply(
    router: &mut Router,
    objs: &mut Objects,
    op: &Op,
) -> Option<Result<Vec<Op>, ApiError>> {
    Some(match op {
        Op::ServiceAdd(s) | Op::ServiceReplace(s) => (|| {
            let spec = service_spec(s)?;
            let key = (s.namespace.clone(), s.name.clone());
            let old = objs.services.get(&key).cloned();
            if old.is_some() && matches!(op, Op::ServiceAdd(_)) {
                return Err(ApiError::new(
                    code::EXISTS,
                    format!(
                        "service {}/{}: exists (use service.replace)",
                        s.namespace, s.name
                    ),
                ));
            }
            router
                .svc
                .set_service(&key_name(&s.namespace, &s.name), spec);
            objs.services.insert(key, s.clone());
            Ok(vec![match old {
                Some(o) => Op::ServiceReplace(o),
                None => Op::ServiceDel(proto::ObjectKey {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                }),
            }])
        })(),
        Op::ServiceDel(k) => match objs.services.remove(&(k.namespace.clone(), k.name.clone())) {
            Some(old) => {
                router.svc.del_service(&key_name(&k.namespace, &k.name));
                Ok(vec![Op::ServiceAdd(old)])
            }
            None => Err(ApiError::new(
                code::NOT_FOUND,
                format!("service {}/{}: no such service", k.namespace, k.name),
            )),
        },
        Op::PolicyAdd(p) | Op::PolicyReplace(p) => (|| {
            let spec = policy_spec(p)?;
            let key = (p.namespace.clone(), p.name.clone());
            let old = objs.policies.get(&key).cloned();
            if old.is_some() && matches!(op, Op::PolicyAdd(_)) {
                return Err(ApiError::new(
                    code::EXISTS,
                    format!(
                        "policy {}/{}: exists (use policy.replace)",
                        p.namespace, p.name
                    ),
                ));
            }
            router
                .svc
                .set_policy(&key_name(&p.namespace, &p.name), spec);
            objs.policies.insert(key, p.clone());
            Ok(vec![match old {
                Some(o) => Op::PolicyReplace(o),
                None => Op::PolicyDel(proto::ObjectKey {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                }),
            }])
        })(),
        Op::PolicyDel(k) => match objs.policies.remove(&(k.namespace.clone(), k.name.clone())) {
            Some(old) => {
                router.svc.del_policy(&key_name(&k.namespace, &k.name));
                Ok(vec![Op::PolicyAdd(old)])
            }
            None => Err(ApiError::new(
                code::NOT_FOUND,
                format!("policy {}/{}: no such policy", k.namespace, k.name),
            )),
        },
        _ => return None,
    })
}

/// `show.services`.
pub fn show_services(router: &Router) -> Value {
    json!(
        router
            .svc
            .services()
            .map(|(name, s, c)| {
                json!({
                    "name": name,
                    "ips": s.ips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "port": s.port,
                    "protocol": proto_name(s.proto),
                    "node_port": s.node_port,
                    "external_local": s.local_only,
                    "affinity_timeout_s": s.affinity_s,
                    "backends": s.backends.iter().map(|b| json!({
                        "ip": b.ip.to_string(), "port": b.port, "weight": b.weight, "local": b.local,
                    })).collect::<Vec<_>>(),
                    "endpoints": s.backends.iter().map(|b| if b.weight == 1 {
                        format!("{}:{}", b.ip, b.port)
                    } else {
                        format!("{}:{}*{}", b.ip, b.port, b.weight)
                    }).collect::<Vec<_>>(),
                    "maglev_slots": c.iter().map(|c| c.table.as_ref().map_or(0, |t| t.len())).sum::<usize>(),
                })
            })
            .collect::<Vec<_>>()
    )
}

/// `show.policies`: each policy with its selected pods, per-rule allowed
/// counters and denied counter.
pub fn show_policies(router: &Router) -> Value {
    let t = router.svc.policy_table();
    json!(
        router
            .svc
            .policies()
            .map(|(name, p)| {
                let info = t.policies.iter().find(|i| &i.name == name);
                let rules: Vec<Value> = info
                    .map(|i| {
                        i.rule_names
                            .iter()
                            .enumerate()
                            .map(|(k, r)| {
                                json!({
                                    "rule": r,
                                    "allowed": t.counters.get(i.first_counter as usize + k)
                                        .map_or(0, |c| c.load(Relaxed)),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let hits: Vec<String> = rules
                    .iter()
                    .map(|r| format!("{}={}", r["rule"].as_str().unwrap_or(""), r["allowed"]))
                    .collect();
                json!({
                    "name": name,
                    "pods": p.pods.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "rule_hits": hits,
                    "ingress": p.ingress.is_some(),
                    "egress": p.egress.is_some(),
                    "rules": rules,
                    "denied": info.map_or(0, |i| i.denied.load(Relaxed)),
                })
            })
            .collect::<Vec<_>>()
    )
}

/// `show.conntrack`: capacity (all workers), live flows (created − removed),
/// fill ratio and refusals.
pub fn show_conntrack(router: &Router) -> Value {
    let sum = |c: Counter| -> u64 {
        router
            .shared()
            .worker_links()
            .iter()
            .map(|w| w.stats.counter(c))
            .sum()
    };
    let s = &router.svc.settings;
    let capacity = (s.max_flows + s.max_flows_ip6) as u64;
    let flows = sum(Counter::CtFlowCreated).saturating_sub(sum(Counter::CtFlowRemoved));
    json!({
        "capacity": capacity,
        "capacity_ip6": s.max_flows_ip6,
        "flows": flows,
        "fill_ratio": if capacity == 0 { 0.0 } else { flows as f64 / capacity as f64 },
        "pod_quota": router.svc.settings.pod_quota,
        "created": sum(Counter::CtFlowCreated),
        "table_full": sum(Counter::CtTableFull),
        "pod_quota_refused": sum(Counter::CtPodQuota),
        "policy_denied": sum(Counter::PolicyDenied),
        "spoofed_source": sum(Counter::SpoofedSource),
        "fragments_dropped": sum(Counter::CtFragment),
    })
}

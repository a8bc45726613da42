//! The etcd backend (Flannel style): each node holds a subnet lease — a key
//! `<prefix>/subnets/<cidr with / as ->` attached to an etcd lease with a
//! TTL, holding its public IP and VTEP MAC — and renews it; every node
//! watches the prefix. A node that stops renewing loses its key when the
//! lease expires, and the watchers remove its routes.
//!
//! Keys live in etcd's own store, so restarting etcd (with its data
//! directory) loses nothing; the agent re-establishes its keep-alive, and
//! re-creates its key if its lease expired meanwhile.

use std::net::IpAddr;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use serde::{Deserialize, Serialize};

use crate::engine::{Shared, Signal};
use crate::model::NodeInfo;

/// What a lease holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetLease {
    pub node: String,
    pub pod_cidr: String,
    pub public_ip: IpAddr,
    pub vtep_mac: String,
}

/// Settings of the etcd backend.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Key prefix (`/vrouter.io/network`).
    pub prefix: String,
    /// This node's lease.
    pub lease: SubnetLease,
    /// Lease TTL in seconds (renewed every TTL/3).
    pub ttl_s: i64,
}

/// Errors of the etcd backend.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        source: etcd_client::Error,
    },
    #[error("etcd: lease value: {0}")]
    Encode(#[from] serde_json::Error),
}

fn subnet_key(prefix: &str, cidr: &str) -> String {
    format!("{prefix}/subnets/{}", cidr.replace('/', "-"))
}

impl SubnetLease {
    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            name: self.node.clone(),
            pod_cidrs: vec![self.pod_cidr.clone()],
            internal_ips: vec![self.public_ip],
            vtep_ip: Some(self.public_ip),
            vtep_mac: Some(self.vtep_mac.clone()),
        }
    }
}

fn parse(key: &[u8], value: &[u8]) -> Option<SubnetLease> {
    match serde_json::from_slice::<SubnetLease>(value) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "unreadable subnet lease ignored");
            None
        }
    }
}

async fn connect(cfg: &EtcdConfig) -> Result<Client, EtcdError> {
    Client::connect(&cfg.endpoints, None)
        .await
        .map_err(|source| EtcdError::Etcd {
            endpoints: cfg.endpoints.join(","),
            source,
        })
}

fn err(cfg: &EtcdConfig) -> impl Fn(etcd_client::Error) -> EtcdError + '_ {
    move |source| EtcdError::Etcd {
        endpoints: cfg.endpoints.join(","),
        source,
    }
}

/// Holds this node's lease: grants it, puts the key, keeps it alive; on
/// any failure (etcd restarting, the lease expired) starts over after a
/// back-off. Runs until the task is dropped.
pub async fn hold_lease(cfg: EtcdConfig) {
    let mut delay = Duration::from_millis(200);
    loop {
        match hold_once(&cfg).await {
            Ok(()) => delay = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "subnet lease lost; renewing");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn hold_once(cfg: &EtcdConfig) -> Result<(), EtcdError> {
    let mut c = connect(cfg).await?;
    let lease = c.lease_grant(cfg.ttl_s, None).await.map_err(err(cfg))?;
    let id = lease.id();
    let key = subnet_key(&cfg.prefix, &cfg.lease.pod_cidr);
    let value = serde_json::to_vec(&cfg.lease)?;
    c.put(key.clone(), value, Some(PutOptions::new().with_lease(id)))
        .await
        .map_err(err(cfg))?;
    tracing::info!(%key, lease = id, ttl_s = cfg.ttl_s, "subnet lease taken");
    let (mut keeper, mut responses) = c.lease_keep_alive(id).await.map_err(err(cfg))?;
    let every = Duration::from_millis((cfg.ttl_s.max(1) as u64) * 1000 / 3);
    loop {
        tokio::time::sleep(every).await;
        keeper.keep_alive().await.map_err(err(cfg))?;
        match responses.message().await.map_err(err(cfg))? {
            Some(r) if r.ttl() > 0 => {}
            _ => {
                // TTL 0: the lease is gone (expired while etcd was away).
                return Err(EtcdError::Etcd {
                    endpoints: cfg.endpoints.join(","),
                    source: etcd_client::Error::LeaseKeepAliveError("lease expired".into()),
                });
            }
        }
    }
}

/// Lists the subnet leases, replaces the cluster's nodes with them (full
/// resync), then follows the prefix; relists after any failure.
pub async fn watch_subnets(cfg: EtcdConfig, shared: Shared) {
    let mut delay = Duration::from_millis(200);
    loop {
        match watch_once(&cfg, &shared).await {
            Ok(()) => delay = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "etcd watch failed; relisting, keeping the last state");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn watch_once(cfg: &EtcdConfig, shared: &Shared) -> Result<(), EtcdError> {
    let mut c = connect(cfg).await?;
    let prefix = format!("{}/subnets/", cfg.prefix);
    let r = c
        .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(err(cfg))?;
    let rev = r.header().map(|h| h.revision()).unwrap_or(0);
    let nodes: std::collections::BTreeMap<String, NodeInfo> = r
        .kvs()
        .iter()
        .filter_map(|kv| parse(kv.key(), kv.value()))
        .map(|l| (l.node.clone(), l.node_info()))
        .collect();
    tracing::info!(
        leases = nodes.len(),
        revision = rev,
        "subnet leases listed; full resync"
    );
    shared.update(
        |c| {
            c.nodes = nodes;
            c.mark_all();
        },
        Signal::Resync,
    );
    let mut stream = c
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1)
                    .with_prev_key(),
            ),
        )
        .await
        .map_err(err(cfg))?;
    while let Some(resp) = stream.message().await.map_err(err(cfg))? {
        if resp.canceled() {
            // Compacted past our revision, or etcd went away: relist.
            return Ok(());
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            match ev.event_type() {
                EventType::Put => {
                    if let Some(l) = parse(kv.key(), kv.value()) {
                        tracing::info!(node = %l.node, cidr = %l.pod_cidr, "subnet lease");
                        shared.update(
                            |c| c.set_node(l.node.clone(), Some(l.node_info())),
                            Signal::Changed,
                        );
                    }
                }
                EventType::Delete => {
                    // The deleted key's value is in prev_kv.
                    let gone = ev.prev_kv().and_then(|p| parse(p.key(), p.value()));
                    let key = String::from_utf8_lossy(kv.key()).to_string();
                    tracing::info!(%key, "subnet lease expired or released");
                    shared.update(
                        |c| match gone {
                            Some(l) => c.set_node(l.node.clone(), None),
                            None => {
                                let cidr =
                                    key.rsplit('/').next().unwrap_or("").replacen('-', "/", 1);
                                c.nodes.retain(|_, n| !n.pod_cidrs.contains(&cidr));
                                c.dirty.nodes = true;
                            }
                        },
                        Signal::Changed,
                    );
                }
            }
        }
    }
    Ok(())
}

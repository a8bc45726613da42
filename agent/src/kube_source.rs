//! The Kubernetes API source: one kube-rs watcher per kind (Nodes, Pods,
//! Namespaces, Services, EndpointSlices, NetworkPolicies). Each (re)list —
//! at start, after a dropped watch, after 410 Gone — arrives as
//! `Init … InitDone`: the kind's map is replaced whole and a full resync
//! follows. The agent also publishes its own VTEP on its Node.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::path::Path;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::engine::{Shared, Signal};
use crate::model::{self, ANN_VTEP_IP, ANN_VTEP_MAC, Cluster};

/// Number of watched kinds (the engine waits for each to list once).
pub const KINDS: usize = 6;

/// Why the API source failed to start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kubeconfig {path}: {detail}")]
    Kubeconfig { path: String, detail: String },
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Builds a client from `--kubeconfig`, or in-cluster / the default
/// kubeconfig when none is given.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, SourceError> {
    let config = match kubeconfig {
        Some(p) => {
            let kc =
                kube::config::Kubeconfig::read_from(p).map_err(|e| SourceError::Kubeconfig {
                    path: p.display().to_string(),
                    detail: e.to_string(),
                })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| SourceError::Kubeconfig {
                    path: p.display().to_string(),
                    detail: e.to_string(),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| SourceError::Config(e.to_string()))?,
    };
    Ok(Client::try_from(config)?)
}

type Extract<K, V> = fn(&K) -> Option<(String, V)>;
type MapOf<V> = fn(&mut Cluster) -> &mut BTreeMap<String, V>;
type SetOf<V> = fn(&mut Cluster, String, Option<V>);

fn obj_key<K: Resource>(o: &K) -> String {
    match o.namespace() {
        Some(ns) => format!("{ns}/{}", o.name_any()),
        None => o.name_any(),
    }
}

/// Runs one watcher until the task is dropped.
async fn watch_kind<K, V>(
    api: Api<K>,
    kind: &'static str,
    shared: Shared,
    extract: Extract<K, V>,
    map: MapOf<V>,
    set: SetOf<V>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    V: Send + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut buffer: Option<BTreeMap<String, V>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => {
                tracing::info!(kind, "listing");
                buffer = Some(BTreeMap::new());
            }
            Ok(Event::InitApply(o)) => {
                if let (Some(b), Some((k, v))) = (buffer.as_mut(), extract(&o)) {
                    b.insert(k, v);
                }
            }
            Ok(Event::InitDone) => {
                let b = buffer.take().unwrap_or_default();
                tracing::info!(kind, objects = b.len(), "listed; full resync");
                shared.update(
                    |c| {
                        *map(c) = b;
                        c.mark_all();
                    },
                    Signal::Resync,
                );
            }
            Ok(Event::Apply(o)) => {
                let key = obj_key(&o);
                let v = extract(&o);
                shared.update(
                    |c| match v {
                        Some((k, v)) => set(c, k, Some(v)),
                        None => set(c, key, None),
                    },
                    Signal::Changed,
                );
            }
            Ok(Event::Delete(o)) => {
                let key = obj_key(&o);
                shared.update(|c| set(c, key, None), Signal::Changed);
            }
            Err(e) => {
                // The watcher relists (410 Gone included) after back-off;
                // the InitDone that follows triggers the resync.
                tracing::warn!(kind, error = %e, "watch failed; retrying with back-off, keeping the last state");
            }
        }
    }
}

/// Starts the six watchers on the current tokio runtime.
pub fn spawn_watchers(client: Client, shared: &Shared) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(watch_kind(
            Api::<Node>::all(client.clone()),
            "nodes",
            shared.clone(),
            |n| model::node_info(n).map(|i| (i.name.clone(), i)),
            |c| &mut c.nodes,
            Cluster::set_node,
        )),
        tokio::spawn(watch_kind(
            Api::<Pod>::all(client.clone()),
            "pods",
            shared.clone(),
            model::pod_info,
            |c| &mut c.pods,
            Cluster::set_pod,
        )),
        tokio::spawn(watch_kind(
            Api::<Namespace>::all(client.clone()),
            "namespaces",
            shared.clone(),
            model::namespace_info,
            |c| &mut c.namespaces,
            Cluster::set_namespace,
        )),
        tokio::spawn(watch_kind(
            Api::<Service>::all(client.clone()),
            "services",
            shared.clone(),
            model::service_info,
            |c| &mut c.services,
            Cluster::set_service,
        )),
        tokio::spawn(watch_kind(
            Api::<EndpointSlice>::all(client.clone()),
            "endpointslices",
            shared.clone(),
            model::slice_info,
            |c| &mut c.slices,
            Cluster::set_slice,
        )),
        tokio::spawn(watch_kind(
            Api::<NetworkPolicy>::all(client),
            "networkpolicies",
            shared.clone(),
            model::policy_info,
            |c| &mut c.policies,
            Cluster::set_policy,
        )),
    ]
}

/// Publishes this node's VTEP as annotations on its Node (a merge patch),
/// retrying with back-off until it succeeds.
pub async fn publish_vtep(client: Client, node: &str, ip: IpAddr, mac: &str) {
    let api = Api::<Node>::all(client);
    let patch = serde_json::json!({
        "metadata": {"annotations": {ANN_VTEP_IP: ip.to_string(), ANN_VTEP_MAC: mac}}
    });
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node, %ip, mac, "published the VTEP on the Node");
                return;
            }
            Err(e) => {
                tracing::warn!(node, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot annotate the Node with its VTEP");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

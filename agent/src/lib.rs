//! vrouter-agent: keeps vrouterd in step with the cluster.
//!
//! - [`model`]: the fields of Kubernetes objects the agent uses;
//! - [`translate`]: cluster → desired state per control-socket scope (pure);
//! - [`sync`]: one `sync` per changed scope over the control socket;
//! - [`engine`]: debouncing, retries with back-off, full resyncs;
//! - [`kube_source`]: kube-rs watchers feeding the engine;
//! - [`etcd_source`]: Flannel-style subnet leases in etcd (the other backend).
//!
//! See docs/agent.md.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod engine;
#[cfg(feature = "etcd")]
pub mod etcd_source;
pub mod kube_source;
pub mod model;
pub mod sync;
pub mod translate;

//! L2 bridging: bridge domains with MAC learning, aging, static entries,
//! per-domain MAC limits, flooding and split horizon.
//!
//! `mactable` is the shared table, `datapath` the nodes (`l2-input`,
//! `l2-flood`). Management (static entries, aging, flush) is done
//! by the control thread through the table's control-side methods.

pub mod datapath;
pub mod mactable;

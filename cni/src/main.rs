//! `vrouter-cni`: reads `CNI_*` from the environment and the network
//! configuration from stdin, writes the CNI result (or the CNI error
//! object) to stdout. Logs go to stderr (`VROUTER_CNI_LOG`, default
//! `info`), never to stdout.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VROUTER_CNI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    let mut stdin = String::new();
    if vars.get("CNI_COMMAND").map(String::as_str) != Some("VERSION")
        && let Err(e) = std::io::stdin().read_to_string(&mut stdin)
    {
        let err = vrouter_cni::CniError::new(vrouter_cni::code::IO, "reading stdin").details(e);
        println!("{}", err.to_json(vrouter_cni::conf::CNI_VERSION));
        return ExitCode::FAILURE;
    }
    let (out, ok) = vrouter_cni::run(&vars, &stdin);
    if !out.is_empty() && out != "null" {
        println!("{out}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! deploy/: the manifests parse and hold what vrouter needs
//! (scripts/check-deploy.py), and the example conflist is a configuration
//! the plugin itself accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn manifests_are_valid() {
    let has_yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_yaml {
        eprintln!("skipped: needs python3 with python3-yaml (scripts/deps.sh installs it)");
        return;
    }
    let out = Command::new("python3")
        .arg(root().join("scripts/check-deploy.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_conflist_is_accepted_by_the_plugin() {
    let text = std::fs::read_to_string(root().join("deploy/10-vrouter.conflist")).unwrap();
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    // What a runtime hands the plugin: its entry plus the list's name and version.
    let mut conf = list["plugins"][0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    let c = vrouter_cni::conf::NetConf::parse(&conf.to_string()).unwrap();
    assert_eq!(c.ports.len(), 64);
    assert_eq!(c.ports[0].device, "vrpp0");
    assert_eq!(c.data_dir, Path::new("/var/lib/vrouter/ipam/vrouter"));
}

//! ADD, DEL, CHECK and VERSION.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use vrouter_control::naming;
use vrouter_control::proto::info;
use vrouter_control::{
    Batch, BatchOp, Client, ClientError, Endpoint, EndpointKey, Op, StaticMac, code as api_code,
};

use crate::conf::{CNI_VERSION, Command, Env, NetConf, SUPPORTED_VERSIONS, Slot, version_of};
use crate::error::{CniError, Result, code};
use crate::ipam::{Allocation, LOCK_TIMEOUT, Store};
use crate::link;

/// Runs one invocation: the text for stdout, and whether it succeeded.
pub fn run(vars: &HashMap<String, String>, stdin: &str) -> (String, bool) {
    match dispatch(vars, stdin) {
        Ok(v) => (v.to_string(), true),
        Err(e) => {
            tracing::error!(code = e.code, error = %e, "failed");
            (e.to_json(&version_of(stdin)), false)
        }
    }
}

fn dispatch(vars: &HashMap<String, String>, stdin: &str) -> Result<Value> {
    let env = Env::parse(vars)?;
    if env.command == Command::Version {
        return Ok(json!({"cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS}));
    }
    let conf = NetConf::parse(stdin)?;
    tracing::info!(
        command = ?env.command,
        container = %env.container_id,
        ifname = %env.ifname,
        pod = %format!("{}/{}", env.pod_namespace, env.pod_name),
        network = %conf.name,
        "invoked"
    );
    match env.command {
        Command::Add => add(&env, &conf),
        Command::Del => del(&env, &conf).map(|()| Value::Null),
        Command::Check => check(&env, &conf).map(|()| Value::Null),
        Command::Version => Ok(Value::Null),
    }
}

fn control_err(conf: &NetConf, e: ClientError) -> CniError {
    CniError::new(
        code::CONTROL,
        format!("vrouterd control socket {}", conf.socket.display()),
    )
    .details(e)
}

fn connect(conf: &NetConf) -> Result<Client> {
    Client::connect(&conf.socket, "vrouter-cni").map_err(|e| control_err(conf, e))
}

fn add(env: &Env, conf: &NetConf) -> Result<Value> {
    if !link::netns_exists(&env.netns) {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("network namespace {} does not exist", env.netns),
        ));
    }
    let store = Store::lock(&conf.data_dir, LOCK_TIMEOUT)?;
    if let Some(a) = store.find(&env.container_id, &env.ifname)? {
        return Err(CniError::new(
            code::ALREADY_ADDED,
            format!(
                "container {} interface {} already has {} (DEL it first)",
                env.container_id, env.ifname, a.ip
            ),
        ));
    }
    if link::exists_in(&env.netns, &env.ifname) {
        return Err(CniError::new(
            code::ALREADY_ADDED,
            format!("interface {} already exists in {}", env.ifname, env.netns),
        ));
    }
    let mut client = connect(conf)?;
    let (slot, bvi) = free_port(conf, &store, &mut client)?;
    let ip = store.next_free(&conf.subnet, conf.gateway)?;
    // The shared convention (vrouter_control::naming): the agent assumes
    // this MAC for the pod too.
    let mac = naming::pod_mac(ip);
    let alloc = Allocation {
        ip,
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        port: slot.index,
        pod_namespace: env.pod_namespace.clone(),
        pod_name: env.pod_name.clone(),
        mac: mac.clone(),
        endpoint: bvi.is_some(),
    };
    store.put(&alloc)?;
    // From here on, a failure undoes what was done.
    let wired = (|| {
        link::set_mac_here(&slot.device, &mac)?;
        link::move_in(&slot.device, &env.netns, &env.ifname)?;
        link::configure(
            &env.netns,
            &env.ifname,
            ip,
            conf.subnet.len,
            conf.gateway,
            conf.mtu,
        )?;
        // The pod's MAC is pinned to its port (a frame from it elsewhere is
        // dropped); the endpoint (a static neighbour) lives on the bridge's
        // routed interface, where ARP/ND for the pod is answered.
        let mut ops = vec![BatchOp {
            op: Op::StaticMacAdd(StaticMac {
                bridge: conf.bridge.clone(),
                mac: mac.clone(),
                interface: slot.interface.clone(),
            }),
        }];
        if let Some(b) = &bvi {
            ops.push(BatchOp {
                op: Op::EndpointAdd(Endpoint {
                    namespace: env.pod_namespace.clone(),
                    name: env.pod_name.clone(),
                    node: String::new(),
                    ips: vec![ip.to_string()],
                    mac: mac.clone(),
                    interface: b.clone(),
                }),
            });
        }
        client
            .call(Op::Batch(Batch { ops }))
            .map_err(|e| control_err(conf, e))
    })();
    if let Err(e) = wired {
        if link::exists_in(&env.netns, &env.ifname)
            && let Err(u) = link::move_out(&env.netns, &env.ifname, &slot.device)
        {
            tracing::error!(error = %u, "rollback: moving the port back failed");
        }
        if let Err(u) = store.release(ip) {
            tracing::error!(error = %u, "rollback: releasing the address failed");
        }
        return Err(e);
    }
    tracing::info!(%ip, port = %slot.interface, device = %slot.device, "added");
    let dst = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    Ok(json!({
        "cniVersion": conf.cni_version,
        "interfaces": [{"name": env.ifname, "mac": mac, "sandbox": env.netns}],
        "ips": [{
            "address": format!("{ip}/{}", conf.subnet.len),
            "gateway": conf.gateway.to_string(),
            "interface": 0,
        }],
        "routes": [{"dst": dst, "gw": conf.gateway.to_string()}],
        "dns": {},
    }))
}

/// The first port of the pool that vrouterd bridges into `conf.bridge`,
/// whose device is here (not in a pod) and that no allocation holds; and
/// the bridge's routed interface (BVI), if it has one.
fn free_port(conf: &NetConf, store: &Store, client: &mut Client) -> Result<(Slot, Option<String>)> {
    let v = client
        .call(Op::ShowInterfaces)
        .map_err(|e| control_err(conf, e))?;
    let ifaces: Vec<info::Interface> = serde_json::from_value(v).map_err(|e| {
        CniError::new(code::CONTROL, "show.interfaces: unexpected answer").details(e)
    })?;
    let bridged: HashSet<&str> = ifaces
        .iter()
        .filter(|i| i.mode == "bridged" && i.bridge.as_deref() == Some(conf.bridge.as_str()))
        .map(|i| i.name.as_str())
        .collect();
    let bvi = ifaces
        .iter()
        .find(|i| i.mode == "bvi" && i.bridge.as_deref() == Some(conf.bridge.as_str()))
        .map(|i| i.name.clone());
    let held: HashSet<u32> = store.all()?.iter().map(|a| a.port).collect();
    let (mut in_bridge, mut present) = (0, 0);
    for s in &conf.ports {
        if !bridged.contains(s.interface.as_str()) {
            continue;
        }
        in_bridge += 1;
        if !link::exists_here(&s.device) {
            continue;
        }
        present += 1;
        if !held.contains(&s.index) {
            return Ok((s.clone(), bvi));
        }
    }
    Err(CniError::new(
        code::NO_FREE_PORT,
        format!(
            "no free port: {} in the pool, {in_bridge} of them members of bridge {} in vrouterd, \
             {present} with their device present, {} held by pods",
            conf.ports.len(),
            conf.bridge,
            held.len()
        ),
    ))
}

fn del(env: &Env, conf: &NetConf) -> Result<()> {
    let store = Store::lock(&conf.data_dir, LOCK_TIMEOUT)?;
    let Some(a) = store.find(&env.container_id, &env.ifname)? else {
        tracing::info!("nothing allocated: done");
        return Ok(());
    };
    if let Some(slot) = conf.ports.iter().find(|s| s.index == a.port) {
        if link::netns_exists(&env.netns) && link::exists_in(&env.netns, &env.ifname) {
            link::move_out(&env.netns, &env.ifname, &slot.device)?;
        } else if !link::exists_here(&slot.device) {
            tracing::warn!(
                device = %slot.device,
                port = %slot.interface,
                "the pod's namespace went away before DEL, taking the veth pair with it: \
                 this port stays out of the pool until it is provisioned again"
            );
        }
    }
    unregister(conf, &a);
    store.release(a.ip)?;
    tracing::info!(ip = %a.ip, "deleted");
    Ok(())
}

/// Removes the pod's static MAC and endpoint from vrouterd; what is
/// already gone is fine, and an unreachable vrouterd is logged only (DEL
/// must not fail forever while vrouterd restarts; a restarted vrouterd has
/// neither).
fn unregister(conf: &NetConf, a: &Allocation) {
    let mut c = match connect(conf) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot unregister the endpoint");
            return;
        }
    };
    let mut ops = Vec::new();
    if a.endpoint {
        ops.push(Op::EndpointDel(EndpointKey {
            namespace: a.pod_namespace.clone(),
            name: a.pod_name.clone(),
        }));
    }
    if let (Some(slot), false) = (
        conf.ports.iter().find(|s| s.index == a.port),
        a.mac.is_empty(),
    ) {
        ops.push(Op::StaticMacDel(StaticMac {
            bridge: conf.bridge.clone(),
            mac: a.mac.clone(),
            interface: slot.interface.clone(),
        }));
    }
    for op in ops {
        match c.call(op) {
            Ok(_) => {}
            Err(ClientError::Api(e)) if e.code == api_code::NOT_FOUND => {}
            Err(e) => tracing::warn!(error = %e, "unregistering from vrouterd"),
        }
    }
}

fn check(env: &Env, conf: &NetConf) -> Result<()> {
    let fail = |m: String| Err(CniError::new(code::CHECK_FAILED, m));
    if !link::netns_exists(&env.netns) {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("network namespace {} does not exist", env.netns),
        ));
    }
    let a = {
        let store = Store::lock(&conf.data_dir, LOCK_TIMEOUT)?;
        store.find(&env.container_id, &env.ifname)?
    };
    let Some(a) = a else {
        return fail(format!(
            "no address allocated to container {} interface {}",
            env.container_id, env.ifname
        ));
    };
    if let Some(m) = link::verify(&env.netns, &env.ifname, a.ip, conf.subnet.len, conf.gateway)? {
        return fail(m);
    }
    if !a.endpoint {
        return Ok(());
    }
    let mut c = connect(conf)?;
    let v = c
        .call(Op::ShowEndpoints)
        .map_err(|e| control_err(conf, e))?;
    let eps: Vec<Endpoint> = serde_json::from_value(v).map_err(|e| {
        CniError::new(code::CONTROL, "show.endpoints: unexpected answer").details(e)
    })?;
    let ok = eps.iter().any(|e| {
        e.namespace == a.pod_namespace
            && e.name == a.pod_name
            && e.ips.contains(&a.ip.to_string())
            && e.mac.eq_ignore_ascii_case(&a.mac)
    });
    if !ok {
        return fail(format!(
            "vrouterd has no endpoint {}/{} with {} on its port",
            a.pod_namespace, a.pod_name, a.ip
        ));
    }
    Ok(())
}

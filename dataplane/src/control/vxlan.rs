//! The control side of the VXLAN overlay: builds `Tables::vxlan` and the
//! tunnel interfaces from the `[[vtep]]` and `[[vni]]` sections, and keeps
//! flood lists and remote MACs (`show vteps`, add/remove at run time).
//!
//! Must never: be called from a worker; give a tunnel interface a port.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use vrouter_wire::MacAddr;

use super::{ControlError, NhKey, RouteKey, Router, Source, invalid, net_key};
use crate::config::{self, Config, ConfigError, DscpCfg};
use crate::l2::mactable::MAX_DST;
use crate::tables::{Iface, IfaceMode, NextHop};
use crate::vxlan::{Dscp, TUNNEL_SHG, Tunnel, Vni, VniKind, Vtep, VxlanTables, addr_key};

/// Encapsulation overhead in front of the inner frame's payload: inner
/// Ethernet 14 + outer IPv4 20 + UDP 8 + VXLAN 8.
pub const OVERHEAD4: u16 = 50;
/// The same over IPv6 (outer IPv6 header 40).
pub const OVERHEAD6: u16 = 70;

/// The default inner MAC of VNI `vni`.
pub fn vni_mac(vni: u32) -> MacAddr {
    let b = vni.to_be_bytes();
    MacAddr([0x02, 0x76, 0x78, b[1], b[2], b[3]])
}

impl Router {
    /// Builds the VTEPs, VNIs and tunnels of a validated configuration
    /// (after the interfaces, so the underlay addresses exist).
    pub(super) fn setup_vxlan(&mut self, cfg: &Config, file: &str) -> Result<(), ConfigError> {
        let cerr = |key: String, reason: String| ConfigError {
            file: file.to_string(),
            key,
            reason,
        };
        let mut vx = VxlanTables::default();
        for (k, v) in cfg.vteps.iter().enumerate() {
            let key = format!("vtep[{k}]");
            let local: IpAddr = v
                .local
                .parse()
                .map_err(|_| cerr(format!("{key}.local"), "not an IP address".into()))?;
            let (iface, f) = self
                .t
                .ifaces
                .iter()
                .enumerate()
                .find(|(_, f)| {
                    f.vrf().is_some()
                        && match local {
                            IpAddr::V4(a) => f.has_ip4(a),
                            IpAddr::V6(a) => f.ip6.iter().any(|n| n.addr == a),
                        }
                })
                .ok_or_else(|| {
                    cerr(
                        format!("{key}.local"),
                        "not an address of a routed interface".into(),
                    )
                })?;
            let overhead = if local.is_ipv4() {
                OVERHEAD4
            } else {
                OVERHEAD6
            };
            vx.vteps.push(Vtep {
                name: v.name.clone(),
                local,
                udp_port: v.udp_port,
                vrf: f.vrf().unwrap_or(0),
                iface: iface as u16,
                ttl: v.ttl,
                dscp: match v.dscp {
                    DscpCfg::Fixed(d) => Dscp::Fixed(d.min(63)),
                    DscpCfg::Mode(_) => Dscp::Copy,
                },
                sport_min: v.source_port_min,
                sport_span: u32::from(v.source_port_max - v.source_port_min) + 1,
                inner_mtu: v
                    .inner_mtu
                    .unwrap_or(f.mtu.saturating_sub(overhead).max(68)),
            });
        }
        for (k, n) in cfg.vnis.iter().enumerate() {
            let key = format!("vni[{k}]");
            let vtep = vx
                .vteps
                .iter()
                .position(|v| v.name == n.vtep)
                .ok_or_else(|| cerr(format!("{key}.vtep"), "unknown".into()))?
                as u16;
            let kind = match (&n.bridge, &n.vrf) {
                (Some(b), _) => VniKind::Bridge {
                    bd: self
                        .bd_id(b)
                        .ok_or_else(|| cerr(format!("{key}.bridge"), "unknown".into()))?,
                },
                (None, v) => VniKind::Routed {
                    vrf: self
                        .vrf_id(v.as_deref().unwrap_or("default"))
                        .ok_or_else(|| cerr(format!("{key}.vrf"), "unknown".into()))?,
                },
            };
            let mac = match &n.mac {
                Some(m) => config::parse_mac(m, true).map_err(|e| cerr(format!("{key}.mac"), e))?,
                None => vni_mac(n.vni),
            };
            let family = vx.vteps[vtep as usize].local.is_ipv4();
            let ip = |s: &str, key: String| match s.parse::<IpAddr>() {
                Ok(a) if a.is_ipv4() == family => Ok(a),
                _ => Err(cerr(
                    key,
                    format!("`{s}` is not an address of the VTEP's family"),
                )),
            };
            let ip4 = |s: &str, key: String| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| cerr(key, format!("`{s}` is not an IPv4 address")))
            };
            // Every remote VTEP of the VNI, once, flood-list members first.
            let mut remotes: Vec<(IpAddr, bool)> = Vec::new();
            let mut add = |a: IpAddr, flood: bool| {
                if !remotes.iter().any(|r| r.0 == a) {
                    remotes.push((a, flood));
                }
            };
            for (j, a) in n.flood.iter().enumerate() {
                add(ip(a, format!("{key}.flood[{j}]"))?, true);
            }
            for (j, m) in n.remote_macs.iter().enumerate() {
                add(
                    ip(&m.remote, format!("{key}.remote-macs[{j}].remote"))?,
                    false,
                );
            }
            for (j, r) in n.routes.iter().enumerate() {
                add(ip(&r.remote, format!("{key}.routes[{j}].remote"))?, false);
            }
            for (j, a) in n.remotes.iter().enumerate() {
                add(ip(a, format!("{key}.remotes[{j}]"))?, false);
            }
            let mut list = Vec::with_capacity(remotes.len());
            for (remote, flood) in remotes {
                if remote == vx.vteps[vtep as usize].local {
                    return Err(cerr(key, format!("{remote} is the VTEP's own address")));
                }
                let iface = self
                    .add_tunnel(&mut vx, vtep, n.vni, remote, kind, mac, flood)
                    .map_err(|e| cerr(key.clone(), e.to_string()))?;
                list.push((addr_key(remote), iface));
            }
            list.sort_unstable();
            let tunnel_of = |a: IpAddr| list.iter().find(|r| r.0 == addr_key(a)).map_or(0, |r| r.1);
            let mut arp = Vec::new();
            if let VniKind::Bridge { bd } = kind {
                for (j, m) in n.remote_macs.iter().enumerate() {
                    let k2 = format!("{key}.remote-macs[{j}]");
                    let mac = config::parse_mac(&m.mac, true).map_err(|e| cerr(k2.clone(), e))?;
                    let iface = tunnel_of(ip(&m.remote, k2.clone())?);
                    self.t.bds[bd as usize]
                        .macs
                        .set_static(mac.to_u64(), iface)
                        .map_err(|e| cerr(k2.clone(), format!("cannot install: {e:?}")))?;
                    if let Some(a) = &m.ip {
                        arp.push((u32::from(ip4(a, format!("{k2}.ip"))?), mac));
                    }
                }
            }
            arp.sort_unstable();
            arp.dedup_by_key(|e| e.0);
            if let VniKind::Routed { vrf } = kind {
                for (j, r) in n.routes.iter().enumerate() {
                    let k2 = format!("{key}.routes[{j}]");
                    let (prefix, len) = config::parse_prefix(&r.prefix, false)
                        .map_err(|e| cerr(format!("{k2}.prefix"), e))?;
                    let mac = config::parse_mac(&r.mac, true)
                        .map_err(|e| cerr(format!("{k2}.mac"), e))?;
                    let iface = tunnel_of(ip(&r.remote, k2.clone())?);
                    self.add_overlay_route(vrf, prefix, len, iface, mac)
                        .map_err(|e| cerr(k2, e.to_string()))?;
                }
            }
            vx.vnis.push(Vni {
                vtep,
                vni: n.vni,
                kind,
                mac,
                remotes: list,
                index: Vec::new(),
                arp_suppress: n.arp_suppression,
                arp,
            });
        }
        vx.vnis.sort_by_key(|v| (v.vtep, v.vni));
        self.t.vxlan = Arc::new(vx.indexed());
        Ok(())
    }

    /// Adds the tunnel interface of (`vni`, `remote`) of VTEP `vtep`.
    #[allow(clippy::too_many_arguments)]
    fn add_tunnel(
        &mut self,
        vx: &mut VxlanTables,
        vtep: u16,
        vni: u32,
        remote: IpAddr,
        kind: VniKind,
        mac: MacAddr,
        flood: bool,
    ) -> Result<u16, ControlError> {
        let idx = self.t.ifaces.len() as u16;
        let name = format!("vxlan{vni}-{remote}");
        if idx > MAX_DST || vx.tunnels.len() >= usize::from(u16::MAX) {
            return Err(invalid(name, format!("more than {MAX_DST} interfaces")));
        }
        let v = &vx.vteps[vtep as usize];
        let (mode, shg) = match kind {
            VniKind::Bridge { bd } => (IfaceMode::Bridged { bd }, TUNNEL_SHG),
            VniKind::Routed { vrf } => (IfaceMode::Routed { vrf }, 0),
        };
        let tunnel = vx.tunnels.len() as u16;
        vx.tunnels.push(Tunnel::new(v, vtep, vni, remote, idx));
        self.t.ifaces.push(Iface {
            name,
            port: u16::MAX,
            vlan: 0,
            mode,
            mac,
            mtu: v.inner_mtu,
            shg,
            ip4: Vec::new(),
            ip6: Vec::new(),
            ll6: None,
            tunnel: Some(tunnel),
        });
        if let (VniKind::Bridge { bd }, true) = (kind, flood) {
            self.t.bds[bd as usize].members.push(idx);
        }
        Ok(idx)
    }

    /// Routes `prefix/len` of `vrf` into tunnel interface `iface`, with
    /// inner destination MAC `mac` (the remote node's VXLAN device).
    pub fn add_overlay_route(
        &mut self,
        vrf: u16,
        prefix: IpAddr,
        len: u8,
        iface: u16,
        mac: MacAddr,
    ) -> Result<(), ControlError> {
        if self.t.iface(iface).and_then(|f| f.tunnel).is_none() {
            return Err(invalid(
                format!("route {prefix}/{len}"),
                "not a VXLAN tunnel interface",
            ));
        }
        let key: RouteKey = net_key(vrf, prefix, len);
        let nh = self.nh_get(NhKey::Overlay(iface, mac), |_| NextHop::Rewrite {
            iface,
            mac,
        });
        self.route_set(key, Source::Static, nh)
    }
}

/// Where an overlay route added at run time goes: a remote VTEP of an L3
/// VNI and the inner destination MAC. `vni` defaults to the VNI bound to
/// the route's VRF, `vtep` to the one VTEP that carries it.
#[derive(Debug, Clone)]
pub struct OverlayTarget<'a> {
    pub vtep: Option<&'a str>,
    pub vni: Option<u32>,
    pub remote: IpAddr,
    pub mac: MacAddr,
}

/// An overlay route as `show overlay-routes` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayRouteInfo {
    pub vrf: u16,
    pub prefix: IpAddr,
    pub len: u8,
    pub vtep: u16,
    pub vni: u32,
    pub remote: IpAddr,
    pub mac: MacAddr,
    pub iface: u16,
}

impl Router {
    /// The L3 VNI (index in `Tables::vxlan.vnis`) that overlay routes of
    /// `vrf` use.
    fn l3_vni(
        &self,
        vrf: u16,
        vtep: Option<&str>,
        vni: Option<u32>,
    ) -> Result<usize, ControlError> {
        let vx = &self.t.vxlan;
        let vrf_name = self
            .t
            .vrfs
            .get(vrf as usize)
            .map_or_else(|| vrf.to_string(), |v| v.name.clone());
        let vtep_id =
            match vtep {
                Some(name) => Some(vx.vteps.iter().position(|v| v.name == name).ok_or_else(
                    || ControlError::NotFound {
                        object: format!("vtep {name}"),
                        reason: "no such VTEP".into(),
                    },
                )? as u16),
                None => None,
            };
        let found: Vec<usize> = vx
            .vnis
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                vtep_id.is_none_or(|v| n.vtep == v)
                    && match vni {
                        Some(x) => n.vni == x,
                        None => matches!(n.kind, VniKind::Routed { vrf: r } if r == vrf),
                    }
            })
            .map(|(k, _)| k)
            .collect();
        let k = match (found.as_slice(), vni) {
            ([k], _) => *k,
            ([], Some(x)) => {
                return Err(ControlError::NotFound {
                    object: format!("VNI {x}"),
                    reason: "no such VNI".into(),
                });
            }
            ([], None) => {
                return Err(ControlError::NotFound {
                    object: format!("vrf {vrf_name}"),
                    reason: "no L3 VNI is bound to this VRF".into(),
                });
            }
            (_, _) => {
                return Err(invalid(
                    format!("vrf {vrf_name}"),
                    "several VTEPs carry this VNI: name the vtep",
                ));
            }
        };
        let n = &vx.vnis[k];
        match n.kind {
            VniKind::Routed { vrf: r } if r == vrf => Ok(k),
            VniKind::Routed { vrf: r } => Err(invalid(
                format!("VNI {}", n.vni),
                format!(
                    "bound to VRF {}, not {vrf_name}",
                    self.t.vrfs.get(r as usize).map_or("?", |v| v.name.as_str())
                ),
            )),
            VniKind::Bridge { .. } => Err(invalid(
                format!("VNI {}", n.vni),
                "an L2 VNI (bound to a bridge) carries no routes",
            )),
        }
    }

    /// The tunnel interface an overlay route for exactly `key` points at.
    pub(super) fn overlay_tunnel_at(&self, key: RouteKey) -> Option<u16> {
        let r = self.route_of(key)?;
        match self.nh_keys.get(r.nh as usize)? {
            Some(NhKey::Overlay(i, _)) => Some(*i),
            _ => None,
        }
    }

    /// Stops accepting the remote VTEP of tunnel `iface` if it was accepted
    /// only for run-time overlay routes and none points at it any more.
    /// The tunnel interface itself stays (interface indices are stable).
    pub(super) fn overlay_release(&mut self, iface: u16) {
        if !self.overlay_remotes.contains(&iface)
            || self
                .nh_index
                .keys()
                .any(|k| matches!(k, NhKey::Overlay(i, _) if *i == iface))
        {
            return;
        }
        self.overlay_remotes.remove(&iface);
        let mut vx = (*self.t.vxlan).clone();
        for n in &mut vx.vnis {
            n.remotes.retain(|r| r.1 != iface);
        }
        self.t.vxlan = Arc::new(vx.indexed());
    }

    /// Adds or replaces an overlay route (`route.add` with `remote`): the
    /// tunnel to `remote` is made if missing, and `remote` is accepted as a
    /// source of the VNI for as long as a route points at it.
    pub fn add_overlay_route_to(
        &mut self,
        vrf: u16,
        prefix: IpAddr,
        len: u8,
        to: &OverlayTarget<'_>,
    ) -> Result<(), ControlError> {
        let object = || format!("route {prefix}/{len}");
        if vrf as usize >= self.vrfs.len() {
            return Err(invalid(object(), "no such VRF"));
        }
        let k = self.l3_vni(vrf, to.vtep, to.vni)?;
        let n = &self.t.vxlan.vnis[k];
        let (vtep, vni, kind, vmac) = (n.vtep, n.vni, n.kind, n.mac);
        let local = self.t.vxlan.vteps[vtep as usize].local;
        let remote = to.remote;
        if remote == local
            || remote.is_multicast()
            || remote.is_unspecified()
            || remote.is_ipv4() != local.is_ipv4()
        {
            return Err(invalid(
                object(),
                format!("{remote} is not a remote unicast VTEP address of the VTEP's family"),
            ));
        }
        if to.mac.is_multicast() || to.mac == MacAddr::ZERO {
            return Err(invalid(
                object(),
                format!("inner MAC {} is not unicast", to.mac),
            ));
        }
        let (iface, accepted) = match self.tunnel_iface(k, remote) {
            Some(i) => (i, self.t.vxlan.vnis[k].remote(addr_key(remote)).is_some()),
            None => {
                let mut vx = (*self.t.vxlan).clone();
                let i = self.add_tunnel(&mut vx, vtep, vni, remote, kind, vmac, false)?;
                self.t.vxlan = Arc::new(vx.indexed());
                (i, false)
            }
        };
        let key = net_key(vrf, prefix, len);
        let old_tunnel = self.overlay_tunnel_at(key);
        self.add_overlay_route(vrf, prefix, len, iface, to.mac)?;
        if !accepted {
            let mut vx = (*self.t.vxlan).clone();
            let list = &mut vx.vnis[k].remotes;
            if let Err(at) = list.binary_search_by_key(&addr_key(remote), |r| r.0) {
                list.insert(at, (addr_key(remote), iface));
            }
            self.t.vxlan = Arc::new(vx.indexed());
            self.overlay_remotes.insert(iface);
        }
        if let Some(i) = old_tunnel.filter(|&i| i != iface) {
            self.overlay_release(i);
        }
        Ok(())
    }

    /// Every overlay route (of `vrf`, or all), for `show overlay-routes`.
    pub fn overlay_routes(&self, vrf: Option<u16>) -> Vec<OverlayRouteInfo> {
        let vx = &self.t.vxlan;
        let mut out = Vec::new();
        for v in 0..self.vrfs.len() as u16 {
            if vrf.is_some_and(|x| x != v) {
                continue;
            }
            for (prefix, len, _, nh) in self.routes(v) {
                let NextHop::Rewrite { iface, mac } = nh else {
                    continue;
                };
                let Some(t) = self
                    .t
                    .iface(iface)
                    .and_then(|f| f.tunnel)
                    .and_then(|t| vx.tunnels.get(t as usize))
                else {
                    continue;
                };
                out.push(OverlayRouteInfo {
                    vrf: v,
                    prefix,
                    len,
                    vtep: t.vtep,
                    vni: t.vni,
                    remote: t.remote,
                    mac,
                    iface,
                });
            }
        }
        out
    }
}

/// A tunnel as `show vteps` lists it.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    pub vtep: u16,
    pub vni: u32,
    pub kind: VniKind,
    pub remote: IpAddr,
    pub iface: u16,
    pub flood: bool,
    pub accepted: bool,
}

impl Router {
    /// Index of VNI `vni` of VTEP `vtep` in `Tables::vxlan.vnis`.
    fn vni_index(&self, vtep: &str, vni: u32) -> Result<usize, ControlError> {
        let vx = &self.t.vxlan;
        let v = vx
            .vteps
            .iter()
            .position(|v| v.name == vtep)
            .ok_or_else(|| ControlError::NotFound {
                object: format!("vtep {vtep}"),
                reason: "no such VTEP".into(),
            })? as u16;
        vx.vnis
            .iter()
            .position(|n| n.vtep == v && n.vni == vni)
            .ok_or_else(|| ControlError::NotFound {
                object: format!("vtep {vtep} VNI {vni}"),
                reason: "no such VNI".into(),
            })
    }

    /// The tunnel interface of (`vni` at index `k`, `remote`), if any.
    fn tunnel_iface(&self, k: usize, remote: IpAddr) -> Option<u16> {
        let vx = &self.t.vxlan;
        let n = vx.vnis.get(k)?;
        vx.tunnels
            .iter()
            .find(|t| t.vtep == n.vtep && t.vni == n.vni && t.remote == remote)
            .map(|t| t.iface)
    }

    /// Adds `remote` to the flood list of L2 VNI `vni` of `vtep` (and
    /// accepts it as a source). False if it already was in the list.
    pub fn vxlan_flood_add(
        &mut self,
        vtep: &str,
        vni: u32,
        remote: IpAddr,
    ) -> Result<bool, ControlError> {
        let k = self.vni_index(vtep, vni)?;
        let object = || format!("vtep {vtep} VNI {vni} flood {remote}");
        let n = &self.t.vxlan.vnis[k];
        let VniKind::Bridge { bd } = n.kind else {
            return Err(invalid(object(), "an L3 VNI has no flood list"));
        };
        let v = n.vtep;
        let mac = n.mac;
        let local = self.t.vxlan.vteps[v as usize].local;
        if local == remote || remote.is_multicast() || remote.is_ipv4() != local.is_ipv4() {
            return Err(invalid(
                object(),
                "not a remote unicast VTEP address of the VTEP's family",
            ));
        }
        let mut vx = (*self.t.vxlan).clone();
        let iface = match self.tunnel_iface(k, remote) {
            Some(i) => i,
            None => self.add_tunnel(&mut vx, v, vni, remote, VniKind::Bridge { bd }, mac, false)?,
        };
        let list = &mut vx.vnis[k].remotes;
        if let Err(at) = list.binary_search_by_key(&addr_key(remote), |r| r.0) {
            list.insert(at, (addr_key(remote), iface));
        }
        self.t.vxlan = Arc::new(vx.indexed());
        let members = &mut self.t.bds[bd as usize].members;
        if members.contains(&iface) {
            return Ok(false);
        }
        members.push(iface);
        Ok(true)
    }

    /// Removes `remote` from the flood list of L2 VNI `vni` of `vtep`. It is
    /// no longer accepted as a source, and the MACs learned behind it are
    /// flushed, unless static remote MACs still point to it.
    pub fn vxlan_flood_del(
        &mut self,
        vtep: &str,
        vni: u32,
        remote: IpAddr,
    ) -> Result<(), ControlError> {
        let k = self.vni_index(vtep, vni)?;
        let not_found = || ControlError::NotFound {
            object: format!("vtep {vtep} VNI {vni} flood {remote}"),
            reason: "not in the flood list".into(),
        };
        let VniKind::Bridge { bd } = self.t.vxlan.vnis[k].kind else {
            return Err(not_found());
        };
        let iface = self.tunnel_iface(k, remote).ok_or_else(not_found)?;
        let b = &mut self.t.bds[bd as usize];
        if !b.members.contains(&iface) {
            return Err(not_found());
        }
        b.members.retain(|&m| m != iface);
        let pinned = b
            .macs
            .entries(0)
            .iter()
            .any(|e| e.is_static && e.dst == iface);
        if !pinned {
            b.macs.retain_learned(0, |e| e.dst != iface, |_| {});
            let mut vx = (*self.t.vxlan).clone();
            vx.vnis[k].remotes.retain(|r| r.1 != iface);
            self.t.vxlan = Arc::new(vx.indexed());
        }
        Ok(())
    }

    /// The bridge domain and tunnel interface of an accepted remote VTEP of
    /// an L2 VNI.
    fn l2_remote(&self, vtep: &str, vni: u32, remote: IpAddr) -> Result<(u16, u16), ControlError> {
        let k = self.vni_index(vtep, vni)?;
        let n = &self.t.vxlan.vnis[k];
        let VniKind::Bridge { bd } = n.kind else {
            return Err(invalid(
                format!("vtep {vtep} VNI {vni}"),
                "an L3 VNI has no MAC table",
            ));
        };
        let iface = n
            .remote(addr_key(remote))
            .ok_or_else(|| ControlError::NotFound {
                object: format!("vtep {vtep} VNI {vni} remote {remote}"),
                reason: "not a remote VTEP of this VNI (add it to the flood list first)".into(),
            })?;
        Ok((bd, iface))
    }

    /// A static remote MAC of an L2 VNI behind `remote`, with the
    /// endpoint's IPv4 address for ARP suppression if given.
    pub fn vxlan_mac_add(
        &mut self,
        vtep: &str,
        vni: u32,
        mac: MacAddr,
        remote: IpAddr,
        ip: Option<Ipv4Addr>,
    ) -> Result<(), ControlError> {
        let (bd, iface) = self.l2_remote(vtep, vni, remote)?;
        self.t.bds[bd as usize]
            .macs
            .set_static(mac.to_u64(), iface)
            .map_err(|e| invalid(format!("static MAC {mac}"), format!("{e:?}")))?;
        if let Some(a) = ip {
            let k = self.vni_index(vtep, vni)?;
            let mut vx = (*self.t.vxlan).clone();
            let arp = &mut vx.vnis[k].arp;
            match arp.binary_search_by_key(&u32::from(a), |e| e.0) {
                Ok(at) => arp[at].1 = mac,
                Err(at) => arp.insert(at, (u32::from(a), mac)),
            }
            self.t.vxlan = Arc::new(vx.indexed());
        }
        Ok(())
    }

    /// Removes a static remote MAC of an L2 VNI; returns the IPv4 address
    /// it was known by for ARP suppression, if any.
    pub fn vxlan_mac_del(
        &mut self,
        vtep: &str,
        vni: u32,
        mac: MacAddr,
        remote: IpAddr,
    ) -> Result<Option<Ipv4Addr>, ControlError> {
        let (bd, iface) = self.l2_remote(vtep, vni, remote)?;
        let macs = &self.t.bds[bd as usize].macs;
        match macs.get(mac.to_u64(), 0) {
            Some(e) if e.is_static && e.dst == iface => {
                macs.remove(mac.to_u64());
                let k = self.vni_index(vtep, vni)?;
                let mut vx = (*self.t.vxlan).clone();
                let ip = vx.vnis[k]
                    .arp
                    .iter()
                    .find(|e| e.1 == mac)
                    .map(|e| Ipv4Addr::from(e.0));
                vx.vnis[k].arp.retain(|e| e.1 != mac);
                self.t.vxlan = Arc::new(vx.indexed());
                Ok(ip)
            }
            _ => Err(ControlError::NotFound {
                object: format!("static MAC {mac} behind {remote}"),
                reason: "no such static entry".into(),
            }),
        }
    }

    /// Every tunnel, for `show vteps`.
    pub fn vxlan_tunnels(&self) -> Vec<TunnelInfo> {
        let vx = &self.t.vxlan;
        vx.tunnels
            .iter()
            .filter_map(|t| {
                let n = vx.vni(t.vtep, t.vni)?;
                let flood = match n.kind {
                    VniKind::Bridge { bd } => self
                        .t
                        .bds
                        .get(bd as usize)
                        .is_some_and(|b| b.members.contains(&t.iface)),
                    VniKind::Routed { .. } => false,
                };
                Some(TunnelInfo {
                    vtep: t.vtep,
                    vni: t.vni,
                    kind: n.kind,
                    remote: t.remote,
                    iface: t.iface,
                    flood,
                    accepted: n.remote(addr_key(t.remote)).is_some(),
                })
            })
            .collect()
    }
}

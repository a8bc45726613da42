//! A small Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1,
//! the real list/watch protocol (lists with `metadata.resourceVersion`,
//! chunked watch streams of ADDED/MODIFIED/DELETED/BOOKMARK events, an
//! ERROR event with a 410 Status when the requested resourceVersion was
//! compacted), merge-patch of Nodes, connections dropped mid-stream and slow,
//! split responses on demand.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A served resource: its collection path and list kind.
#[derive(Debug, Clone, Copy)]
pub struct Res {
    pub path: &'static str,
    pub api_version: &'static str,
    pub kind: &'static str,
}

pub const NODES: Res = Res {
    path: "/api/v1/nodes",
    api_version: "v1",
    kind: "Node",
};
pub const PODS: Res = Res {
    path: "/api/v1/pods",
    api_version: "v1",
    kind: "Pod",
};
pub const NAMESPACES: Res = Res {
    path: "/api/v1/namespaces",
    api_version: "v1",
    kind: "Namespace",
};
pub const SERVICES: Res = Res {
    path: "/api/v1/services",
    api_version: "v1",
    kind: "Service",
};
pub const SLICES: Res = Res {
    path: "/apis/discovery.k8s.io/v1/endpointslices",
    api_version: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
};
pub const POLICIES: Res = Res {
    path: "/apis/networking.k8s.io/v1/networkpolicies",
    api_version: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
};
pub const ALL: [Res; 6] = [NODES, PODS, NAMESPACES, SERVICES, SLICES, POLICIES];

#[derive(Default)]
struct Coll {
    objects: BTreeMap<String, Value>,
    /// (resourceVersion, type, object)
    events: Vec<(u64, &'static str, Value)>,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    colls: HashMap<&'static str, Coll>,
    /// Incremented to drop every open watch mid-stream.
    drops: u64,
    /// Delay between the two halves of each list response.
    slow_ms: u64,
    /// Request lines seen (method and target).
    pub log: Vec<String>,
}

/// See the module doc.
#[derive(Clone)]
pub struct MockApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
}

fn key_of(v: &Value) -> String {
    let m = &v["metadata"];
    match m["namespace"].as_str() {
        Some(ns) => format!("{ns}/{}", m["name"].as_str().unwrap_or("")),
        None => m["name"].as_str().unwrap_or("").to_string(),
    }
}

impl MockApi {
    /// Listens on 127.0.0.1 (a free port).
    pub async fn start() -> MockApi {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (changed, _) = watch::channel(0);
        let api = MockApi {
            addr,
            state: Arc::new(Mutex::new(State::default())),
            changed,
        };
        for r in ALL {
            api.lock().colls.insert(r.path, Coll::default());
        }
        let a2 = api.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let a = a2.clone();
                tokio::spawn(async move {
                    let _ = a.serve(s).await;
                });
            }
        });
        api
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        let v = *self.changed.borrow() + 1;
        self.changed.send_replace(v);
    }

    /// A kubeconfig pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{}\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: mock\ncurrent-context: mock\nusers:\n- name: mock\n  user: {{}}\n",
            self.addr
        )
    }

    /// Creates or replaces an object (ADDED / MODIFIED).
    pub fn apply(&self, r: Res, mut obj: Value) {
        {
            let mut s = self.lock();
            s.rv += 1;
            let rv = s.rv;
            obj["apiVersion"] = json!(r.api_version);
            obj["kind"] = json!(r.kind);
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            let k = key_of(&obj);
            let c = s.colls.entry(r.path).or_default();
            let ty = if c.objects.contains_key(&k) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            c.objects.insert(k, obj.clone());
            c.events.push((rv, ty, obj));
        }
        self.bump();
    }

    /// Deletes an object (DELETED).
    pub fn delete(&self, r: Res, key: &str) {
        {
            let mut s = self.lock();
            s.rv += 1;
            let rv = s.rv;
            let c = s.colls.entry(r.path).or_default();
            if let Some(mut obj) = c.objects.remove(key) {
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                c.events.push((rv, "DELETED", obj));
            }
        }
        self.bump();
    }

    /// Forgets history: watches from an older resourceVersion get 410 Gone.
    /// Open watches are dropped.
    pub fn compact(&self) {
        {
            let mut s = self.lock();
            s.compacted = s.rv + 1;
            for c in s.colls.values_mut() {
                c.events.clear();
            }
            s.drops += 1;
        }
        self.bump();
    }

    /// Drops every open watch connection mid-stream.
    pub fn drop_watches(&self) {
        self.lock().drops += 1;
        self.bump();
    }

    /// Splits each list response in two with this delay between the halves.
    pub fn set_slow(&self, ms: u64) {
        self.lock().slow_ms = ms;
    }

    /// An object as stored.
    pub fn get(&self, r: Res, key: &str) -> Option<Value> {
        self.lock().colls.get(r.path)?.objects.get(key).cloned()
    }

    /// How many requests matched `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// How many list (not watch) requests `r` got.
    pub fn lists(&self, r: Res) -> usize {
        let pre = format!("GET {}", r.path);
        self.lock()
            .log
            .iter()
            .filter(|l| l.starts_with(&pre) && !l.contains("watch="))
            .count()
    }

    async fn serve(&self, s: TcpStream) -> std::io::Result<()> {
        let (rd, mut wr) = s.into_split();
        let mut rd = BufReader::new(rd);
        let mut line = String::new();
        rd.read_line(&mut line).await?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await?;
        self.lock().log.push(format!("{method} {target}"));
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let q: HashMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        if method == "GET" && self.lock().colls.contains_key(path) {
            let path: &'static str = ALL
                .iter()
                .find(|r| r.path == path)
                .map(|r| r.path)
                .unwrap_or("");
            if q.get("watch").copied() == Some("true") || q.get("watch").copied() == Some("1") {
                let from: u64 = q
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                return self.watch(&mut wr, path, from).await;
            }
            return self.list(&mut wr, path).await;
        }
        if method == "PATCH" && path.starts_with("/api/v1/nodes/") {
            let name = &path["/api/v1/nodes/".len()..];
            let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(mut node) = self.get(NODES, name) else {
                return respond(
                    &mut wr,
                    404,
                    &status(404, "NotFound", &format!("nodes \"{name}\" not found")),
                )
                .await;
            };
            merge(&mut node, &patch);
            self.apply(NODES, node);
            let node = self.get(NODES, name).unwrap_or(Value::Null);
            return respond(&mut wr, 200, &node).await;
        }
        respond(
            &mut wr,
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        )
        .await
    }

    async fn list(
        &self,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        path: &'static str,
    ) -> std::io::Result<()> {
        let (body, slow) = {
            let s = self.lock();
            let r = ALL
                .iter()
                .find(|r| r.path == path)
                .copied()
                .unwrap_or(NODES);
            // The list written straight from the stored objects (a deep
            // copy of 25k objects first would cost the server more than
            // the client's decoding).
            let head = json!({
                "apiVersion": r.api_version, "kind": format!("{}List", r.kind),
                "metadata": {"resourceVersion": s.rv.to_string()},
            })
            .to_string();
            let mut body = Vec::with_capacity(head.len() + 16);
            body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
            body.extend_from_slice(b",\"items\":[");
            if let Some(c) = s.colls.get(path) {
                for (k, o) in c.objects.values().enumerate() {
                    if k > 0 {
                        body.push(b',');
                    }
                    serde_json::to_writer(&mut body, o).expect("a JSON value serializes");
                }
            }
            body.extend_from_slice(b"]}");
            (String::from_utf8(body).expect("JSON is UTF-8"), s.slow_ms)
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        wr.write_all(head.as_bytes()).await?;
        if slow > 0 {
            let (a, b) = body.as_bytes().split_at(body.len() / 2);
            wr.write_all(a).await?;
            wr.flush().await?;
            tokio::time::sleep(Duration::from_millis(slow)).await;
            wr.write_all(b).await?;
        } else {
            wr.write_all(body.as_bytes()).await?;
        }
        wr.shutdown().await
    }

    async fn watch(
        &self,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        path: &'static str,
        from: u64,
    ) -> std::io::Result<()> {
        wr.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .await?;
        let mut rx = self.changed.subscribe();
        let drops0 = self.lock().drops;
        let mut sent = from;
        if from < self.lock().compacted {
            let ev = json!({"type": "ERROR", "object": status(410, "Expired", &format!("too old resource version: {from}"))});
            chunk(wr, &ev).await?;
            return wr.write_all(b"0\r\n\r\n").await;
        }
        loop {
            let (evs, dropped, rv) = {
                let s = self.lock();
                let evs: Vec<Value> = s
                    .colls
                    .get(path)
                    .map(|c| {
                        c.events
                            .iter()
                            .filter(|(rv, _, _)| *rv > sent)
                            .map(|(_, ty, o)| json!({"type": ty, "object": o}))
                            .collect()
                    })
                    .unwrap_or_default();
                (evs, s.drops != drops0, s.rv)
            };
            if dropped {
                // Mid-stream: no terminating chunk.
                return Ok(());
            }
            for e in &evs {
                chunk(wr, e).await?;
            }
            sent = rv;
            tokio::select! {
                r = rx.changed() => { if r.is_err() { return Ok(()); } }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    let r = ALL.iter().find(|r| r.path == path).copied().unwrap_or(NODES);
                    let bm = json!({"type": "BOOKMARK", "object": {"apiVersion": r.api_version, "kind": r.kind,
                                     "metadata": {"resourceVersion": rv.to_string()}}});
                    chunk(wr, &bm).await?;
                }
            }
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

async fn chunk(wr: &mut tokio::net::tcp::OwnedWriteHalf, v: &Value) -> std::io::Result<()> {
    let mut s = v.to_string();
    s.push('\n');
    wr.write_all(format!("{:x}\r\n{s}\r\n", s.len()).as_bytes())
        .await?;
    wr.flush().await
}

async fn respond(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    code: u16,
    v: &Value,
) -> std::io::Result<()> {
    let body = v.to_string();
    let reason = if code == 200 { "OK" } else { "Not Found" };
    wr.write_all(
        format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    wr.shutdown().await
}

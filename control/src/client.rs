//! A blocking client of the control socket (used by vrouterctl, tests and
//! the agent). One request at a time; events of a subscription are returned
//! by `next_event`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::proto::{ApiError, Hello, Op, PROTOCOL_VERSION, Request, Response};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached or broke.
    #[error("control socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The server answered something that is not a response line.
    #[error("control socket {path}: bad response: {detail}")]
    Protocol { path: String, detail: String },
    /// The server refused the request.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// See the module doc.
pub struct Client {
    path: String,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
    /// The server's version string from the handshake.
    pub server: String,
}

impl Client {
    /// Connects and says hello.
    pub fn connect(path: &Path, client_name: &str) -> Result<Client, ClientError> {
        let p = path.display().to_string();
        let io = |source| ClientError::Io {
            path: p.clone(),
            source,
        };
        let s = UnixStream::connect(path).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let reader = BufReader::new(s.try_clone().map_err(io)?);
        let mut c = Client {
            path: p,
            writer: s,
            reader,
            next_id: 1,
            server: String::new(),
        };
        let hello = c.call(Op::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: client_name.to_string(),
        }))?;
        c.server = hello
            .get("server")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Ok(c)
    }

    /// Sends one request and waits for its response.
    pub fn call(&mut self, op: Op) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let line =
            serde_json::to_string(&Request { id, op }).map_err(|e| ClientError::Protocol {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        if let Err(e) = self.send_raw(&line) {
            // The server may have refused the connection before closing it
            // (credentials, limits): report its reason if it left one.
            if let Ok(v) = self.read_line()
                && let Ok(Response {
                    error: Some(err), ..
                }) = serde_json::from_value::<Response>(v)
            {
                return Err(ClientError::Api(err));
            }
            return Err(e);
        }
        loop {
            let v = self.read_line()?;
            if v.get("event").is_some() {
                continue;
            }
            let r: Response = serde_json::from_value(v).map_err(|e| ClientError::Protocol {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
            // Id 0 answers a connection-level refusal (credentials, limits).
            if r.id != id && !(r.id == 0 && r.error.is_some()) {
                continue;
            }
            if let Some(e) = r.error {
                return Err(ClientError::Api(e));
            }
            return Ok(r.result.unwrap_or(Value::Null));
        }
    }

    /// Sends a raw line (for tests and `vrouterctl raw`).
    pub fn send_raw(&mut self, line: &str) -> Result<(), ClientError> {
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        self.writer.write_all(line.as_bytes()).map_err(io)?;
        self.writer
            .write_all(b"\n")
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Reads the next line as JSON.
    pub fn read_line(&mut self) -> Result<Value, ClientError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ClientError::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by vrouterd",
                ),
            });
        }
        serde_json::from_str(&line).map_err(|e| ClientError::Protocol {
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }

    /// Sets how long a read may wait (`None`: forever, for subscriptions).
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<(), ClientError> {
        self.writer
            .set_read_timeout(t)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Waits for the next event of a subscription.
    pub fn next_event(&mut self) -> Result<Value, ClientError> {
        loop {
            let v = self.read_line()?;
            if let Some(e) = v.get("event") {
                return Ok(e.clone());
            }
        }
    }
}

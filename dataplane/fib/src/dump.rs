//! Loaders for the route and address dumps of DPDK's `dpdk-test-fib`
//! (`-w routes.txt -u ips.txt`), so benches and scripts can run the very
//! tables and lookups DPDK measured.
//!
//! Route lines are `PREFIX/LEN NH` (`198.18.0.0/15 7`, or an IPv6 prefix);
//! address lines are one address each. Blank lines and `#` comments are
//! skipped. Values are returned as written: host bits and next-hop ranges are
//! for the FIB to judge (DPDK's generator emits next hop 0, which is
//! [`crate::NO_ROUTE`] here, so callers remap it).
//!
//! This module only parses text; it never touches a table.

use std::net::IpAddr;

/// One route of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpRoute {
    /// The prefix as written.
    pub prefix: IpAddr,
    /// Its length.
    pub len: u8,
    /// The next hop as written.
    pub nh: u64,
}

/// A line of a dump that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct DumpError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
    /// The line.
    pub text: String,
}

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parses a `dpdk-test-fib -w` route dump (IPv4 or IPv6, one route a line).
pub fn parse_route_dump(text: &str) -> Result<Vec<DumpRoute>, DumpError> {
    lines(text)
        .map(|(line, l)| {
            let err = |reason| DumpError {
                line,
                reason,
                text: l.to_owned(),
            };
            let mut fields = l.split_whitespace();
            let (Some(pfx), Some(nh), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(err("expected PREFIX/LEN NEXTHOP"));
            };
            let (addr, len) = pfx
                .split_once('/')
                .ok_or_else(|| err("prefix without /LEN"))?;
            let prefix: IpAddr = addr.parse().map_err(|_| err("bad address"))?;
            let len: u8 = len.parse().map_err(|_| err("bad prefix length"))?;
            let max = if prefix.is_ipv4() { 32 } else { 128 };
            if len > max {
                return Err(err("prefix length too long"));
            }
            let nh = nh.parse().map_err(|_| err("bad next hop"))?;
            Ok(DumpRoute { prefix, len, nh })
        })
        .collect()
}

/// Parses a `dpdk-test-fib -u` address dump (one address a line).
pub fn parse_addr_dump(text: &str) -> Result<Vec<IpAddr>, DumpError> {
    lines(text)
        .map(|(line, l)| {
            let a = l.split_whitespace().next().unwrap_or(l);
            a.parse().map_err(|_| DumpError {
                line,
                reason: "bad address",
                text: l.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_families_and_reports_lines() {
        let text = "# dump\n0.0.0.0/0 1\n198.18.0.0/15 7\n\n2001:0db8:0000:0000:0000:0000:0000:0000/32 5\n";
        let r = parse_route_dump(text).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[1],
            DumpRoute {
                prefix: "198.18.0.0".parse().unwrap(),
                len: 15,
                nh: 7
            }
        );
        assert_eq!(r[2].prefix, "2001:db8::".parse::<IpAddr>().unwrap());
        let e = parse_route_dump("1.2.3.0/24 1\n1.2.3.0/33 1\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(
            e.to_string(),
            "line 2: prefix length too long: \"1.2.3.0/33 1\""
        );
        assert!(parse_route_dump("1.2.3.0 1").is_err());
        assert!(parse_route_dump("1.2.3.0/24").is_err());
        let a = parse_addr_dump("1.2.3.4\n2001:db8::1\n").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(parse_addr_dump("x").unwrap_err().line, 1);
    }
}

//! Connection tracking events (netfilter conntrack over netlink), for /proc mode: a flow that
//! conntrack saw begin but the next sock_diag scan does not find opened and closed between two
//! scans. (Conntrack destroys a flow only after TIME_WAIT, so NEW events are what count.) Conntrack only sees
//! traffic when the network namespace has connection tracking in use (a firewall or NAT rule,
//! as on most Kubernetes and Docker hosts); elsewhere this stays silent.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_NETFILTER};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPPROTO_TCP: u8 = 6;
const NLA_TYPE_MASK: u16 = 0x3fff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEvent {
    New,
    Destroy,
}

/// A TCP flow as conntrack saw it: the original direction's 4-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub event: FlowEvent,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A non-blocking subscription to conntrack's NEW and DESTROY events.
#[derive(Debug)]
pub struct ConntrackEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl ConntrackEvents {
    pub fn subscribe() -> std::io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind(&NetlinkAddr::new(0, 0))?;
        socket.add_membership(NFNLGRP_CONNTRACK_NEW)?;
        socket.set_non_blocking(true)?;
        Ok(Self {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Hands every pending TCP flow event to `visit`. Returns false if the kernel dropped
    /// events (the socket buffer overflowed).
    pub fn drain(&mut self, mut visit: impl FnMut(Flow)) -> bool {
        loop {
            match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(0) => return true,
                Ok(n) => parse_messages(&self.buf[..n], &mut visit),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return false,
                Err(_) => return true,
            }
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

/// Iterates the netlink attributes in `b`: (type without flags, payload).
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, payload))
    })
}

fn parse_messages(mut b: &[u8], visit: &mut impl FnMut(Flow)) {
    while b.len() >= 16 {
        let len = u32::from_ne_bytes(b[0..4].try_into().unwrap_or_default()) as usize;
        let kind = u16_at(b, 4).unwrap_or(0);
        if len < 16 || len > b.len() {
            return;
        }
        let event = match (kind >> 8, kind & 0xff) {
            (NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW) => Some(FlowEvent::New),
            (NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE) => Some(FlowEvent::Destroy),
            _ => None,
        };
        // nlmsghdr (16 bytes), then nfgenmsg (4 bytes), then attributes.
        if let Some(event) = event
            && len >= 20
            && let Some(flow) = parse_flow(event, &b[20..len])
        {
            visit(flow);
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
}

fn parse_flow(event: FlowEvent, attrs: &[u8]) -> Option<Flow> {
    let (_, tuple) = attributes(attrs).find(|(k, _)| *k == CTA_TUPLE_ORIG)?;
    let (mut src_ip, mut dst_ip, mut proto, mut sport, mut dport) = (None, None, 0u8, 0u16, 0u16);
    for (kind, payload) in attributes(tuple) {
        match kind {
            CTA_TUPLE_IP => {
                for (k, p) in attributes(payload) {
                    let ip = match (k, p.len()) {
                        (CTA_IP_V4_SRC | CTA_IP_V4_DST, 4) => {
                            IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], p[3]))
                        }
                        (CTA_IP_V6_SRC | CTA_IP_V6_DST, 16) => {
                            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p).ok()?))
                        }
                        _ => continue,
                    };
                    if matches!(k, CTA_IP_V4_SRC | CTA_IP_V6_SRC) {
                        src_ip = Some(ip);
                    } else {
                        dst_ip = Some(ip);
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, p) in attributes(payload) {
                    match (k, p.len()) {
                        (CTA_PROTO_NUM, 1) => proto = p[0],
                        (CTA_PROTO_SRC_PORT, 2) => sport = u16::from_be_bytes([p[0], p[1]]),
                        (CTA_PROTO_DST_PORT, 2) => dport = u16::from_be_bytes([p[0], p[1]]),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (proto == IPPROTO_TCP).then_some(Flow {
        event,
        src: SocketAddr::new(src_ip?, sport),
        dst: SocketAddr::new(dst_ip?, dport),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_a_destroy_event() {
        let ip = [
            attr(CTA_IP_V4_SRC, &[127, 0, 0, 1]),
            attr(CTA_IP_V4_DST, &[127, 0, 0, 2]),
        ]
        .concat();
        let proto = [
            attr(CTA_PROTO_NUM, &[6]),
            attr(CTA_PROTO_SRC_PORT, &40000u16.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &80u16.to_be_bytes()),
        ]
        .concat();
        let tuple = [
            attr(CTA_TUPLE_IP | 0x8000, &ip),
            attr(CTA_TUPLE_PROTO | 0x8000, &proto),
        ]
        .concat();
        let body = attr(CTA_TUPLE_ORIG | 0x8000, &tuple);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((20 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
        msg.extend_from_slice(&[0u8; 10]); // flags, seq, pid
        msg.extend_from_slice(&[2, 0, 0, 0]); // nfgenmsg
        msg.extend_from_slice(&body);
        let mut flows = Vec::new();
        parse_messages(&msg, &mut |f| flows.push(f));
        assert_eq!(
            flows,
            [Flow {
                event: FlowEvent::Destroy,
                src: "127.0.0.1:40000".parse().unwrap(),
                dst: "127.0.0.2:80".parse().unwrap(),
            }]
        );
    }
}

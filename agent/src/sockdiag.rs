//! TCP socket dumps through the kernel's sock_diag netlink interface (what `ss` uses): the
//! 4-tuple, state, owner inode and uid, and per-socket byte counters from `tcp_info`.
//! Used to seed the connection table at start and, in /proc mode, to observe connections.
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags, nlas::Nla},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    #[error(
        "sock_diag netlink socket: {0}; the kernel needs CONFIG_INET_DIAG (module inet_diag/tcp_diag)"
    )]
    Socket(std::io::Error),
    #[error("sock_diag dump failed: {0}")]
    Dump(String),
}

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_LISTEN: u8 = 10;

/// One TCP socket as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
    pub uid: u32,
    /// Data bytes sent, each once (`tcpi_bytes_sent - tcpi_bytes_retrans`).
    pub bytes_sent: u64,
    /// Bytes received by TCP.
    pub bytes_received: u64,
    pub retransmits: u32,
}

/// Dumps all TCP sockets of the calling thread's network namespace in `states`
/// (a bit mask of `1 << TCP_*`).
pub fn dump_tcp(states: StateFlags) -> Result<Vec<TcpSocket>, SockDiagError> {
    let mut out = Vec::new();
    for_each_tcp(states, |s| out.push(s))?;
    Ok(out)
}

/// Like [`dump_tcp`], handing each socket to `visit` as it is parsed (no list of every socket
/// on a busy host is built).
pub fn for_each_tcp(
    states: StateFlags,
    mut visit: impl FnMut(TcpSocket),
) -> Result<(), SockDiagError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(SockDiagError::Socket)?;
    socket.bind_auto().map_err(SockDiagError::Socket)?;
    socket
        .connect(&NetlinkAddr::new(0, 0))
        .map_err(SockDiagError::Socket)?;
    for family in [AF_INET, AF_INET6] {
        let socket_id = if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        };
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut packet = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::INFO,
                states: states.clone(),
                socket_id,
            })
            .into(),
        );
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf[..]);
        socket.send(&buf, 0).map_err(SockDiagError::Socket)?;
        receive_dump(&socket, &mut visit)?;
    }
    Ok(())
}

fn receive_dump(socket: &Socket, visit: &mut impl FnMut(TcpSocket)) -> Result<(), SockDiagError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let size = socket
            .recv(&mut &mut buf[..], 0)
            .map_err(SockDiagError::Socket)?;
        let mut offset = 0;
        while offset < size {
            let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&buf[offset..size])
                .map_err(|e| SockDiagError::Dump(e.to_string()))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    let id = &response.header.socket_id;
                    let mut entry = TcpSocket {
                        local: SocketAddr::new(unmap(id.source_address), id.source_port),
                        remote: SocketAddr::new(unmap(id.destination_address), id.destination_port),
                        state: response.header.state,
                        inode: response.header.inode as u64,
                        uid: response.header.uid,
                        bytes_sent: 0,
                        bytes_received: 0,
                        retransmits: 0,
                    };
                    for nla in &response.nlas {
                        if let Nla::TcpInfo(info) = nla {
                            // Data bytes sent once, as the eBPF probe counts them
                            // (bytes_acked would count a client's SYN and not a server's).
                            entry.bytes_sent = info.bytes_sent.saturating_sub(info.bytes_retrans);
                            entry.bytes_received = info.bytes_received;
                            entry.retransmits = info.total_retrans;
                        }
                    }
                    visit(entry);
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(err) => return Err(SockDiagError::Dump(err.to_string())),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are reported as IPv4.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

pub fn all_states() -> StateFlags {
    StateFlags::all()
}

pub fn established() -> StateFlags {
    StateFlags::ESTABLISHED
}

pub fn established_and_listen() -> StateFlags {
    StateFlags::ESTABLISHED | StateFlags::LISTEN
}

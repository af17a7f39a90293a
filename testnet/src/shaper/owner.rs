//! Which node dialed a connection that arrived at a relay: the process
//! that holds the other end of the socket.
//!
//! A node's outgoing TCP connections cannot be told apart by address:
//! libp2p-tcp binds a dial socket to `0.0.0.0:<listen port>` (port reuse)
//! or to an ephemeral port, and the kernel picks 127.0.0.1 as the source
//! of any connection to 127.0.0.0/8, whatever address the node listens
//! on. The source port names the node when port reuse worked (it is the
//! node's listen port); otherwise the relay looks the dialer's socket up:
//! the inode of the socket whose local end is the connection's remote end
//! (in `/proc/net/tcp`), then which of the nodes' processes has that inode
//! among its open files (`/proc/PID/fd`). Only the runner's own children
//! are searched.
//!
//! Owns nothing but that lookup (blocking file reads: run it off the
//! async threads).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The inode of the IPv4 TCP socket from `local` to `remote`, from the
/// text of `/proc/net/tcp`.
pub fn socket_inode(proc_net_tcp: &str, local: SocketAddrV4, remote: SocketAddrV4) -> Option<u64> {
    proc_net_tcp.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (parse_addr(l)? == local && parse_addr(r)? == remote)
            .then(|| inode.parse().ok())
            .flatten()
    })
}

/// `0100007F:1F90` → 127.0.0.1:8080. The kernel prints the address as the
/// raw 32-bit word in host order, the port in network order.
fn parse_addr(text: &str) -> Option<SocketAddrV4> {
    let (ip, port) = text.split_once(':')?;
    let raw = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(raw.to_ne_bytes()), port))
}

/// Whether process `pid` holds the socket `inode`.
fn holds(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()))
}

/// How often to read `/proc/net/tcp` before giving up: the kernel prints
/// it a page at a time, and sockets coming and going meanwhile (other
/// programs on the machine) can make a pass skip a line.
const TRIES: u32 = 3;

/// Which node dialed the connection the relay accepted with remote end
/// `remote` on its address `local`. `pids[i]`: node `i`'s running process;
/// `ports[i]`: the port node `i` really listens on.
///
/// First the port: a libp2p dial that reuses the listen port binds
/// `0.0.0.0:<listen port>`, and no other socket can hold a port a live
/// listener holds. Otherwise (an ephemeral port: a second connection to
/// the same relay, or port reuse off) the socket's owner.
pub fn dialer(
    remote: SocketAddr,
    local: SocketAddr,
    pids: &[Option<u32>],
    ports: &[u16],
) -> Option<usize> {
    let by_port = ports
        .iter()
        .zip(pids)
        .position(|(port, pid)| *port == remote.port() && pid.is_some());
    if by_port.is_some() {
        return by_port;
    }
    let (SocketAddr::V4(remote), SocketAddr::V4(local)) = (remote, local) else {
        return None;
    };
    for _ in 0..TRIES {
        let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
        // The dialer's socket: local end = our remote, remote end = our local.
        if let Some(inode) = socket_inode(&table, remote, local) {
            return pids
                .iter()
                .position(|pid| pid.is_some_and(|pid| holds(pid, inode)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_inode_of_one_socket_in_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n\
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1\n";
        let a: SocketAddrV4 = "127.0.0.1:54321".parse().unwrap();
        let b: SocketAddrV4 = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(socket_inode(table, a, b), Some(222));
        assert_eq!(socket_inode(table, b, a), Some(333));
        assert_eq!(socket_inode(table, a, a), None);
    }

    #[test]
    fn names_the_process_holding_a_real_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, remote) = listener.accept().unwrap();
        let local = accepted.local_addr().unwrap();
        let me = std::process::id();
        let ports = [1, 2, 3];
        assert_eq!(
            dialer(remote, local, &[None, Some(1), Some(me)], &ports),
            Some(2)
        );
        assert_eq!(dialer(remote, local, &[Some(1)], &ports[..1]), None);
        // The source port of a running node's listener names it alone.
        let theirs = [9, remote.port()];
        assert_eq!(dialer(remote, local, &[Some(1), Some(1)], &theirs), Some(1));
        assert_eq!(dialer(remote, local, &[Some(1), None], &theirs), None);
    }
}

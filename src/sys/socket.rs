//! A TCP connection a library opened inside this process, found again so its
//! receive low-water mark (`SO_RCVLOWAT`) can be set: the RTSP client does not
//! hand out its socket, and a recorder woken once per ~100 ms of stream
//! instead of once per frame spends half the CPU.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// The sockets this process holds, by inode (unique, unlike descriptor numbers, which are reused).
pub fn socket_inodes() -> HashSet<u64> {
    descriptors().into_iter().map(|(_, inode)| inode).collect()
}

/// The one TCP connection to `port` (on `host`, when known) opened since `before` was
/// taken, as a handle of its own (a duplicate descriptor: it stays valid whatever the
/// library does with its own). `None` when there is none, or more than one and which is
/// which is unknown.
pub fn new_connection(before: &HashSet<u64>, host: Option<IpAddr>, port: u16) -> Option<TcpStream> {
    let to_peer = |peer: SocketAddr| peer.port() == port && host.is_none_or(|ip| ip == peer.ip());
    let mut found = descriptors()
        .into_iter()
        .filter(|(_, inode)| !before.contains(inode))
        .filter_map(|(fd, inode)| duplicate(fd, inode))
        .filter(|stream| stream.peer_addr().is_ok_and(to_peer));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Sets how many bytes must be waiting before the socket reads as ready (1: any).
pub fn set_receive_low_water(stream: &TcpStream, bytes: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a descriptor we own, reading a c_int we pass by reference.
    let done = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's socket descriptors and their inodes (`/proc/self/fd/N` → `socket:[INODE]`).
fn descriptors() -> Vec<(i32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let inode = target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()?;
            Some((fd, inode))
        })
        .collect()
}

/// A duplicate of descriptor `fd`, if it still is the socket `inode` (it may have been
/// closed, and its number reused, since it was listed).
fn duplicate(fd: i32, inode: u64) -> Option<TcpStream> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; a closed one fails with EBADF.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return None;
    }
    // SAFETY: `copy` is a descriptor fcntl just created for us alone.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(copy) });
    if file.metadata().ok()?.ino() != inode {
        return None;
    }
    Some(TcpStream::from(OwnedFd::from(file)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn low_water(stream: &TcpStream) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a c_int we own, its size passed along.
        let done = unsafe {
            libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&raw mut value).cast(), &mut len)
        };
        assert_eq!(done, 0);
        value
    }

    #[test]
    fn the_new_connection_is_found_and_its_low_water_mark_set() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let before = socket_inodes();
        let ours = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (_accepted, _) = listener.accept().expect("accept");
        let localhost = Some(IpAddr::from([127, 0, 0, 1]));
        assert!(new_connection(&before, Some(IpAddr::from([127, 0, 0, 2])), port).is_none(), "another host");
        let found = new_connection(&before, localhost, port).expect("found");
        assert_eq!(found.local_addr().expect("local"), ours.local_addr().expect("local"));
        set_receive_low_water(&found, 32 * 1024).expect("set");
        // The same socket: what is set through the duplicate holds for the original.
        assert_eq!(low_water(&ours), 32 * 1024);
        set_receive_low_water(&found, 0).expect("set");
        assert_eq!(low_water(&ours), 1);
    }

    #[test]
    fn two_new_connections_to_the_port_are_not_told_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let before = socket_inodes();
        let _one = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _two = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        assert!(new_connection(&before, None, port).is_none());
        assert!(new_connection(&socket_inodes(), None, port).is_none(), "nothing new since");
    }
}

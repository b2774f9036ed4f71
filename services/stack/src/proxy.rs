//! A TCP proxy the harness puts in front of a process, so a test can partition the network
//! between it and its peers: stall the link both ways or one way (bytes stop, connections stay
//! open, callers time out, as behind a real partition), and heal it.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What gets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Open,
    /// Nothing, either way.
    Cut,
    /// Nothing toward the target; its answers (to what got through before) still flow.
    CutToTarget,
    /// Nothing from the target back; requests still reach it.
    CutFromTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToTarget,
    FromTarget,
}

impl Link {
    fn stalls(self, direction: Direction) -> bool {
        match self {
            Link::Open => false,
            Link::Cut => true,
            Link::CutToTarget => direction == Direction::ToTarget,
            Link::CutFromTarget => direction == Direction::FromTarget,
        }
    }
}

/// A running proxy: connections to `port` are carried to the target while the link is open.
pub struct Proxy {
    pub port: u16,
    link: watch::Sender<Link>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and carries each connection to `target`. Must be called
    /// within a tokio runtime.
    pub fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let listener = TcpListener::from_std(listener)?;
        let (link, watching) = watch::channel(Link::Open);
        let task = tokio::spawn(accept(listener, target, watching));
        Ok(Self { port, link, task })
    }

    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    pub fn link(&self) -> Link {
        *self.link.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, link: watch::Receiver<Link>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let link = link.clone();
        connections.spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            // Either side closing ends the connection.
            tokio::select! {
                _ = pump(client_read, server_write, Direction::ToTarget, link.clone()) => {}
                _ = pump(server_read, client_write, Direction::FromTarget, link) => {}
            }
        });
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
}

/// Carries bytes one way while `link` lets them through; holds them (and reads no more)
/// while it does not.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, direction: Direction, mut link: watch::Receiver<Link>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_open(&mut link, direction).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        if !wait_open(&mut link, direction).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits until `direction` flows; false when the proxy is gone.
async fn wait_open(link: &mut watch::Receiver<Link>, direction: Direction) -> bool {
    while link.borrow_and_update().stalls(direction) {
        if link.changed().await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An echo server on a free port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> Option<Vec<u8>> {
        stream.write_all(text).await.ok()?;
        let mut buf = vec![0u8; text.len()];
        tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf)
    }

    #[tokio::test]
    async fn carries_bytes_stalls_them_while_cut_and_delivers_them_when_healed() {
        let proxy = Proxy::start(echo().await).unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"one").await.as_deref(), Some(&b"one"[..]));
        for cut in [Link::Cut, Link::CutToTarget, Link::CutFromTarget] {
            proxy.set(cut);
            assert_eq!(round_trip(&mut stream, b"two").await, None, "{cut:?} let it through");
            proxy.set(Link::Open);
            // What was held arrives after healing, in order, before anything newer.
            let mut held = [0u8; 3];
            tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut held))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&held, b"two", "{cut:?}");
            assert_eq!(round_trip(&mut stream, b"three").await.as_deref(), Some(&b"three"[..]));
        }
        // New connections made while cut hang too.
        proxy.set(Link::Cut);
        let mut late = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        assert_eq!(round_trip(&mut late, b"four").await, None);
        assert_eq!(proxy.link(), Link::Cut);
    }
}

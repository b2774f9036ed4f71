//! Talking to a group of coordinators: only the leading one answers, the others say
//! UNAVAILABLE with [`NOT_LEADER_HEADER`] set. Every caller (members' heartbeats, the
//! synchronizer's cluster views, tsc, the bench and the test harness) goes through
//! [`Coordinators`], which asks the one that answered last and moves on to the next when it
//! cannot answer.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Set on the answers of a coordinator that is not the leader.
pub const NOT_LEADER_HEADER: &str = "tinysns-not-leader";

/// UNAVAILABLE, marked as coming from a coordinator that is not the leader.
pub fn not_leader_status(message: String) -> tonic::Status {
    let mut status = tonic::Status::unavailable(message);
    status
        .metadata_mut()
        .insert(NOT_LEADER_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    status
}

fn is_not_leader(status: &tonic::Status) -> bool {
    status.metadata().contains_key(NOT_LEADER_HEADER)
}

/// Whether another coordinator might answer where this one did not.
fn try_another(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled
    )
}

/// `host[:port]` entries, comma-separated (`a,b:9001,[::1]:9002`): the client addresses of
/// the coordinators, entries without a port taking `default_port`.
pub fn parse_addresses(list: &str, default_port: u16) -> Result<Vec<String>, String> {
    let entries: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| with_port(entry, default_port))
        .collect::<Result<_, _>>()?;
    if entries.is_empty() {
        return Err("no coordinator address given".into());
    }
    Ok(entries)
}

fn with_port(entry: &str, default_port: u16) -> Result<String, String> {
    let has_port = match entry.rsplit_once(':') {
        // `[v6]:port` or `host:port`; a bare IPv6 address has several colons and no port.
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            port.parse::<u16>()
                .map_err(|_| format!("{entry:?}: {port:?} is not a port"))?;
            true
        }
        _ => false,
    };
    if has_port {
        Ok(entry.to_string())
    } else if entry.contains(':') && !entry.starts_with('[') {
        Ok(format!("[{entry}]:{default_port}"))
    } else {
        Ok(format!("{entry}:{default_port}"))
    }
}

/// The port of a `host:port` address made by [`parse_addresses`].
pub fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':').and_then(|(_, port)| port.parse().ok())
}

/// The internal address of each coordinator: its client port moved to the internal port
/// (as given, or client port + 20000).
pub fn internal_addresses(client: &[String], internal_port: Option<u16>) -> Result<Vec<String>, String> {
    client
        .iter()
        .map(|address| {
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| format!("{address:?} has no port"))?;
            let port: u16 = port.parse().map_err(|_| format!("{address:?} has no port"))?;
            Ok(format!("{host}:{}", crate::cli::internal_port(port, internal_port)?))
        })
        .collect()
}

/// One client per coordinator; calls go to the one that answered last.
#[derive(Debug)]
pub struct Coordinators<C> {
    clients: Vec<C>,
    current: AtomicUsize,
}

impl<C: Clone> Clone for Coordinators<C> {
    fn clone(&self) -> Self {
        Self {
            clients: self.clients.clone(),
            current: AtomicUsize::new(self.current.load(Ordering::Relaxed)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorsError {
    #[error("no coordinator address given")]
    Empty,
    #[error(transparent)]
    Address(#[from] crate::grpc::AddressError),
}

impl<C: Clone> Coordinators<C> {
    /// A client for each address, made by `client`.
    pub fn connect(
        addresses: &[String],
        client: impl FnMut(&String) -> Result<C, crate::grpc::AddressError>,
    ) -> Result<Self, CoordinatorsError> {
        let clients = addresses.iter().map(client).collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err(CoordinatorsError::Empty);
        }
        Ok(Self {
            clients,
            current: AtomicUsize::new(0),
        })
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Calls `f` on each coordinator in turn, starting with the one that answered last, until
    /// one answers (or refuses for a reason another would share). When none answers, the
    /// error is the leader's, if one spoke, else the last.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, tonic::Status>
    where
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let n = self.clients.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut worst: Option<tonic::Status> = None;
        for i in 0..n {
            let at = (first + i) % n;
            match f(self.clients[at].clone()).await {
                Err(status) if try_another(&status) => {
                    let keep = match &worst {
                        None => true,
                        Some(kept) => is_not_leader(kept) && !is_not_leader(&status),
                    };
                    if keep {
                        worst = Some(status);
                    }
                }
                answer => {
                    self.current.store(at, Ordering::Relaxed);
                    return answer;
                }
            }
        }
        Err(worst.unwrap_or_else(|| tonic::Status::unavailable("no coordinator answered")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tonic::{Code, Status};

    #[test]
    fn no_address_is_an_error() {
        assert!(matches!(
            Coordinators::<u8>::connect(&[], |_| Ok(0)),
            Err(CoordinatorsError::Empty)
        ));
    }

    #[test]
    fn addresses_take_the_default_port_where_they_have_none() {
        assert_eq!(
            parse_addresses("a, b:9001,[::1]:9002,::1", 9000).unwrap(),
            ["a:9000", "b:9001", "[::1]:9002", "[::1]:9000"]
        );
        assert_eq!(parse_addresses("10.0.0.1", 9000).unwrap(), ["10.0.0.1:9000"]);
        assert!(parse_addresses(" , ", 9000).is_err());
        assert!(parse_addresses("a:port", 9000).is_err());
        assert_eq!(
            internal_addresses(&["a:9000".into(), "b:9001".into()], None).unwrap(),
            ["a:29000", "b:29001"]
        );
        assert_eq!(internal_addresses(&["a:9000".into()], Some(7000)).unwrap(), ["a:7000"]);
        assert_eq!(port_of("[::1]:9002"), Some(9002));
    }

    fn answers(
        script: &'static [(usize, Result<u32, Code>, bool)],
    ) -> impl FnMut(usize) -> std::future::Ready<Result<u32, Status>> {
        let calls = Mutex::new(0);
        move |at: usize| {
            let mut n = calls.lock().unwrap();
            let (expected, answer, not_leader) = &script[*n];
            *n += 1;
            assert_eq!(at, *expected, "asked coordinator {at}, expected {expected}");
            std::future::ready(answer.map_err(|code| {
                if *not_leader {
                    not_leader_status("not the leader".into())
                } else {
                    Status::new(code, "down")
                }
            }))
        }
    }

    /// Coordinators 0, 1 and 2, each client being its own index.
    fn three() -> Coordinators<usize> {
        Coordinators::connect(&["a".into(), "b".into(), "c".into()], |a| {
            Ok(usize::from(a.as_bytes()[0] - b'a'))
        })
        .unwrap()
    }

    #[tokio::test]
    async fn moves_to_the_coordinator_that_answers_and_stays_there() {
        let group = three();
        let script: &'static [_] = &[
            (0, Err(Code::Unavailable), true),
            (1, Err(Code::Unavailable), false),
            (2, Ok(7), false),
            (2, Ok(8), false),
        ];
        let mut f = answers(script);
        assert_eq!(group.call(&mut f).await.unwrap(), 7);
        assert_eq!(group.call(&mut f).await.unwrap(), 8);
    }

    #[tokio::test]
    async fn a_refusal_another_would_share_is_returned_at_once() {
        let group = three();
        let script: &'static [_] = &[(0, Err(Code::InvalidArgument), false)];
        let status = group.call(answers(script)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn when_none_answers_the_leaders_error_wins_over_not_leader() {
        let group = three();
        let script: &'static [_] = &[
            (0, Err(Code::Unavailable), true),
            (1, Err(Code::Unavailable), false),
            (2, Err(Code::Unavailable), true),
        ];
        let status = group.call(answers(script)).await.unwrap_err();
        assert!(!is_not_leader(&status));
        assert_eq!(status.message(), "down");
    }
}

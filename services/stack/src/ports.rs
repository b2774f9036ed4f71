//! Ports for the processes a test or the launcher starts.

/// A port nobody listens on, for a process about to be started.
///
/// Not one the OS picks for `:0`: those come from the ephemeral range, where an outgoing
/// connection (or a parallel test) can take the port before our process binds it, and a
/// client retrying a port nobody listens on yet can even connect to itself. So ports come
/// from outside that range, each handed out once per process, starting at a point that
/// differs between processes.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let (low, high) = outside_ephemeral_range();
    let span = u32::from(high - low) + 1;
    let seed = *START.get_or_init(|| {
        std::process::id().wrapping_mul(2_654_435_761)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
    });
    for _ in 0..span {
        let offset = seed.wrapping_add(HANDED_OUT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = low + offset as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port in {low}..={high}"),
    ))
}

/// The widest block of ports the kernel never uses as ephemeral (local) ports.
fn outside_ephemeral_range() -> (u16, u16) {
    let (ephemeral_low, ephemeral_high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999));
    let below = (10_000, ephemeral_low.saturating_sub(1));
    let above = (ephemeral_high.saturating_add(1), u16::MAX);
    let widest = if below.1.saturating_sub(below.0) >= above.1.saturating_sub(above.0) {
        below
    } else {
        above
    };
    // A kernel that uses every port as ephemeral leaves no safe block; take our chances.
    if widest.0 < widest.1 {
        widest
    } else {
        (10_000, u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_handed_out_once_and_outside_the_ephemeral_range() {
        let (low, high) = super::outside_ephemeral_range();
        assert!(low < high);
        let ports: Vec<u16> = (0..50).map(|_| super::free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice: {ports:?}");
        assert!(
            ports.iter().all(|p| (low..=high).contains(p)),
            "{ports:?} not in {low}..={high}"
        );
    }
}

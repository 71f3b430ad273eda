//! The open-files limit: raised to the hard limit at start, and the connection
//! cap kept below it, so client sockets can never take the descriptors the
//! store, the lenders and the operations listener need (`accept: Too many open
//! files` must not happen while serving).

/// Descriptors kept for everything but client connections: the store's pool,
/// lender connections, log files, the ops listener's connections. A quarter of
/// the limit, at least 64 and at most 1024.
pub fn reserve(limit: u64) -> u64 {
    (limit / 4).clamp(64, 1024)
}

/// The public listener's connection cap: the configured one, or less if the
/// open-files limit (after the reserve) cannot carry it.
pub fn connection_cap(configured: usize, limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return configured;
    };
    let room = usize::try_from(limit.saturating_sub(reserve(limit))).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit
/// in force afterwards (`None` where it cannot be read).
#[cfg(unix)]
pub fn raise_to_hard_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one plain struct we own; no pointers are kept.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one plain struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(
                soft = to_u64(lim.rlim_cur),
                hard = to_u64(lim.rlim_max),
                "cannot raise the open-files limit; keeping the soft limit"
            );
        }
    }
    // RLIM_INFINITY reads as u64::MAX, which the cap handles.
    Some(to_u64(lim.rlim_cur))
}

/// `rlim_t` is `u64` on Linux and may be another width elsewhere.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn to_u64(v: libc::rlim_t) -> u64 {
    v as u64
}

#[cfg(not(unix))]
pub fn raise_to_hard_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_a_reserve() {
        assert_eq!(connection_cap(8192, Some(1024)), 1024 - 256);
        assert_eq!(connection_cap(8192, Some(100)), 36);
        assert_eq!(connection_cap(8192, Some(1 << 20)), 8192);
        assert_eq!(connection_cap(8192, Some(u64::MAX)), 8192);
        assert_eq!(connection_cap(8192, None), 8192);
        assert_eq!(connection_cap(8192, Some(10)), 1);
    }

    #[cfg(unix)]
    #[test]
    fn raising_leaves_a_usable_limit() {
        let soft = raise_to_hard_limit().expect("readable");
        assert!(soft >= 64, "soft limit {soft}");
        // Idempotent.
        assert_eq!(raise_to_hard_limit(), Some(soft));
    }
}

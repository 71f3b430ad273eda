//! Lender answers in memory, per (person, lender): reused for a short time, and
//! shared while in flight, so that identical concurrent lookups cost one call per
//! lender. Every lookup still runs its own authorisation, consent checks,
//! redaction and disclosure record: the cache sits below all of them.
//!
//! Keys carry the lender's *epoch*, bumped whenever its dataset is replaced, so a
//! new dataset makes every older answer unreachable at once (they expire by TTL);
//! a push drops the one person's entry. Nothing is ever written to disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gjeldsbro_adapter::Loan;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::index::LenderIdx;
use crate::nin::NationalId;

/// (person, lender, lender epoch).
type Key = (u64, LenderIdx, u64);

/// Rough bytes of one cached answer, for the weight bound.
fn weight(loans: &Arc<Vec<Loan>>) -> u32 {
    (64 + loans.len() * 320).min(u32::MAX as usize) as u32
}

pub struct AnswerCache {
    /// `None` when turned off (`ttl_ms = 0`): every lookup calls every lender.
    cache: Option<Cache<Key, Arc<Vec<Loan>>>>,
    epochs: Vec<AtomicU64>,
}

impl AnswerCache {
    /// A cache for `lenders` lenders; `ttl_ms = 0` turns it off (no reuse and no
    /// sharing of calls in flight).
    pub fn new(config: &CacheConfig, lenders: usize) -> Self {
        Self::counted(config, lenders, None)
    }

    /// As `new`, counting removals by cause in `evictions` (label `cause`).
    pub fn counted(
        config: &CacheConfig,
        lenders: usize,
        evictions: Option<prometheus::IntCounterVec>,
    ) -> Self {
        let cache = (config.ttl_ms > 0).then(|| {
            let builder = Cache::builder()
                .time_to_live(Duration::from_millis(config.ttl_ms))
                .max_capacity(config.max_bytes)
                .weigher(|_, v: &Arc<Vec<Loan>>| weight(v));
            match evictions.clone() {
                Some(counter) => builder
                    .eviction_listener(move |_key, _value, cause| {
                        use moka::notification::RemovalCause;
                        let cause = match cause {
                            RemovalCause::Expired => "expired",
                            RemovalCause::Explicit => "explicit",
                            RemovalCause::Replaced => "replaced",
                            RemovalCause::Size => "size",
                        };
                        counter.with_label_values(&[cause]).inc();
                    })
                    .build(),
                None => builder.build(),
            }
        });
        AnswerCache {
            cache,
            epochs: (0..lenders).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn key(&self, nin: NationalId, lender: LenderIdx) -> Key {
        let epoch = self
            .epochs
            .get(usize::from(lender))
            .map(|e| e.load(Ordering::Acquire))
            .unwrap_or(0);
        (nin.as_u64(), lender, epoch)
    }

    /// A reusable answer, if one is cached.
    pub async fn get(&self, nin: NationalId, lender: LenderIdx) -> Option<Arc<Vec<Loan>>> {
        self.cache.as_ref()?.get(&self.key(nin, lender)).await
    }

    /// The answer for (nin, lender): cached, or joined while another lookup fetches
    /// it, or fetched by `fetch` (only a successful answer is kept). The bool is
    /// true when this caller's own `fetch` ran.
    pub async fn get_or_fetch<F>(
        &self,
        nin: NationalId,
        lender: LenderIdx,
        fetch: F,
    ) -> (Result<Arc<Vec<Loan>>, &'static str>, bool)
    where
        F: Future<Output = Result<Vec<Loan>, &'static str>>,
    {
        let Some(cache) = &self.cache else {
            return (fetch.await.map(Arc::new), true);
        };
        let mut ran = false;
        let result = cache
            .try_get_with(self.key(nin, lender), async {
                ran = true;
                fetch.await.map(Arc::new)
            })
            .await
            .map_err(|e| *e);
        (result, ran)
    }

    /// A lender's dataset was replaced: none of its older answers is reused.
    pub fn lender_replaced(&self, lender: LenderIdx) {
        if let Some(e) = self.epochs.get(usize::from(lender)) {
            e.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A push changed what the lender holds for the person.
    pub async fn person_changed(&self, nin: NationalId, lender: LenderIdx) {
        if let Some(cache) = &self.cache {
            cache.invalidate(&self.key(nin, lender)).await;
        }
    }

    /// Entries held now (approximate; for metrics).
    pub fn entries(&self) -> u64 {
        self.cache.as_ref().map_or(0, Cache::entry_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nin::{IdPolicy, make_id};

    fn nin() -> NationalId {
        NationalId::parse(
            &make_id(1, 2, 80, 123, false, true)
                .or_else(|| make_id(1, 2, 80, 124, false, true))
                .unwrap(),
            IdPolicy::SYNTHETIC_OK,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn reuse_epochs_and_invalidation() {
        let c = AnswerCache::new(&CacheConfig::default(), 2);
        let n = nin();
        let (r, ran) = c.get_or_fetch(n, 0, async { Ok(vec![]) }).await;
        assert!(r.is_ok() && ran);
        let (_, ran) = c.get_or_fetch(n, 0, async { Err("error") }).await;
        assert!(!ran, "a cached answer is reused");
        assert!(c.get(n, 1).await.is_none());
        c.person_changed(n, 0).await;
        assert!(c.get(n, 0).await.is_none());
        let _ = c.get_or_fetch(n, 0, async { Ok(vec![]) }).await;
        c.lender_replaced(0);
        assert!(
            c.get(n, 0).await.is_none(),
            "a new dataset hides older answers"
        );
        // Failures are not kept.
        let (r, _) = c.get_or_fetch(n, 1, async { Err("timeout") }).await;
        assert_eq!(r.unwrap_err(), "timeout");
        assert!(c.get(n, 1).await.is_none());
    }

    #[tokio::test]
    async fn turned_off_it_keeps_nothing() {
        let c = AnswerCache::new(
            &CacheConfig {
                ttl_ms: 0,
                ..CacheConfig::default()
            },
            1,
        );
        let (_, ran) = c.get_or_fetch(nin(), 0, async { Ok(vec![]) }).await;
        assert!(ran);
        let (_, ran) = c.get_or_fetch(nin(), 0, async { Ok(vec![]) }).await;
        assert!(ran, "nothing is reused");
        assert!(c.get(nin(), 0).await.is_none());
    }

    #[tokio::test]
    async fn concurrent_identical_fetches_share_one() {
        let c = Arc::new(AnswerCache::new(&CacheConfig::default(), 1));
        let n = nin();
        let calls = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (c, calls) = (c.clone(), calls.clone());
                tokio::spawn(async move {
                    c.get_or_fetch(n, 0, async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(vec![])
                    })
                    .await
                    .0
                    .is_ok()
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

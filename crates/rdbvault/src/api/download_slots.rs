//! How many downloads run at once: in all, per client address and per
//! link. A download holds its slots for as long as its body streams, so a
//! crowd of clients (or one client opening connection after connection, or
//! a link passed around) cannot take every file handle and every byte of
//! bandwidth; beyond a limit the answer is 503 with `Retry-After`, as S3
//! answers `SlowDown`.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::Config;

/// Which limit refused a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Service,
    Client,
    Link,
}

impl Full {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Full::Service => "the service is serving as many downloads as it may (max_downloads)",
            Full::Client => {
                "this client has as many downloads running as it may (max_downloads_per_client)"
            }
            Full::Link => {
                "this link is being downloaded as many times at once as it may (max_downloads_per_link)"
            }
        }
    }
}

/// File reads of all downloads at once. A read is short (one chunk from
/// disk or the page cache), so a few keep the disk busy; unbounded, every
/// download starting at once would get its own thread of the blocking pool
/// and, with it, its own allocator arena: tens of MiB for nothing.
const READS_AT_ONCE: usize = 8;

#[derive(Debug)]
pub(crate) struct DownloadSlots {
    reads: Arc<tokio::sync::Semaphore>,
    max_total: usize,
    max_per_client: usize,
    max_per_link: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    clients: HashMap<IpAddr, usize>,
    links: HashMap<String, usize>,
}

/// The slots of one running download, given back when it is dropped (the
/// body finished, failed, or its client went away).
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<DownloadSlots>,
    client: Option<IpAddr>,
    link: String,
}

impl DownloadSlots {
    pub(crate) fn from_config(config: &Config) -> DownloadSlots {
        DownloadSlots {
            reads: Arc::new(tokio::sync::Semaphore::new(READS_AT_ONCE)),
            max_total: config.max_downloads.max(1),
            max_per_client: config.max_downloads_per_client.max(1),
            max_per_link: config.max_downloads_per_link.max(1),
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Takes a slot for a download by `client` through `link`, or says
    /// which limit is reached.
    pub(crate) fn take(self: &Arc<Self>, client: Option<IpAddr>, link: &str) -> Result<Slot, Full> {
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Full::Service);
        }
        if let Some(ip) = client
            && counts.clients.get(&ip).copied().unwrap_or(0) >= self.max_per_client
        {
            return Err(Full::Client);
        }
        if counts.links.get(link).copied().unwrap_or(0) >= self.max_per_link {
            return Err(Full::Link);
        }
        counts.total += 1;
        if let Some(ip) = client {
            *counts.clients.entry(ip).or_default() += 1;
        }
        *counts.links.entry(link.to_string()).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            client,
            link: link.to_string(),
        })
    }

    /// Downloads running now.
    pub(crate) fn running(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent under a panic elsewhere: every change
        // is made whole while the lock is held.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One less for `key`; the entry goes when it reaches zero, so the maps
/// hold only what is running.
fn release<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Slot {
    /// Waits for a turn to read the next chunk from disk.
    pub(crate) async fn read_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.reads.clone().acquire_owned().await.ok()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.client {
            release(&mut counts.clients, &ip);
        }
        release(&mut counts.links, &self.link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(total: usize, client: usize, link: usize) -> Arc<DownloadSlots> {
        Arc::new(DownloadSlots::from_config(&Config {
            max_downloads: total,
            max_downloads_per_client: client,
            max_downloads_per_link: link,
            ..Config::default()
        }))
    }

    #[test]
    fn each_limit_refuses_and_slots_come_back() {
        let a: Option<IpAddr> = "10.0.0.1".parse().ok();
        let b: Option<IpAddr> = "10.0.0.2".parse().ok();
        let s = slots(3, 2, 1);
        let one = s.take(a, "l1").unwrap();
        assert_eq!(s.take(a, "l1").unwrap_err(), Full::Link);
        let two = s.take(a, "l2").unwrap();
        assert_eq!(s.take(a, "l3").unwrap_err(), Full::Client);
        let three = s.take(b, "l3").unwrap();
        assert_eq!(s.take(b, "l4").unwrap_err(), Full::Service);
        drop((one, two, three));
        assert_eq!(s.running(), 0);
        let counts = s.lock();
        assert!(counts.clients.is_empty() && counts.links.is_empty());
    }
}

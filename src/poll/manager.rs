//! `PollManager`: a resizable set of pollers and the policy that picks one.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use super::{LoadBalance, Poller};

/// The default number of pollers: one per CPU.
///
/// Handlers run on the pollers (as coroutines, or inline), and so do the Go-net face's
/// goroutines: a poller is where the work happens, not just where it is dispatched, and one per
/// core lets every core do it without a hand-off. (When handlers ran on a thread pool, one
/// poller per four cores was enough, as in CloudWeGo netpoll; `docs/ARCHITECTURE.md` has the
/// measurement behind the change.) Servers whose handlers run on a [`HandlerPool`] may want
/// fewer: set the number with [`PollManager::set_num_loops`] or the builders' `num_loops`.
///
/// [`HandlerPool`]: crate::rt::HandlerPool
pub fn default_num_loops() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// N pollers and a [`LoadBalance`] policy that spreads new registrations across them.
#[derive(Debug)]
pub struct PollManager {
    pollers: RwLock<Vec<Arc<Poller>>>,
    balance: RwLock<LoadBalance>,
    next: AtomicUsize,
    /// Pollers removed by shrinking that may still serve registrations; reaped once closed.
    retired: Mutex<Vec<Arc<Poller>>>,
}

impl PollManager {
    /// Starts `num_loops` pollers (see [`default_num_loops`]) balanced round robin.
    pub fn new(num_loops: usize) -> io::Result<PollManager> {
        let manager = PollManager {
            pollers: RwLock::new(Vec::new()),
            balance: RwLock::new(LoadBalance::default()),
            next: AtomicUsize::new(0),
            retired: Mutex::new(Vec::new()),
        };
        manager.set_num_loops(num_loops)?;
        Ok(manager)
    }

    /// The process-wide pollers ([`default_num_loops`] of them, round robin), started on first
    /// use; what servers and dialers use unless given their own.
    pub fn global() -> io::Result<&'static PollManager> {
        static GLOBAL: std::sync::OnceLock<PollManager> = std::sync::OnceLock::new();
        if let Some(manager) = GLOBAL.get() {
            return Ok(manager);
        }
        let manager = PollManager::new(default_num_loops())?;
        // If another thread won the race, its manager is kept and ours closes on drop.
        Ok(GLOBAL.get_or_init(|| manager))
    }

    /// The number of pollers taking new picks.
    pub fn num_loops(&self) -> usize {
        read(&self.pollers).len()
    }

    /// Grows or shrinks the set of pollers while it runs.
    ///
    /// Growing starts new pollers. Shrinking removes pollers from the pick set at once; each
    /// removed poller keeps serving the registrations it has and closes when the last one is
    /// detached. `num_loops` must be at least 1.
    pub fn set_num_loops(&self, num_loops: usize) -> io::Result<()> {
        if num_loops == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a PollManager needs at least one poller",
            ));
        }
        let mut pollers = write(&self.pollers);
        while pollers.len() < num_loops {
            pollers.push(Poller::new()?);
        }
        let removed = pollers.split_off(num_loops);
        drop(pollers);
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|p| !p.is_closed());
        for poller in removed {
            poller.retire();
            retired.push(poller);
        }
        Ok(())
    }

    /// Pollers removed by shrinking that still serve registrations.
    pub fn retired_loops(&self) -> usize {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|p| !p.is_closed());
        retired.len()
    }

    /// Changes the policy for later picks.
    pub fn set_load_balance(&self, balance: LoadBalance) {
        *write(&self.balance) = balance;
    }

    /// The current policy.
    pub fn load_balance(&self) -> LoadBalance {
        *read(&self.balance)
    }

    /// Picks a poller for a new registration.
    pub fn pick(&self) -> Arc<Poller> {
        self.pick_for(None)
    }

    /// Picks a poller for a connection from `peer`; with
    /// [`LoadBalance::SourceAddrHash`] the same peer IP always gets the same poller.
    pub fn pick_for(&self, peer: Option<&SocketAddr>) -> Arc<Poller> {
        let balance = *read(&self.balance);
        let pollers = read(&self.pollers);
        let index = balance.index(pollers.len(), &self.next, peer);
        Arc::clone(&pollers[index])
    }

    /// Every poller taking picks, in order.
    pub fn pollers(&self) -> Vec<Arc<Poller>> {
        read(&self.pollers).clone()
    }

    /// Closes every poller, retired ones included, and joins their threads.
    pub fn close(&self) {
        let pollers = std::mem::take(&mut *write(&self.pollers));
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        for poller in pollers.iter().chain(retired.iter()) {
            poller.close();
        }
    }
}

impl Drop for PollManager {
    fn drop(&mut self) {
        self.close();
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

//! Locks that outlive a panic. A panic while a lock is held poisons it; for the long-lived
//! shared state weir keeps (pools of connections, the set of running checks) refusing a
//! poisoned lock would silently stop that part for the rest of the process. Callers say why
//! their data stays whole across a panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Takes `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

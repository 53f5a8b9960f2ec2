//! What modules share beyond one host's connection, keyed by type so that neither the
//! executor nor `HostCtx` names a module: run-wide `Services` the caller builds (the Consul
//! client, …) and one host's `HostState` for a play (what `file` wrote, which `compose`
//! reads to decide on `up`). A module owns the types it puts in either.
//!
//! Owns: the two type maps. Must not: know any module's type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// Run-wide services, one per type, built by the command that runs a plan and shared by
/// every host (cheap to clone).
#[derive(Clone, Default)]
pub struct Services(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl Services {
    pub fn new() -> Services {
        Services::default()
    }

    /// These services and `service` (replacing one of the same type).
    pub fn with<T: Any + Send + Sync>(mut self, service: Arc<T>) -> Services {
        self.0.insert(TypeId::of::<T>(), service);
        self
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>())?.downcast_ref::<T>()
    }

    /// The service of type `T`, shared (for work that outlives the borrow: a fan-out).
    pub fn shared<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.get(&TypeId::of::<T>())?.clone().downcast::<T>().ok()
    }
}

/// One host's module state for one play, one value per type; starts empty with each play.
#[derive(Default)]
pub struct HostState(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl HostState {
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>())?.downcast_ref::<T>()
    }

    /// Put `value` in its type's slot (replacing what was there).
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// Take the value of type `T` out, if there is one.
    pub fn take<T: Any + Send + Sync>(&mut self) -> Option<T> {
        let v = self.0.remove(&TypeId::of::<T>())?;
        v.downcast::<T>().ok().map(|b| *b)
    }

    /// The value of type `T`, created empty on first use.
    pub fn entry<T: Any + Send + Sync + Default>(&mut self) -> &mut T {
        let slot = self
            .0
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        match slot.downcast_mut::<T>() {
            Some(v) => v,
            // The slot of `T`'s TypeId only ever holds a `T` (inserted just above or earlier).
            None => unreachable!("HostState slot of another type"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Client(u8);
    #[derive(Debug, Default, PartialEq)]
    struct Written(Vec<String>);
    #[derive(Debug, Default, PartialEq)]
    struct Other(Vec<String>);

    #[test]
    fn services_are_found_by_type_and_shared_by_clones() {
        let s = Services::new().with(Arc::new(Client(1)));
        let copy = s.clone();
        assert_eq!(copy.get::<Client>(), Some(&Client(1)));
        assert_eq!(copy.shared::<Client>().as_deref(), Some(&Client(1)));
        assert_eq!(s.get::<Written>(), None);
        assert!(s.shared::<Written>().is_none());
        // A second service of one type replaces the first.
        assert_eq!(
            s.with(Arc::new(Client(2))).get::<Client>(),
            Some(&Client(2))
        );
    }

    #[test]
    fn host_state_keeps_one_value_per_type() {
        let mut st = HostState::default();
        assert_eq!(st.get::<Written>(), None);
        st.entry::<Written>().0.push("/a".into());
        st.entry::<Written>().0.push("/b".into());
        st.entry::<Other>().0.push("/c".into());
        assert_eq!(st.get::<Written>().map(|w| w.0.len()), Some(2));
        assert_eq!(st.get::<Other>(), Some(&Other(vec!["/c".into()])));
    }
}

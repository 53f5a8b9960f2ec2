//! The Consul test double on a runtime of its own, so a test can stay synchronous.

use testkit::consul_double::{ConsulDouble, DoubleOptions};

/// A Consul test double on its own runtime (`rt` also serves the test's other async work).
pub struct Double {
    pub rt: tokio::runtime::Runtime,
    pub d: ConsulDouble,
}

impl Double {
    /// A plain double (HTTP, no ACL) on a free 127.0.0.1 port.
    pub fn start() -> Double {
        Double::start_with(DoubleOptions::default())
    }

    /// A double as `options` say (ACL token, TLS, servers, checks).
    pub fn start_with(options: DoubleOptions) -> Double {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let d = rt
            .block_on(ConsulDouble::start_with(options))
            .expect("consul double");
        Double { rt, d }
    }

    /// One more double on this one's runtime (a second agent, for failover).
    pub fn another(&self) -> ConsulDouble {
        self.rt
            .block_on(ConsulDouble::start("127.0.0.1:0".parse().expect("addr")))
            .expect("consul double")
    }
}

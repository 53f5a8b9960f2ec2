//! promfleet's scenario tests: one integration binary (fast to link), one module per area.
//! Tests that need root, sshd or Debian's Prometheus tools print SKIPPED when they are absent;
//! CI installs them all.

mod support;

mod exporters;
mod faults;
mod hostile;
mod stacks;

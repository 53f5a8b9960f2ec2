pub mod agent;
pub mod consul_double;
pub mod images;
pub mod netns;
pub mod ports;
pub mod prometheus;
pub mod sshd;
pub mod standin;

pub mod agent;
pub mod netns;
pub mod sshd;
pub mod standin;

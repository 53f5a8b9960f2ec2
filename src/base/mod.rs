//! The small helpers every layer shares, one per job: address bracketing (`addr`), dates and
//! durations (`clock`), polling until a deadline (`poll`) and did-you-mean (`suggest`). Find
//! one here before writing another; nothing here knows about hosts, plays or SSH.

pub mod addr;
pub mod clock;
pub mod poll;
pub mod suggest;

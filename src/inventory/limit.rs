//! `--limit` patterns (Ansible-style): hostnames, group names, globs, `!exclusions`, `@file`.
//!
//! TODO(inventory helper): implement.
